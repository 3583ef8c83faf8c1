package workspace

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/sygaldry/sygaldry/config"
)

// The manager's side of the GPU leases (leases.go): when a container is
// created or started it leases its GPUs under the table's lock and its
// DeviceRequests name exactly those UUIDs; the lease goes back when the
// manager stops it (idle) or removes it. A container that stopped or went
// away behind the manager's back is noticed when a lease is refused: the
// table is checked against the running containers and the grant retried.

// leasing reports whether p's container leases GPUs: the manager has an
// inventory, GPUs are not disabled, and the project asks for some (an unset
// gpus takes config's default, a count).
func (m *Manager) leasing(p config.Resolved) bool {
	return m.leases != nil && !m.opts.DisableGPUs && !wantedGPUs(p.GPUs).None()
}

// wantedGPUs is p's gpus setting with config's default for an unset one.
func wantedGPUs(g config.GPUs) config.GPUs {
	if !g.Set {
		return config.GPUs{Set: true, Count: config.DefaultGPUs}
	}
	return g
}

// hostGPUs reads the inventory; a host without GPUs is a clear refusal for
// a project that asks for some.
func (m *Manager) hostGPUs(p config.Resolved) ([]GPU, error) {
	gpus, err := m.opts.GPUs.GPUs()
	switch {
	case errors.Is(err, ErrNoHostGPUs):
		return nil, userErr(ErrNoHostGPUs, err,
			"project %s asks for GPUs (gpus = %s) but this host has no NVIDIA GPUs; the administrator should set gpus = \"none\" for it",
			p.Name, gpusSetting(p.GPUs))
	case err != nil:
		return nil, userErr(nil, err, "the GPUs of this host cannot be read, so project %s cannot lease any; the administrator can find the details in the gateway log", p.Name)
	}
	return gpus, nil
}

// grantGPUs leases want for (p, user)'s container. A refusal is retried
// once after dropping the leases of containers that no longer run.
func (m *Manager) grantGPUs(ctx context.Context, log *slog.Logger, p config.Resolved, user string, want config.GPUs) (Lease, error) {
	m.restoreLeasesOnce(ctx)
	gpus, err := m.hostGPUs(p)
	if err != nil {
		return Lease{}, err
	}
	req := LeaseRequest{Container: ContainerName(p.Name, user), User: user, Project: p.Name, GPUs: want, Mode: p.GPUMode}
	l, err := m.leases.Grant(req, gpus)
	if errors.Is(err, ErrGPUsBusy) && m.syncLeases(ctx, log) > 0 {
		l, err = m.leases.Grant(req, gpus)
	}
	if err != nil {
		return Lease{}, err
	}
	log.Info("GPUs leased", "gpus", l.UUIDs, "mode", l.Mode)
	return l, nil
}

// releaseGPUs gives back name's lease, if it holds one.
func (m *Manager) releaseGPUs(name string) {
	if m.leases != nil && m.leases.Release(name) {
		m.log.Info("GPUs released", "container", name)
	}
	m.mu.Lock()
	m.uses.ForgetSince(name)
	delete(m.gpuLost, name) // stopped or removed: a start sets its devices up anew
	m.mu.Unlock()
}

// WithLease is spec with its GPUs named by l: DeviceRequests list exactly
// the leased UUIDs, and labels record the lease for a restarted gateway.
// The hash is left as it was: a lease is not configuration.
func WithLease(spec Spec, l Lease) Spec {
	if len(l.UUIDs) == 0 {
		return spec
	}
	hc := *spec.HostConfig
	hc.DeviceRequests = []container.DeviceRequest{{Driver: "nvidia", DeviceIDs: cloneLease(l).UUIDs, Capabilities: [][]string{{"gpu"}}}}
	cfg := *spec.Config
	cfg.Labels = make(map[string]string, len(spec.Config.Labels)+2)
	for k, v := range spec.Config.Labels {
		cfg.Labels[k] = v
	}
	for k, v := range leaseLabels(l) {
		cfg.Labels[k] = v
	}
	spec.HostConfig, spec.Config = &hc, &cfg
	return spec
}

