package kube

import (
	"context"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Acquire records a connection inside pod name: an acquired pod is neither
// recreated nor deleted when idle. Pair it with Release.
func (m *Manager) Acquire(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.uses.Acquire(name)
}

// Release ends a use recorded by Acquire; at zero the idle timer starts.
func (m *Manager) Release(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ok, idle := m.uses.Release(name)
	if !ok {
		m.log.Error("release of a pod that was not acquired", "pod", name)
		return
	}
	if idle {
		m.armLocked(name, m.idleFor)
	}
}

// InUse is the number of connections inside pod name.
func (m *Manager) InUse(name string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.uses.InUse(name)
}

// armLocked starts name's idle timer to fire after d (at once when that is
// past), or forgets its use record when idle stop is off.
func (m *Manager) armLocked(name string, d time.Duration) {
	if m.idleFor <= 0 || m.closed {
		m.uses.Forget(name)
		return
	}
	m.uses.Arm(name, d, func(gen uint64) { m.idleStop(name, gen) })
}

// RestoreIdle arms an idle timer for every running pod of the gateway's
// when it starts: a pod nobody returns to is still deleted. It returns how
// many were armed.
func (m *Manager) RestoreIdle(ctx context.Context) (int, error) {
	pods, err := m.pods().List(ctx, metav1.ListOptions{LabelSelector: m.ownSelector()})
	if err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, p := range pods.Items {
		if m.uses.InUse(p.Name) > 0 || m.uses.Armed(p.Name) {
			continue
		}
		m.uses.MarkIdle(p.Name)
		m.armLocked(p.Name, m.idleFor)
		n++
	}
	return n, nil
}

// SetIdleStop puts a new idle_stop in force for the idle pods.
func (m *Manager) SetIdleStop(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.idleFor = d
	for _, name := range m.uses.Idle() {
		since := m.uses.Since(name)
		if since.IsZero() {
			since = time.Now()
		}
		// Idle longer than the new idle_stop already: now.
		m.armLocked(name, d-time.Since(since))
	}
}

// idleStop deletes an idle pod; its claim and data stay. A pod whose user
// left processes running (a training run under nohup) is kept, and looked
// at again one idle period later.
func (m *Manager) idleStop(name string, gen uint64) {
	m.mu.Lock()
	if m.closed || !m.uses.Current(name, gen) {
		m.mu.Unlock()
		return
	}
	m.wg.Add(1)
	m.mu.Unlock()
	defer m.wg.Done()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	unlock, err := m.locks.Lock(ctx, name)
	if err != nil {
		return
	}
	defer unlock()
	if m.InUse(name) > 0 {
		return
	}
	jobs, err := m.jobsOf(ctx, name)
	if err != nil {
		// A pod that cannot be asked counts none, as the Docker
		// backend's idle stop does.
		m.log.Warn("could not list the idle pod's processes", "pod", name, "err", err)
	}
	if len(jobs) > 0 {
		m.log.Info("idle pod kept: its user left processes running", "pod", name, "processes", len(jobs))
		m.mu.Lock()
		if m.uses.InUse(name) == 0 {
			m.armLocked(name, m.idleFor)
		}
		m.mu.Unlock()
		return
	}
	if err := m.deleteAndWait(ctx, name); err != nil {
		m.log.Error("idle stop", "pod", name, "err", err)
		return
	}
	m.mu.Lock()
	if m.uses.InUse(name) == 0 {
		m.uses.Forget(name)
		m.uses.ForgetSince(name)
	}
	m.mu.Unlock()
	m.log.Info("idle pod deleted; its claim keeps the data", "pod", name)
}

// jobsScript lists the processes of the container user other than the
// agent (PID 1 and the child it serves from, whose command line is the
// agent binary's) and zombies, "PID COMMAND" per line: what a user left
// running. The exec itself runs as root, so it is not listed.
const jobsScript = `me=$(stat -c %u /proc/1)
for d in /proc/[0-9]*; do
  p=${d#/proc/}
  [ "$p" = 1 ] && continue
  [ "$(stat -c %u "$d" 2>/dev/null)" = "$me" ] || continue
  c=$(tr '\000' ' ' < "$d/cmdline" 2>/dev/null)
  case $c in ''|` + agentBinary + `\ *) continue ;; esac
  printf '%s %s\n' "$p" "$(cat "$d/comm" 2>/dev/null)"
done`

// Job is a process a pod's user left running.
type Job struct {
	PID     int
	Command string
}

// jobs lists the processes the pod's user left running.
func (m *Manager) jobs(ctx context.Context, pod string) ([]Job, error) {
	out, err := m.exec(ctx, pod, []string{"/bin/sh", "-c", jobsScript}, nil)
	if err != nil {
		return nil, err
	}
	return parseJobs(out), nil
}

// parseJobs reads jobsScript's output, which comes from inside the pod:
// lines that are not "PID COMMAND" are skipped, not trusted, and the list
// is capped.
func parseJobs(out []byte) []Job {
	var js []Job
	for line := range strings.Lines(string(out)) {
		pid, cmd, _ := strings.Cut(strings.TrimSpace(line), " ")
		n, err := strconv.Atoi(pid)
		if err != nil || n <= 1 {
			continue // not a line of ours: hostile output is skipped, not trusted
		}
		if len(cmd) > 64 {
			cmd = cmd[:64]
		}
		js = append(js, Job{PID: n, Command: cmd})
		if len(js) == maxJobs {
			break
		}
	}
	return js
}

// maxJobs caps the processes listed for one pod.
const maxJobs = 1000

// ownSelector matches the pods this gateway manages.
func (m *Manager) ownSelector() string {
	set := labels.Set{LabelManaged: "true"}
	for k, v := range m.o.Labels {
		set[k] = v
	}
	return labels.SelectorFromSet(set).String()
}
