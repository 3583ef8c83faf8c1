// Package api declares the admin API's wire types once, for the server
// (package admin) and its client (package admin/client, read by sygctl). It
// imports only the standard library, so a client pulls in nothing of the
// gateway.
//
// The JSON field names are a contract: `sygctl ... --json` prints these
// types as they are (README, "sygctl"). Rows of GET /v1/sessions and
// /v1/sessions/history are sessions.Info, which is also the history file's
// line format and so is declared with it.
package api

import "time"

// Status is the answer to GET /v1/status.
type Status struct {
	Version      string    `json:"version"`
	Started      time.Time `json:"started"`
	LiveSessions int       `json:"live_sessions"`
}

// KillRequest is the body of POST /v1/sessions/{id}/kill.
type KillRequest struct {
	Reason string `json:"reason"` // shown to the session's user; may be empty
	// Connection ends the whole client connection the session belongs to:
	// all its sessions and forwards, and the connection itself.
	Connection bool `json:"connection,omitempty"`
}

// KillResponse answers a successful kill. The session ends asynchronously:
// it leaves the live list once its connection has been torn down.
type KillResponse struct {
	ID   string `json:"id"`
	Conn string `json:"conn,omitempty"` // the connection ended, for a connection kill
}

// ContainerInfo describes one managed container for GET /v1/containers.
type ContainerInfo struct {
	Name     string    `json:"name"`
	Project  string    `json:"project"`
	User     string    `json:"user"`
	State    string    `json:"state"` // Docker's: running, exited, created, ...
	Image    string    `json:"image"`
	Created  time.Time `json:"created"`
	UpToDate bool      `json:"up_to_date"` // its spec matches the current config
	Sessions int       `json:"sessions"`   // live sessions in it (filled by the server from its registry)
}

// GPUReport is the answer to GET /v1/gpus (the `sygctl gpus --json`
// contract).
type GPUReport struct {
	// Available is false when NVML gave no GPUs (a host without NVIDIA's
	// driver or library); Message says why ("no NVIDIA GPUs on this host").
	Available bool      `json:"available"`
	Message   string    `json:"message,omitempty"`
	Driver    string    `json:"driver_version,omitempty"`
	GPUs      []GPUInfo `json:"gpus"`
}

// GPUInfo is one GPU. Pointer fields are absent when the driver could not
// say; Unknown names them and why.
type GPUInfo struct {
	Index        int          `json:"index"`
	UUID         string       `json:"uuid"`
	Name         string       `json:"name"`
	MemoryTotal  *uint64      `json:"memory_total_bytes,omitempty"`
	MemoryUsed   *uint64      `json:"memory_used_bytes,omitempty"`
	Utilization  *uint32      `json:"utilization_percent,omitempty"`
	Temperature  *uint32      `json:"temperature_celsius,omitempty"`
	MIGMode      string       `json:"mig_mode,omitempty"` // "enabled", "disabled"; absent without MIG
	Health       string       `json:"health"`             // "healthy" or "unhealthy"
	HealthReason string       `json:"health_reason,omitempty"`
	Processes    []GPUProcess `json:"processes"`
	Holders      []GPUHolder  `json:"holders"` // the containers leasing it, by name; [] when free
	Unknown      []string     `json:"unknown,omitempty"`
}

// GPUHolder is a container that holds a lease on a GPU, and how it is
// doing: InUse while a connection holds it, else IdleSeconds since its last
// connection ended (absent when the gateway does not know since when).
type GPUHolder struct {
	Container   string `json:"container"`
	User        string `json:"user"`
	Project     string `json:"project"`
	Mode        string `json:"mode"` // "exclusive", "shared", or "unknown" for a container made before leases
	InUse       bool   `json:"in_use"`
	IdleSeconds *int64 `json:"idle_seconds,omitempty"`
	// NVMLLost: the container can no longer open its GPUs (its device
	// cgroup denies them, "Failed to initialize NVML: Unknown Error"); it
	// is recreated when nobody is inside.
	NVMLLost bool `json:"nvml_lost"`
}

// GPUProcess is a process using a GPU, with the container it runs in when
// its cgroup names one; Container, Project and User are filled for the
// containers the gateway manages.
type GPUProcess struct {
	PID         uint32  `json:"pid"`
	UsedMemory  *uint64 `json:"used_memory_bytes,omitempty"`
	ContainerID string  `json:"container_id,omitempty"`
	Container   string  `json:"container,omitempty"`
	Project     string  `json:"project,omitempty"`
	User        string  `json:"user,omitempty"`
}

// ReloadChange is one configuration key a reload found changed.
type ReloadChange struct {
	Key     string `json:"key"`               // e.g. "server.listen", "projects.zephyr.gpus"
	Running string `json:"running,omitempty"` // the value in force before (as text)
	File    string `json:"file,omitempty"`    // the value in the file
}

// ReloadReport is the answer to POST /v1/reload (the `sygctl reload
// --json` contract).
type ReloadReport struct {
	Applied          []ReloadChange `json:"applied"`       // in force now
	NeedsRestart     []ReloadChange `json:"needs_restart"` // in the file, not in force until a restart
	ConnectionsEnded int            `json:"connections_ended"`
}

// Error is the body of every error answer, with a fitting status code.
type Error struct {
	Error string `json:"error"`
}
