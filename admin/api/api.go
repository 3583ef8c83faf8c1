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
	// Node is the node a pod runs on, and GPUs what it holds of
	// GPUResource (the Kubernetes backend; absent with Docker).
	Node        string `json:"node,omitempty"`
	GPUs        int64  `json:"gpus,omitempty"`
	GPUResource string `json:"gpu_resource,omitempty"`

	// Why it is up and when it stops. Connections and Forwards come from
	// the server's session registry, Jobs from the engine, GPUProcesses
	// from the GPU inventory; the lists are [] when empty.
	Connections  []ContainerConn       `json:"connections"`
	Forwards     []ContainerForward    `json:"forwards"`
	Jobs         []ContainerJob        `json:"jobs"`                 // processes other than the agent (running containers)
	JobsError    string                `json:"jobs_error,omitempty"` // why Jobs could not be listed
	GPUProcesses []ContainerGPUProcess `json:"gpu_processes"`
	Stop         ContainerStop         `json:"stop"`
}

// ContainerConn is a client connection into a container.
type ContainerConn struct {
	Conn       string `json:"conn"` // the connection's ID, "c<N>" as `sygctl sessions` shows it
	User       string `json:"user"`
	RemoteAddr string `json:"remote_addr"`
	// LastActive is its latest channel traffic, or when its last channel
	// closed; IdleSeconds is the time since, when the server answered.
	LastActive  time.Time `json:"last_activity"`
	IdleSeconds int64     `json:"idle_seconds"`
	Channels    int       `json:"channels"` // channels open on it (shells, commands, forwards)
}

// ContainerForward is an open forwarding channel into a container.
type ContainerForward struct {
	Session    string    `json:"session"` // its session ID
	Conn       string    `json:"conn"`
	User       string    `json:"user"`
	Kind       string    `json:"kind"`   // direct-tcpip (ssh -L, -D), direct-streamlocal@openssh.com, forwarded-tcpip (-R)
	Target     string    `json:"target"` // host:port or socket path inside the container, when the kind names one
	LastActive time.Time `json:"last_activity"`
}

// ContainerJob is a process running in a container other than the agent:
// what the idle stop waits for.
type ContainerJob struct {
	PID        int    `json:"pid"` // on the host; 0 when not known
	Command    string `json:"command"`
	AgeSeconds *int64 `json:"age_seconds,omitempty"` // absent when the engine did not say
}

// ContainerGPUProcess is a process of the container that uses a GPU.
type ContainerGPUProcess struct {
	GPU        int     `json:"gpu"` // the GPU's index
	UUID       string  `json:"uuid"`
	PID        uint32  `json:"pid"`
	UsedMemory *uint64 `json:"used_memory_bytes,omitempty"`
	Command    string  `json:"command,omitempty"` // from Jobs, when the PID is one of them
}

// ContainerStop says when a container will be idle-stopped.
type ContainerStop struct {
	// Status is one of:
	//   "in_use"      a connection is open into it
	//   "scheduled"   stopped at At unless used before
	//   "postponed"   idle, but Jobs run: the stop waits for them
	//   "never"       idle_stop is 0
	//   "untracked"   running, but the gateway keeps no idle timer for it
	//                 (started outside the gateway, e.g. by sygctl launch,
	//                 after the gateway started)
	//   "not_running"
	Status          string     `json:"status"`
	At              *time.Time `json:"at,omitempty"`
	IdleStopSeconds int64      `json:"idle_stop_seconds"` // the idle_stop in force
	// IdleSince is when its last connection ended (or when the gateway
	// first saw it idle); absent when in use or not known.
	IdleSince *time.Time `json:"idle_since,omitempty"`
	// Rechecked: the stop was postponed before while jobs ran, so At is
	// the next idle check, not idle_stop after IdleSince.
	Rechecked bool `json:"rechecked,omitempty"`
}

// Stop statuses (ContainerStop.Status).
const (
	StopInUse      = "in_use"
	StopScheduled  = "scheduled"
	StopPostponed  = "postponed"
	StopNever      = "never"
	StopUntracked  = "untracked"
	StopNotRunning = "not_running"
)

// GPUReport is the answer to GET /v1/gpus (the `sygctl gpus --json`
// contract).
type GPUReport struct {
	// Available is false when NVML gave no GPUs (a host without NVIDIA's
	// driver or library); Message says why ("no NVIDIA GPUs on this host").
	Available bool      `json:"available"`
	Message   string    `json:"message,omitempty"`
	Driver    string    `json:"driver_version,omitempty"`
	GPUs      []GPUInfo `json:"gpus"`
	// Nodes are the cluster's nodes with GPUs as the scheduler counts them
	// (the Kubernetes backend; absent with Docker).
	Nodes []NodeGPUs `json:"nodes,omitempty"`
}

// NodeGPUs is one node's count of a GPU resource and the pods holding some.
type NodeGPUs struct {
	Node        string          `json:"node"`
	Resource    string          `json:"resource"` // nvidia.com/gpu
	Capacity    int64           `json:"capacity"`
	Allocatable int64           `json:"allocatable"`
	Holders     []NodeGPUHolder `json:"holders"`
}

// NodeGPUHolder is a managed pod holding GPUs on a node.
type NodeGPUHolder struct {
	Pod     string `json:"pod"`
	Project string `json:"project"`
	User    string `json:"user"`
	Phase   string `json:"phase"`
	Count   int64  `json:"count"`
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
