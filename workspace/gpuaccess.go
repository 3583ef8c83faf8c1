package workspace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/filters"

	"github.com/sygaldry/sygaldry/internal/gpuprobe"
	"github.com/sygaldry/sygaldry/link"
)

// GPU access of running containers (issue 7). A host `systemctl
// daemon-reload` can make systemd rewrite a running container's device
// cgroup without the NVIDIA runtime's allow rules; from then on CUDA and
// nvidia-smi in it fail with "Failed to initialize NVML: Unknown Error"
// although the device nodes are still there. Only a restart brings the
// rules back. The manager asks the container's agent (package gpuprobe:
// access(2) on every /dev/nvidia* node) whenever a login reuses a running
// container that holds a lease, and for the admin's GPU view; a container
// whose devices answer EPERM has lost its GPUs. It is recreated by the same
// rule as a container whose configuration changed — at a login, once no
// connection holds it and no job runs in it — and until then an interactive
// login says so in its banner (LoginNotice) and `sygctl gpus` marks it.

// gpuProbeTimeout bounds one probe: the link dial and the request. An agent
// that does not answer in time is "not known", never "lost".
const gpuProbeTimeout = 3 * time.Second

// ModeUnknown is the mode of a GPU holder made before leases existed (no
// LabelGPUs): the engine gave it GPUs the lease table did not grant.
const ModeUnknown = "unknown"

// NVMLLostNotice is the banner line of an interactive login into a
// container that lost its GPUs and is kept because somebody is inside.
const NVMLLostNotice = `this container lost its GPUs (NVML: "Unknown Error", after a host daemon-reload); it is recreated at a login once no session or job is left in it`

// gpuLost is what the last probe of a container found lost.
type gpuLost struct {
	id     string // the container it was found in; another one is not lost
	denied []string
	since  time.Time
}

// gpuProber asks the agent of a running container for its GPU devices;
// tests replace it (Options has no field for it: a manager always asks the
// real agent).
type gpuProber func(ctx context.Context, f *found) (gpuprobe.Report, error)

// probeGPUs asks f's agent over a fresh link, proven like every other.
func (m *Manager) probeGPUs(ctx context.Context, f *found) (gpuprobe.Report, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, gpuProbeTimeout, errors.New("the agent did not answer the GPU probe in time"))
	defer cancel()
	peer, err := m.peer(ctx, f.id, f.name, f.agentKey)
	if err != nil {
		return gpuprobe.Report{}, err
	}
	cl, err := link.Dial(ctx, f.socketPath(), peer)
	if err != nil {
		return gpuprobe.Report{}, err
	}
	defer cl.Close()
	type answer struct {
		ok      bool
		payload []byte
		err     error
	}
	done := make(chan answer, 1)
	go func() {
		ok, payload, err := cl.SendRequest(gpuprobe.Request, true, nil)
		done <- answer{ok, payload, err}
	}()
	var a answer
	select {
	case a = <-done:
	case <-ctx.Done():
		cl.Close() // ends the SendRequest above
		<-done
		return gpuprobe.Report{}, context.Cause(ctx)
	}
	switch {
	case a.err != nil:
		return gpuprobe.Report{}, a.err
	case !a.ok:
		return gpuprobe.Report{}, errors.New("the agent refused the GPU probe (an agent older than the probe)")
	}
	return gpuprobe.Decode(a.payload)
}

// checkGPUAccess probes running container f and records the answer; it
// reports whether f has lost its GPUs. A probe that fails leaves what was
// known. log names the container.
func (m *Manager) checkGPUAccess(ctx context.Context, log *slog.Logger, f *found) bool {
	probe := m.probe
	if probe == nil {
		probe = m.probeGPUs
	}
	r, err := probe(ctx, f)
	if err != nil {
		log.Warn("GPU access of the container not checked", "err", err)
		return m.gpuAccessLost(f.name, f.id)
	}
	return m.recordGPUAccess(log, f.name, f.id, r)
}

// recordGPUAccess keeps what a probe of container name (id) answered and
// reports whether it lost its GPUs.
func (m *Manager) recordGPUAccess(log *slog.Logger, name, id string, r gpuprobe.Report) bool {
	denied := r.Denied()
	m.mu.Lock()
	defer m.mu.Unlock()
	prev, had := m.gpuLost[name]
	if len(denied) == 0 {
		if had && prev.id == id {
			log.Info("the container can open its GPUs again")
		}
		delete(m.gpuLost, name)
		return false
	}
	if !had || prev.id != id {
		log.Warn("the container lost access to its GPUs: the device cgroup denies them (NVML: Unknown Error); it is recreated when nobody is inside",
			"id", id, "denied", denied)
		prev = gpuLost{id: id, since: time.Now()}
	}
	prev.denied = denied
	m.gpuLost[name] = prev
	return true
}

