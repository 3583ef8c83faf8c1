package workspace

// Why a container is up and when it stops, for `sygctl containers`: its
// jobs (the processes the idle stop waits for) and its idle-stop plan.

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
)

// Job is a process in a container other than the agent: what keeps an
// idle container from being stopped (the idle stop's own rule, see
// userCommands).
type Job struct {
	PID     int           // on the host, as the GPU inventory names it
	Command string        // with its arguments
	Age     time.Duration // since it started, when AgeKnown
	// AgeKnown: the engine said how old it is.
	AgeKnown bool
}

// JobList is the answer for one container: its jobs, or why they are not
// known.
type JobList struct {
	Jobs []Job
	Err  error
}

// Bounds of a jobs listing: each container's process list is one engine
// call, made for at most jobsParallel containers at once and cut after
// jobsTimeout, and the whole listing ends after jobsBudget (the containers
// not asked by then are answered with the error), so the listing of a host
// with many containers, or a stuck engine, stays well within the admin
// API's time.
const (
	jobsParallel = 4
	jobsTimeout  = 5 * time.Second
)

var jobsBudget = 10 * time.Second // a variable for the test of the budget

// jobsPSArgs is the ps format asked of the engine: the host PID, the age in
// seconds, and the command line (last, as it holds spaces).
var jobsPSArgs = []string{"-o", "pid,etimes,args"}

// Jobs lists the jobs of each container in ids (running ones; IDs or
// names), keyed as given. The calls run concurrently, at most jobsParallel
// at once, each within jobsTimeout, all within jobsBudget and ctx.
func (m *Manager) Jobs(ctx context.Context, ids []string) map[string]JobList {
	ctx, cancel := context.WithTimeout(ctx, jobsBudget)
	defer cancel()
	out := make(map[string]JobList, len(ids))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, jobsParallel)
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				mu.Lock()
				out[id] = JobList{Err: ctx.Err()}
				mu.Unlock()
				return
			}
			cctx, cancel := context.WithTimeout(ctx, jobsTimeout)
			defer cancel()
			jl := m.jobs(cctx, id)
			mu.Lock()
			out[id] = jl
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// jobs lists one container's jobs with their ages. An engine whose ps
// refuses the format, or ignores it, gets the idle stop's own question
// (ps's default columns, userCommands), and the jobs come without ages.
func (m *Manager) jobs(ctx context.Context, id string) JobList {
	top, err := m.api.ContainerTop(ctx, id, jobsPSArgs)
	if err == nil {
		if jobs, ok := parseJobs(top); ok {
			return JobList{Jobs: jobs}
		}
	}
	if ctx.Err() != nil {
		return JobList{Err: ctx.Err()}
	}
	if top, err = m.api.ContainerTop(ctx, id, nil); err != nil {
		return JobList{Err: err}
	}
	var jobs []Job
	for _, cmd := range userCommands(top) {
		jobs = append(jobs, Job{Command: cmd})
	}
	return JobList{Jobs: jobs}
}

// parseJobs reads `ps -o pid,etimes,args` as the engine returns it, keeping
// the rows the idle stop counts as use. ok is false when the columns are
// not those asked for.
func parseJobs(top container.TopResponse) (jobs []Job, ok bool) {
	pidCol, ageCol, cmdCol := -1, -1, -1
	for i, t := range top.Titles {
		switch t {
		case "PID":
			pidCol = i
		case "ELAPSED":
			ageCol = i
		case "COMMAND", "CMD":
			cmdCol = i
		}
	}
	if pidCol < 0 || ageCol < 0 || cmdCol < 0 {
		return nil, false
	}
	for _, p := range top.Processes {
		if max(pidCol, ageCol, cmdCol) >= len(p) || !isJob(p[cmdCol]) {
			continue
		}
		j := Job{Command: p[cmdCol]}
		j.PID, _ = strconv.Atoi(p[pidCol])
		if s, err := strconv.ParseInt(p[ageCol], 10, 64); err == nil && s >= 0 {
			j.Age, j.AgeKnown = time.Duration(s)*time.Second, true
		}
		jobs = append(jobs, j)
	}
	return jobs, true
}

// isJob tells whether the idle stop counts command as use: the one rule,
// userCommands, asked about one row.
func isJob(command string) bool {
	return len(userCommands(container.TopResponse{Titles: []string{"CMD"}, Processes: [][]string{{command}}})) == 1
}

// StopStatus says whether and why a container will be idle-stopped.
type StopStatus string

const (
	StopNotRunning StopStatus = "not_running" // nothing to stop
	StopInUse      StopStatus = "in_use"      // a connection holds it
	StopScheduled  StopStatus = "scheduled"   // stopped at StopPlan.At unless used before
	StopPostponed  StopStatus = "postponed"   // idle, but jobs run: the idle stop waits for them
	StopNever      StopStatus = "never"       // idle_stop is 0
	StopUntracked  StopStatus = "untracked"   // running, but no idle timer of this manager (see StopPlan)
)

// StopPlan is when a container will be idle-stopped, as this manager sees
// it now.
type StopPlan struct {
	Status   StopStatus
	IdleStop time.Duration // the idle_stop in force
	// IdleSince is when its last connection ended (or when this manager
	// first saw it idle: its start, a gateway restart); zero when in use
	// or not known.
	IdleSince time.Time
	// At is when the idle timer fires, for StopScheduled.
	At time.Time
	// Rechecked: the stop was postponed at least once while jobs ran, so
	// At is the next check, a whole number of idle_stop periods after
	// IdleSince, not the first.
	Rechecked bool
}

// idleView is what the idle timers hold for one container.
type idleView struct {
	idleStop  time.Duration
	held      int  // connections holding it (Acquire)
	armed     bool // an idle timer is armed
	idleSince time.Time
}

// idleViewOf reads container name's idle state under m.mu.
func (m *Manager) idleViewOf(name string) idleView {
	m.mu.Lock()
	defer m.mu.Unlock()
	return idleView{idleStop: m.opts.IdleStop, idleSince: m.uses.Since(name),
		held: m.uses.InUse(name), armed: m.uses.Armed(name)}
}

// StopPlan says when container name is idle-stopped: running tells whether
// it runs, jobs how many jobs it has (Jobs), now the time to plan from.
func (m *Manager) StopPlan(name string, running bool, jobs int, now time.Time) StopPlan {
	return planStop(m.idleViewOf(name), running, jobs, now)
}

// planStop follows the idle stop's rules (idle.go): a held container is
// never stopped; an idle one is stopped idle_stop after its last use,
// unless jobs run then, in which case the check is repeated idle_stop
// later, and so on.
func planStop(v idleView, running bool, jobs int, now time.Time) StopPlan {
	p := StopPlan{IdleStop: v.idleStop}
	if v.held == 0 {
		p.IdleSince = v.idleSince
	}
	switch {
	case !running:
		p.Status = StopNotRunning
	case v.idleStop <= 0:
		p.Status = StopNever
	case v.held > 0:
		p.Status = StopInUse
	case !v.armed:
		p.Status = StopUntracked
	case jobs > 0:
		p.Status = StopPostponed
	default:
		p.Status = StopScheduled
		since := v.idleSince
		if since.IsZero() {
			since = now
		}
		p.At = since.Add(v.idleStop)
		if p.At.Before(now) {
			// Postponed before: checks come every idle_stop from since.
			n := now.Sub(since)/v.idleStop + 1
			p.At = since.Add(n * v.idleStop)
			p.Rechecked = true
		}
	}
	return p
}