// restoreLeasesOnce rebuilds the table from the running containers' labels
// the first time a lease is needed (a restarted gateway).
func (m *Manager) restoreLeasesOnce(ctx context.Context) {
	if !m.restored.Load() {
		m.syncLeases(ctx, m.log)
	}
}

// RestoreLeases rebuilds the lease table from the labels of the running
// managed containers; the gateway calls it at start. Without an inventory
// it does nothing.
func (m *Manager) RestoreLeases(ctx context.Context) error {
	if m.leases == nil {
		return nil
	}
	_, err := m.syncLeasesErr(ctx, m.log)
	return err
}

// syncLeases makes the table agree with the engine: a running container's
// labelled lease is recorded, and a lease whose container no longer runs is
// dropped. It returns how many leases it dropped.
func (m *Manager) syncLeases(ctx context.Context, log *slog.Logger) int {
	n, err := m.syncLeasesErr(ctx, log)
	if err != nil {
		log.Warn("GPU leases not checked against the engine", "err", err)
	}
	return n
}

func (m *Manager) syncLeasesErr(ctx context.Context, log *slog.Logger) (int, error) {
	// A lease granted from here on, or held by a container whose Ensure
	// or idle stop is under way now, may belong to a container the listing
	// below sees half made: those are left alone.
	seq := m.leases.Seq()
	var busy []string
	for _, l := range m.leases.Leases() {
		if m.locks.Held(l.Container) {
			busy = append(busy, l.Container)
		}
	}
	f := m.ownFilter(filters.Arg("label", LabelManaged+"=true"))
	cs, err := m.api.ContainerList(ctx, container.ListOptions{Filters: f})
	if err != nil {
		return 0, err
	}
	m.restored.Store(true)
	running := map[string]bool{}
	for _, c := range cs {
		if len(c.Names) == 0 {
			continue
		}
		name := c.Names[0][1:]
		running[name] = true
		if _, held := m.leases.Held(name); held {
			continue
		}
		if l, ok := LeaseFromLabels(name, c.Labels); ok {
			m.leases.Restore(l)
			m.touchIdleSince(name)
			log.Info("GPU lease restored from the container's labels", "holder", name, "gpus", l.UUIDs)
		}
	}
	dropped := 0
	for _, l := range m.leases.Leases() {
		if running[l.Container] || contains(busy, l.Container) {
			continue
		}
		if m.leases.releaseBefore(l.Container, seq+1) {
			dropped++
			log.Info("GPU lease dropped: its container no longer runs", "holder", l.Container, "gpus", l.UUIDs)
		}
	}
	return dropped, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// idleWord describes container name for a refusal line.
func (m *Manager) idleWord(name string) string {
	n, since := m.holderState(name)
	return IdleWord(n, since, time.Now())
}

// holderState is how many connections hold container name now and, when
// none does, since when it has been idle (zero: not known).
func (m *Manager) holderState(name string) (inUse int, idleSince time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.uses.InUse(name), m.uses.Since(name)
}

// touchIdleSince records that name is idle from now, unless it already was.
func (m *Manager) touchIdleSince(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.uses.MarkIdle(name)
}

// LeaseStatus is one container's lease with how its holder is doing, for
// the admin view ("in use", "idle 3h").
type LeaseStatus struct {
	Lease
	Idle      string
	InUse     bool      // a connection holds the container now
	IdleSince time.Time // when its last use ended; zero while in use or when not known
	// NVMLLost: the last probe found its GPU devices denied
	// (gpuaccess.go); it is recreated when nobody is inside.
	NVMLLost bool
}

// GPULeases lists the leases held now, by container name, with what the
// last GPU probe of each found; nil without an inventory. It asks nothing
// of the engine or the agents (GPUHolders does).
func (m *Manager) GPULeases() []LeaseStatus {
	if m.leases == nil {
		return nil
	}
	var out []LeaseStatus
	for _, l := range m.leases.Leases() {
		n, since := m.holderState(l.Container)
		st := LeaseStatus{Lease: l, Idle: IdleWord(n, since, time.Now()), InUse: n > 0, NVMLLost: m.gpuAccessLost(l.Container, "")}
		if n == 0 {
			st.IdleSince = since
		}
		out = append(out, st)
	}
	return out
}
