package admin

import (
	"context"
	"net/http"
	"slices"
	"time"
)

// GPUs is what the admin API needs from the GPU inventory (package gpu,
// adapted in cmd/gateway so that this package needs no cgo).
type GPUs interface {
	// GPUs reads the host's GPUs now. A host without NVIDIA's driver or
	// library answers Available false with Message "no NVIDIA GPUs on
	// this host" and no error.
	GPUs(ctx context.Context) GPUReport
}

// GPUReport is the answer to GET /v1/gpus (the `sygctl gpus --json`
// contract).
type GPUReport struct {
	// Available is false when NVML gave no GPUs; Message says why.
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

// GPULeases is what the admin API needs from the container manager's GPU
// lease table (adapted in package gateway).
type GPULeases interface {
	// GPULeases lists the leases held now, by container name, after
	// checking within ctx that each holder can still use its GPUs.
	GPULeases(ctx context.Context) []GPULease
}

// GPULease is the GPUs one container holds and how the holder is doing.
type GPULease struct {
	Container string
	User      string
	Project   string
	Mode      string
	UUIDs     []string
	InUse     bool
	IdleSince time.Time // when its last connection ended; zero: not known
	NVMLLost  bool      // its GPU devices are denied to it
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

func (s *Server) serveGPUs(w http.ResponseWriter, r *http.Request) {
	if s.GPUs == nil {
		writeError(w, http.StatusServiceUnavailable, "this gateway does not report GPUs")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	rep := s.GPUs.GPUs(ctx)
	if rep.GPUs == nil {
		rep.GPUs = []GPUInfo{}
	}
	holders := s.gpuHolders(ctx, time.Now())
	rep.GPUs = slices.Clone(rep.GPUs) // the holders are ours to set, not the inventory's
	for i := range rep.GPUs {
		if rep.GPUs[i].Processes == nil {
			rep.GPUs[i].Processes = []GPUProcess{}
		}
		rep.GPUs[i].Holders = []GPUHolder{}
		if u := rep.GPUs[i].UUID; u != "" {
			rep.GPUs[i].Holders = append(rep.GPUs[i].Holders, holders[u]...)
		}
	}
	writeJSON(w, http.StatusOK, rep)
}

// gpuHolders maps GPU UUIDs to the containers leasing them; nil without a
// lease table.
func (s *Server) gpuHolders(ctx context.Context, now time.Time) map[string][]GPUHolder {
	if s.Leases == nil {
		return nil
	}
	out := map[string][]GPUHolder{}
	for _, l := range s.Leases.GPULeases(ctx) {
		h := GPUHolder{Container: l.Container, User: l.User, Project: l.Project, Mode: l.Mode, InUse: l.InUse, NVMLLost: l.NVMLLost}
		if !l.InUse && !l.IdleSince.IsZero() {
			sec := max(int64(now.Sub(l.IdleSince)/time.Second), 0)
			h.IdleSeconds = &sec
		}
		for _, u := range l.UUIDs {
			out[u] = append(out[u], h)
		}
	}
	return out
}
