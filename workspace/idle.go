package workspace

import (
	"context"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
)

// Acquire records a connection using container name: an acquired container
// is neither recreated nor stopped when idle. Pair it with Release.
func (m *Manager) Acquire(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.uses.Acquire(name)
}

// Release ends a use recorded by Acquire. At zero, the idle timer starts.
func (m *Manager) Release(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ok, idle := m.uses.Release(name)
	if !ok {
		m.log.Error("release of a container that was not acquired", "container", name)
		return
	}
	if idle {
		m.armIdleLocked(name)
	}
}

// InUse is the number of connections that hold container name.
func (m *Manager) InUse(name string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.uses.InUse(name)
}

// touchIdle (re)starts the idle timer of a container nobody holds, so a
// container that Ensure started but no connection acquired is stopped too,
// and the Ensure→Acquire gap is covered by a fresh full period.
func (m *Manager) touchIdle(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.touchIdleLocked(name)
}

// touchIdleLocked is touchIdle with m.mu held.
func (m *Manager) touchIdleLocked(name string) {
	if m.uses.InUse(name) == 0 {
		m.uses.MarkIdle(name)
		m.armIdleLocked(name)
	}
}

func (m *Manager) armIdleLocked(name string) {
	m.armIdleAfterLocked(name, m.opts.IdleStop)
}

// armIdleAfterLocked arms name's idle timer to fire after d, or forgets
// its use record when idle stop is off.
func (m *Manager) armIdleAfterLocked(name string, d time.Duration) {
	if m.opts.IdleStop <= 0 || m.closed {
		m.uses.Forget(name)
		return
	}
	m.uses.Arm(name, d, func(gen uint64) { m.idleStop(name, gen) })
}

// SetIdleStop puts a reloaded idle_stop in force. A container nobody holds
// is stopped d after it became idle (at once when that is past); 0 stops
// none from now on.
func (m *Manager) SetIdleStop(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d == m.opts.IdleStop {
		return
	}
	m.opts.IdleStop = d
	for _, name := range m.uses.Idle() {
		since := m.uses.Since(name)
		if since.IsZero() {
			since = time.Now()
		}
		m.armIdleAfterLocked(name, d-time.Since(since))
	}
}

// RestoreIdle arms the idle timer of every running container this manager
// manages, for a gateway that starts while containers run: each is stopped
// a full idle_stop from now unless a connection uses it. It returns how
// many it armed.
func (m *Manager) RestoreIdle(ctx context.Context) (int, error) {
	f := m.ownFilter()
	all, err := m.list(ctx, f)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range all {
		if c.running() && c.name == ContainerName(c.project, c.user) {
			m.touchIdle(c.name)
			n++
		}
	}
	return n, nil
}

// WatchStarts arms the idle timer of every managed container the engine
// starts that this manager does not track yet (one `sygctl launch` started
// while the gateway runs: launch has no timer of its own), until ctx ends.
// One it tracks keeps its timer. A broken event stream is opened again
// after a pause.
func (m *Manager) WatchStarts(ctx context.Context) {
	f := m.ownFilter(filters.Arg("type", "container"), filters.Arg("event", "start"),
		filters.Arg("label", LabelManaged+"=true"))
	for ctx.Err() == nil {
		msgs, errs := m.api.Events(ctx, events.ListOptions{Filters: f})
	stream:
		for {
			select {
			case <-ctx.Done():
				return
			case e := <-msgs:
				a := e.Actor.Attributes
				name := strings.TrimPrefix(a["name"], "/")
				if name != "" && name == ContainerName(a[LabelProject], a[LabelUser]) {
					m.armUntracked(name)
				}
			case err := <-errs:
				if ctx.Err() == nil {
					m.log.Warn("engine events lost; containers started by others get no idle timer until they are seen again", "err", err)
				}
				break stream
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
		}
	}
}

// armUntracked arms a full idle period for container name unless the
// manager already tracks it (a use, or a timer armed).
func (m *Manager) armUntracked(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.uses.Tracked(name) || m.closed {
		return
	}
	m.uses.SetSince(name, time.Now()) // idle from its start
	m.touchIdleLocked(name)
	m.log.Info("idle timer armed for a container started outside the gateway", "container", name, "idle_stop", m.opts.IdleStop)
}

// idleStop stops container name if nobody acquired it since the timer of
// generation gen was armed.
func (m *Manager) idleStop(name string, gen uint64) {
	current := func() bool { return m.uses.Current(name, gen) }
	m.mu.Lock()
	if m.closed || !current() {
		m.mu.Unlock()
		return
	}
	m.wg.Add(1)
	idleFor := m.opts.IdleStop
	m.mu.Unlock()
	defer m.wg.Done()

	// No caller's context exists here: the stop is bounded by its own timeout.
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	// Under the container's lock, so no Ensure is half way through it.
	unlock, err := m.locks.Lock(ctx, name)
	if err != nil {
		m.log.Warn("idle stop: lock", "container", name, "err", err)
		return
	}
	defer unlock()
	m.mu.Lock()
	ok := current()
	if ok {
		m.uses.Forget(name)
	}
	m.mu.Unlock()
	if !ok {
		return // acquired or re-armed while we waited for the lock
	}

	ci, err := m.api.ContainerInspect(ctx, name)
	if err != nil {
		if !cerrdefs.IsNotFound(err) {
			m.log.Warn("idle stop: inspect", "container", name, "err", err)
		}
		return
	}
	if ci.Config == nil || ci.Config.Labels[LabelManaged] != "true" || ci.State == nil || !ci.State.Running {
		return
	}
	// Connections are not the only use: a training run left behind with
	// nohup, setsid or tmux keeps the container busy, and stopping it would
	// kill the job (the culling trap of jupyterhub#1498). Only a container
	// where nothing but the agent runs is idle.
	if busy := m.userProcesses(ctx, ci.ID); len(busy) > 0 {
		m.log.Info("idle stop postponed: processes still running", "container", name, "count", len(busy), "first", busy[0])
		m.touchIdle(name)
		return
	}
	timeout := stopTimeoutSeconds
	if err := m.api.ContainerStop(ctx, ci.ID, container.StopOptions{Timeout: &timeout}); err != nil {
		m.log.Warn("idle stop failed", "container", name, "err", err)
		return
	}
	m.releaseGPUs(name)
	m.log.Info("stopped idle container", "container", name, "idle_stop", idleFor)
}

// userProcesses lists the commands running in the container other than the
// agent itself (and zombies). An error counts as "none": a container that
// cannot be inspected is not kept alive by it.
func (m *Manager) userProcesses(ctx context.Context, id string) []string {
	top, err := m.api.ContainerTop(ctx, id, nil)
	if err != nil {
		m.log.Debug("idle stop: list processes", "container", id, "err", err)
		return nil
	}
	return userCommands(top)
}

// userCommands picks the non-agent commands out of `docker top` (ps -ef)
// output.
func userCommands(top container.TopResponse) []string {
	col := -1
	for i, t := range top.Titles {
		if t == "CMD" || t == "COMMAND" {
			col = i
		}
	}
	if col < 0 {
		return nil
	}
	var out []string
	for _, p := range top.Processes {
		if col >= len(p) {
			continue
		}
		cmd := p[col]
		if strings.HasPrefix(cmd, AgentTarget) || strings.HasSuffix(cmd, "<defunct>") || strings.HasPrefix(cmd, "[") {
			continue
		}
		out = append(out, cmd)
	}
	return out
}
