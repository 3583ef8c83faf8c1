package admin

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/sygaldry/sygaldry/admin/api"
)

// GPUs is what the admin API needs from the GPU inventory (package gpu,
// adapted in cmd/gateway so that this package needs no cgo).
type GPUs interface {
	// GPUs reads the host's GPUs now. A host without NVIDIA's driver or
	// library answers Available false with Message "no NVIDIA GPUs on
	// this host" and no error.
	GPUs(ctx context.Context) api.GPUReport
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

func (s *Server) serveGPUs(w http.ResponseWriter, r *http.Request) {
	if s.GPUs == nil {
		writeError(w, http.StatusServiceUnavailable, "this gateway does not report GPUs")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	rep := s.GPUs.GPUs(ctx)
	if rep.GPUs == nil {
		rep.GPUs = []api.GPUInfo{}
	}
	holders := s.gpuHolders(ctx, time.Now())
	rep.GPUs = slices.Clone(rep.GPUs) // the holders are ours to set, not the inventory's
	for i := range rep.GPUs {
		if rep.GPUs[i].Processes == nil {
			rep.GPUs[i].Processes = []api.GPUProcess{}
		}
		rep.GPUs[i].Holders = []api.GPUHolder{}
		if u := rep.GPUs[i].UUID; u != "" {
			rep.GPUs[i].Holders = append(rep.GPUs[i].Holders, holders[u]...)
		}
	}
	writeJSON(w, http.StatusOK, rep)
}

// gpuHolders maps GPU UUIDs to the containers leasing them; nil without a
// lease table.
func (s *Server) gpuHolders(ctx context.Context, now time.Time) map[string][]api.GPUHolder {
	if s.Leases == nil {
		return nil
	}
	out := map[string][]api.GPUHolder{}
	for _, l := range s.Leases.GPULeases(ctx) {
		h := api.GPUHolder{Container: l.Container, User: l.User, Project: l.Project, Mode: l.Mode, InUse: l.InUse, NVMLLost: l.NVMLLost}
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
