package workspace

import (
	"context"
	"testing"
	"time"
)

// On the real engine: a container's jobs (a detached sleep, not the agent)
// with host PID and age, and the stop plan through Ensure, Acquire and
// Release; a manager that never saw the container keeps no timer for it.
func TestJobsAndStopPlan(t *testing.T) {
	r := newRig(t, func(o *Options) { o.IdleStop = time.Hour })
	inst, _ := r.ensure(r.project(), "alice")
	ctx := context.Background()

	if p := r.m.StopPlan(inst.Name, true, 0, time.Now()); p.Status != StopScheduled || p.At.Sub(p.IdleSince) != time.Hour {
		t.Errorf("ensured, not acquired: %+v", p)
	}
	r.m.Acquire(inst.Name)
	if p := r.m.StopPlan(inst.Name, true, 0, time.Now()); p.Status != StopInUse || !p.IdleSince.IsZero() {
		t.Errorf("acquired: %+v", p)
	}
	before := time.Now()
	r.m.Release(inst.Name)
	if p := r.m.StopPlan(inst.Name, true, 0, time.Now()); p.Status != StopScheduled || p.IdleSince.Before(before) || p.At != p.IdleSince.Add(time.Hour) {
		t.Errorf("released: %+v", p)
	}

	r.execRoot(inst.ID, "sh", "-c", "setsid sleep 321 </dev/null >/dev/null 2>&1 &")
	var jl JobList
	// Until it has exec'd, the job is still "setsid sleep 321".
	waitFor(t, 10*time.Second, "the detached sleep among the jobs", func() bool {
		jl = r.m.Jobs(ctx, []string{inst.ID, "no-such-container"})[inst.ID]
		return len(jl.Jobs) > 0 && jl.Jobs[0].Command == "sleep 321"
	})
	if jl.Err != nil || len(jl.Jobs) != 1 || jl.Jobs[0].Command != "sleep 321" || jl.Jobs[0].PID <= 1 || !jl.Jobs[0].AgeKnown {
		t.Fatalf("jobs = %+v (the agent is no job)", jl)
	}
	if bad := r.m.Jobs(ctx, []string{"no-such-container"})["no-such-container"]; bad.Err == nil {
		t.Errorf("a container that does not exist: %+v, want an error", bad)
	}
	if p := r.m.StopPlan(inst.Name, true, len(jl.Jobs), time.Now()); p.Status != StopPostponed {
		t.Errorf("with a job: %+v", p)
	}

	// Another manager on the same engine, which never used the container
	// nor restored its timers.
	other, err := NewManager(r.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if p := other.StopPlan(inst.Name, true, 0, time.Now()); p.Status != StopUntracked {
		t.Errorf("another manager: %+v", p)
	}
}
