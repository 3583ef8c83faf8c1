package workspace

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
)

func TestParseJobs(t *testing.T) {
	top := container.TopResponse{
		Titles: []string{"PID", "ELAPSED", "COMMAND"},
		Processes: [][]string{
			{"100", "7200", AgentTarget + " serve"},
			{"101", "3600", "python3 train.py --epochs 9"},
			{"102", "5", "[sh] <defunct>"},
			{"103", "x", "sleep 60"},
			{"104"}, // short row
		},
	}
	jobs, ok := parseJobs(top)
	if !ok || len(jobs) != 2 {
		t.Fatalf("jobs = %+v, %v", jobs, ok)
	}
	if j := jobs[0]; j.PID != 101 || j.Command != "python3 train.py --epochs 9" || j.Age != time.Hour || !j.AgeKnown {
		t.Errorf("job = %+v", j)
	}
	if j := jobs[1]; j.PID != 103 || j.AgeKnown {
		t.Errorf("job without a readable age = %+v", j)
	}
	// The default ps columns (no ELAPSED) are not what was asked.
	if _, ok := parseJobs(container.TopResponse{Titles: []string{"UID", "PID", "CMD"}}); ok {
		t.Error("parsed a listing without ages")
	}
}

func TestPlanStop(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	since := now.Add(-30 * time.Minute)
	idle := idleView{idleStop: 2 * time.Hour, armed: true, idleSince: since}
	cases := []struct {
		name    string
		v       idleView
		running bool
		jobs    int
		want    StopPlan
	}{
		{"stopped", idle, false, 0, StopPlan{Status: StopNotRunning, IdleStop: 2 * time.Hour, IdleSince: since}},
		{"idle stop off", idleView{}, true, 0, StopPlan{Status: StopNever}},
		{"held", idleView{idleStop: time.Hour, held: 2, idleSince: since}, true, 3, StopPlan{Status: StopInUse, IdleStop: time.Hour}},
		{"no timer", idleView{idleStop: time.Hour}, true, 0, StopPlan{Status: StopUntracked, IdleStop: time.Hour}},
		{"jobs", idle, true, 2, StopPlan{Status: StopPostponed, IdleStop: 2 * time.Hour, IdleSince: since}},
		{"scheduled", idle, true, 0, StopPlan{Status: StopScheduled, IdleStop: 2 * time.Hour, IdleSince: since, At: since.Add(2 * time.Hour)}},
		// Postponed at since+2h and since+4h while jobs ran, which have
		// ended: the next check is at since+6h.
		{"rechecked", idleView{idleStop: 2 * time.Hour, armed: true, idleSince: now.Add(-5 * time.Hour)}, true, 0,
			StopPlan{Status: StopScheduled, IdleStop: 2 * time.Hour, IdleSince: now.Add(-5 * time.Hour), At: now.Add(time.Hour), Rechecked: true}},
	}
	for _, c := range cases {
		if got := planStop(c.v, c.running, c.jobs, now); got != c.want {
			t.Errorf("%s: plan = %+v\nwant %+v", c.name, got, c.want)
		}
	}
}

// topEngine answers ContainerTop only: each call waits for release (or its
// context), and the calls in flight are counted.
type topEngine struct {
	dockerAPI
	release           chan struct{}
	inflight, maxSeen atomic.Int32
	noDeadline        atomic.Bool // a call came without a deadline within jobsTimeout
}

