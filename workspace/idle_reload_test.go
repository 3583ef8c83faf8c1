package workspace

import (
	"context"
	"testing"
	"time"
)

// A reload that shortens idle_stop stops a container that has been idle
// longer than the new value, without waiting out the old one.
func TestSetIdleStopReArmsIdleContainers(t *testing.T) {
	r := newRig(t, func(o *Options) { o.IdleStop = time.Hour })
	inst, _ := r.ensure(r.project(), "alice")
	r.m.Acquire(inst.Name)
	r.m.Release(inst.Name)
	time.Sleep(300 * time.Millisecond)
	if !r.inspect(inst.ID).State.Running {
		t.Fatal("stopped before its hour of idle_stop")
	}
	r.m.SetIdleStop(200 * time.Millisecond)
	waitFor(t, 20*time.Second, "idle container stopped after idle_stop was shortened", func() bool { return !r.inspect(inst.ID).State.Running })
}

// A manager that starts while a container runs (a gateway restart) arms
// its idle timer: it is stopped after idle_stop though nobody used it
// since the restart.
func TestRestoreIdleAfterRestart(t *testing.T) {
	r := newRig(t, func(o *Options) { o.IdleStop = time.Hour })
	inst, _ := r.ensure(r.project(), "alice")
	r.m.Acquire(inst.Name) // a connection of the old gateway, never released
	r.m.Close()

	opts := r.opts
	opts.IdleStop = 300 * time.Millisecond
	m2, err := NewManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m2.Close() })
	n, err := m2.RestoreIdle(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("RestoreIdle = %d, %v; want 1 container armed", n, err)
	}
	waitFor(t, 20*time.Second, "container of the old gateway stopped when idle", func() bool { return !r.inspect(inst.ID).State.Running })
}

// A container started by someone else while the gateway runs (sygctl
// launch, which arms no timer) gets the gateway's idle timer from the
// engine's start event, and is stopped when idle.
func TestWatchStartsArmsContainersStartedElsewhere(t *testing.T) {
	r := newRig(t, func(o *Options) { o.IdleStop = 400 * time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.m.WatchStarts(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	launch := r.opts
	launch.IdleStop, launch.KeepRunning = 0, true // what sygctl launch sets
	other, err := NewManager(launch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	time.Sleep(200 * time.Millisecond) // the event stream is open
	inst, err := other.Ensure(context.Background(), r.project(), "alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "container started elsewhere stopped when idle", func() bool { return !r.inspect(inst.ID).State.Running })
}