// LoginNotice is the line for the banner of an interactive login into
// container name: NVMLLostNotice while it is known to have lost its GPUs;
// empty otherwise.
func (m *Manager) LoginNotice(name string) string {
	if m.gpuAccessLost(name, "") {
		return NVMLLostNotice
	}
	return ""
}

// gpuAccessLost reports whether container name, as the container id, was
// last found without its GPUs.
func (m *Manager) gpuAccessLost(name, id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.gpuLost[name]
	return ok && (id == "" || l.id == id)
}

// forgetGPUAccess drops what was known of name: it was removed, stopped or
// started anew.
func (m *Manager) forgetGPUAccess(name string) {
	m.mu.Lock()
	delete(m.gpuLost, name)
	m.mu.Unlock()
}

// GPUHolders is the admin's view of who holds the GPUs: every lease
// (GPULeases) after a fresh probe of its container's GPU access, and the
// running containers made before leases existed, which hold GPUs the table
// never granted (Mode ModeUnknown; UUIDs: the GPUs their device requests
// name, or every GPU for a count or "all", since the engine does not say
// which it picked). nil without an inventory.
func (m *Manager) GPUHolders(ctx context.Context) []LeaseStatus {
	if m.leases == nil {
		return nil
	}
	m.restoreLeasesOnce(ctx)
	f := m.ownFilter(filters.Arg("status", "running"))
	running, err := m.list(ctx, f)
	if err != nil {
		m.log.Warn("GPU holders: list containers", "err", err)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		unknown []LeaseStatus
	)
	for i := range running {
		c := &running[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.labels[LabelGPUs] != "" {
				m.checkGPUAccess(ctx, m.log.With("container", c.name), c)
				return
			}
			if l, ok := m.unleasedHolder(ctx, c); ok {
				mu.Lock()
				unknown = append(unknown, l)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	out := m.GPULeases()
	slices.SortFunc(unknown, func(a, b LeaseStatus) int { return strings.Compare(a.Container, b.Container) })
	return append(out, unknown...)
}

// unleasedHolder describes running container c, which has no lease label,
// as a holder of the GPUs its device requests ask for; ok is false when it
// asks for none.
func (m *Manager) unleasedHolder(ctx context.Context, c *found) (LeaseStatus, bool) {
	ci, err := m.api.ContainerInspect(ctx, c.id)
	if err != nil || ci.HostConfig == nil {
		if err != nil {
			m.log.Warn("GPU holders: inspect container", "container", c.name, "err", err)
		}
		return LeaseStatus{}, false
	}
	var ids []string
	every := false
	for _, d := range ci.HostConfig.DeviceRequests {
		ids = append(ids, d.DeviceIDs...)
		every = every || d.Count != 0
	}
	if len(ids) == 0 && !every {
		return LeaseStatus{}, false
	}
	gpus, err := m.opts.GPUs.GPUs()
	if err != nil {
		return LeaseStatus{}, false
	}
	var uuids []string
	for _, g := range gpus {
		if every || slices.Contains(ids, g.UUID) || slices.Contains(ids, strconv.Itoa(g.Index)) {
			uuids = append(uuids, g.UUID)
		}
	}
	n, since := m.holderState(c.name)
	st := LeaseStatus{
		Lease: Lease{Container: c.name, User: c.user, Project: c.project, UUIDs: uuids, Mode: ModeUnknown},
		Idle:  IdleWord(n, since, time.Now()), InUse: n > 0,
	}
	if n == 0 {
		st.IdleSince = since
	}
	return st, true
}

// staleness is why a running container would be recreated: the log's
// words and the user's.
type staleness struct {
	log, user string
}

var (
	staleConfig   = staleness{"container spec changed", "runs with an older configuration"}
	staleNVML     = staleness{"container lost access to its GPUs", "lost access to its GPUs"}
	stalePreLease = staleness{"container predates GPU leases", "was made before GPU leases"}
)

// staleReason is why container cur would be recreated once nobody is
// inside; nil: it stays. hash is the spec's now, leasing whether its
// project leases GPUs, lost what the GPU probe said of it.
func staleReason(cur *found, hash string, leasing, lost bool) *staleness {
	switch {
	case cur == nil:
		return nil
	case cur.hash != hash:
		return &staleConfig
	case lost:
		return &staleNVML
	case leasing && cur.running() && cur.labels[LabelGPUs] == "":
		// A stopped one is made anew by the lease path (manager.go).
		return &stalePreLease
	}
	return nil
}

func (s staleness) recreating(name string) string {
	if s == staleConfig {
		return fmt.Sprintf("The configuration of %s changed; recreating it ...", name)
	}
	return fmt.Sprintf("Container %s %s; recreating it ...", name, s.user)
}