func (f *topEngine) ContainerTop(ctx context.Context, id string, _ []string) (container.TopResponse, error) {
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > jobsTimeout {
		f.noDeadline.Store(true)
	}
	n := f.inflight.Add(1)
	defer f.inflight.Add(-1)
	for {
		m := f.maxSeen.Load()
		if n <= m || f.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	select {
	case <-f.release:
	case <-ctx.Done():
		return container.TopResponse{}, ctx.Err()
	}
	return container.TopResponse{Titles: []string{"PID", "ELAPSED", "COMMAND"}, Processes: [][]string{{"7", "1", "sleep " + id}}}, nil
}

// Jobs asks the engine for at most jobsParallel containers at once, each
// call bounded by jobsTimeout, and answers for every container.
func TestJobsBounded(t *testing.T) {
	f := &topEngine{release: make(chan struct{})}
	m := fakeManager(t, f, nil, nil)
	var ids []string
	for i := range 3 * jobsParallel {
		ids = append(ids, "c"+strconv.Itoa(i))
	}
	got := make(chan map[string]JobList, 1)
	go func() { got <- m.Jobs(context.Background(), ids) }()
	waitFor(t, 10*time.Second, "calls in flight", func() bool { return f.inflight.Load() == jobsParallel })
	time.Sleep(100 * time.Millisecond) // room for calls beyond the bound, if any
	close(f.release)
	res := <-got
	if n := f.maxSeen.Load(); n != jobsParallel {
		t.Errorf("%d calls at once, want %d", n, jobsParallel)
	}
	if f.noDeadline.Load() {
		t.Error("a process list without its own deadline")
	}
	for _, id := range ids {
		if jl := res[id]; jl.Err != nil || len(jl.Jobs) != 1 || jl.Jobs[0].Command != "sleep "+id {
			t.Errorf("%s: %+v", id, jl)
		}
	}

	// A caller's context that ends: every container is answered, with
	// the error, and none waits for a turn.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f.release = make(chan struct{}) // never released
	res = m.Jobs(ctx, ids)
	for _, id := range ids {
		if jl := res[id]; !errors.Is(jl.Err, context.Canceled) {
			t.Errorf("%s after cancel: %+v", id, jl)
		}
	}
}

// The whole listing ends within jobsBudget, though every call hangs: the
// containers not answered by then get the error.
func TestJobsBudget(t *testing.T) {
	old := jobsBudget
	jobsBudget = 200 * time.Millisecond
	t.Cleanup(func() { jobsBudget = old })
	f := &topEngine{release: make(chan struct{})} // never released
	m := fakeManager(t, f, nil, nil)
	ids := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i"}
	start := time.Now()
	res := m.Jobs(context.Background(), ids)
	// Well under jobsTimeout, which alone would take three rounds of it.
	if d := time.Since(start); d >= jobsTimeout {
		t.Errorf("listing took %v", d)
	}
	for _, id := range ids {
		if jl := res[id]; !errors.Is(jl.Err, context.DeadlineExceeded) {
			t.Errorf("%s: %+v", id, jl)
		}
	}
}

// psEngine answers ContainerTop like an engine whose ps knows only its
// default columns (busybox): the format Jobs asks for is refused.
type psEngine struct{ dockerAPI }

func (psEngine) ContainerTop(_ context.Context, id string, args []string) (container.TopResponse, error) {
	if id != "c1" {
		return container.TopResponse{}, errors.New("no such container: " + id)
	}
	if len(args) > 0 {
		return container.TopResponse{}, errors.New("ps: unrecognized option: o")
	}
	return container.TopResponse{Titles: []string{"UID", "PID", "CMD"}, Processes: [][]string{
		{"1000", "1", AgentTarget}, {"1000", "9", "sleep 30"},
	}}, nil
}

func TestJobsWithoutAges(t *testing.T) {
	m := fakeManager(t, psEngine{}, nil, nil)
	res := m.Jobs(context.Background(), []string{"c1", "gone"})
	if jl := res["c1"]; jl.Err != nil || len(jl.Jobs) != 1 || jl.Jobs[0].Command != "sleep 30" || jl.Jobs[0].AgeKnown {
		t.Errorf("c1: %+v", jl)
	}
	if jl := res["gone"]; jl.Err == nil || !strings.Contains(jl.Err.Error(), "no such container") {
		t.Errorf("gone: %+v", jl)
	}
}
