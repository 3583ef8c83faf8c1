// Package bind binds the workspace manager (and with it the Docker SDK) to
// the interfaces the gateway and the admin API define for what they need:
// gateway.Containers, admin.Containers and admin.GPULeases. Only the wiring
// in cmd/gateway, and tests that run a gateway on the real engine, import
// it; gateway/ and admin/ know nothing of Docker.
package bind

import (
	"context"
	"io"
	"time"

	"github.com/sygaldry/sygaldry/admin"
	"github.com/sygaldry/sygaldry/admin/api"
	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/gateway"
	"github.com/sygaldry/sygaldry/workspace"
)

// Containers adapts the container manager to what the gateway needs.
func Containers(m *workspace.Manager) gateway.Containers { return managerContainers{m} }

type managerContainers struct{ m *workspace.Manager }

func (c managerContainers) Ensure(ctx context.Context, p config.Resolved, user string, progress io.Writer) (gateway.Target, error) {
	inst, err := c.m.Ensure(ctx, p, user, progress)
	if err != nil {
		return gateway.Target{}, err
	}
	return gateway.Target{Name: inst.Name, SocketPath: inst.SocketPath, Peer: inst.Peer}, nil
}

func (c managerContainers) Acquire(name string) { c.m.Acquire(name) }
func (c managerContainers) Release(name string) { c.m.Release(name) }

// LoginNotice is the banner line of an interactive login (gateway/banner.go).
func (c managerContainers) LoginNotice(name string) string { return c.m.LoginNotice(name) }

// AdminContainers adapts the container manager to the admin API's listing.
func AdminContainers(m *workspace.Manager) admin.Containers { return adminContainers{m} }

type adminContainers struct{ m *workspace.Manager }

func (a adminContainers) List(ctx context.Context) ([]api.ContainerInfo, error) {
	all, err := a.m.List(ctx)
	if err != nil {
		return nil, err
	}
	var running []string
	for _, c := range all {
		if c.State == "running" {
			running = append(running, c.ID)
		}
	}
	jobs := a.m.Jobs(ctx, running) // concurrent and bounded in time
	now := time.Now()
	out := make([]api.ContainerInfo, 0, len(all))
	for _, c := range all {
		in := api.ContainerInfo{
			Name: c.Name, Project: c.Project, User: c.User, State: c.State,
			Image: c.Image, Created: c.Created, UpToDate: c.Spec == workspace.SpecCurrent,
			Jobs: []api.ContainerJob{},
		}
		jl := jobs[c.ID]
		if jl.Err != nil {
			in.JobsError = jl.Err.Error()
		}
		for _, j := range jl.Jobs {
			cj := api.ContainerJob{PID: j.PID, Command: j.Command}
			if j.AgeKnown {
				sec := int64(j.Age / time.Second)
				cj.AgeSeconds = &sec
			}
			in.Jobs = append(in.Jobs, cj)
		}
		// A job list that failed counts as none, as for the idle stop.
		in.Stop = stopOf(a.m.StopPlan(c.Name, c.State == "running", len(jl.Jobs), now))
		out = append(out, in)
	}
	return out, nil
}

// stopOf is the wire form of a stop plan.
func stopOf(p workspace.StopPlan) api.ContainerStop {
	s := api.ContainerStop{Status: string(p.Status), IdleStopSeconds: int64(p.IdleStop / time.Second), Rechecked: p.Rechecked}
	if !p.At.IsZero() {
		at := p.At.UTC()
		s.At = &at
	}
	if !p.IdleSince.IsZero() {
		since := p.IdleSince.UTC()
		s.IdleSince = &since
	}
	return s
}

// AdminGPULeases adapts the container manager's GPU holders to the admin
// API, which names each GPU's holders with them: the leases, each after a
// fresh probe of its container's GPU access, and the containers made before
// leases (mode "unknown").
func AdminGPULeases(m *workspace.Manager) admin.GPULeases { return adminGPULeases{m} }

type adminGPULeases struct{ m *workspace.Manager }

func (a adminGPULeases) GPULeases(ctx context.Context) []admin.GPULease {
	ls := a.m.GPUHolders(ctx)
	out := make([]admin.GPULease, 0, len(ls))
	for _, l := range ls {
		out = append(out, admin.GPULease{
			Container: l.Container, User: l.User, Project: l.Project, Mode: l.Mode,
			UUIDs: l.UUIDs, InUse: l.InUse, IdleSince: l.IdleSince, NVMLLost: l.NVMLLost,
		})
	}
	return out
}
