package gpu

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
)

// events is a mock event set fed from a channel: Wait returns the next
// event, or ERROR_TIMEOUT after its timeout (or 20ms, whichever is shorter,
// to keep tests quick).
type events struct {
	mock.EventSet
	ch    chan nvml.EventData
	mu    sync.Mutex
	waits int
	freed int
	order *[]string
}

func newEvents(order *[]string) *events {
	e := &events{ch: make(chan nvml.EventData, 16), order: order}
	e.WaitFunc = func(ms uint32) (nvml.EventData, nvml.Return) {
		e.mu.Lock()
		e.waits++
		e.mu.Unlock()
		select {
		case ev := <-e.ch:
			return ev, nvml.SUCCESS
		case <-time.After(min(time.Duration(ms)*time.Millisecond, 20*time.Millisecond)):
			return nvml.EventData{}, nvml.ERROR_TIMEOUT
		}
	}
	e.FreeFunc = func() nvml.Return {
		e.mu.Lock()
		e.freed++
		if e.order != nil {
			*e.order = append(*e.order, "free")
		}
		e.mu.Unlock()
		return nvml.SUCCESS
	}
	return e
}

func TestCriticalXIDs(t *testing.T) {
	for _, xid := range []uint64{48, 63, 64, 74, 79, 92, 94, 95, 119} {
		if !Critical(xid) {
			t.Errorf("XID %d not critical", xid)
		}
	}
	for _, xid := range []uint64{13, 31, 43, 45, 68, 109} {
		if Critical(xid) {
			t.Errorf("application XID %d marks the GPU unhealthy", xid)
		}
	}
}

// An injected XID 79 marks that GPU unhealthy; an application XID (13) and
// a non-XID event leave theirs healthy.
func TestXIDMarksUnhealthy(t *testing.T) {
	s := machine(t)
	ev := newEvents(nil)
	s.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) { return ev, nvml.SUCCESS }
	var registered sync.Map
	for i := range s.Devices {
		device(s, i).RegisterEventsFunc = func(mask uint64, set nvml.EventSet) nvml.Return {
			if mask&nvml.EventTypeXidCriticalError != 0 && set == ev {
				registered.Store(i, true)
			}
			return nvml.SUCCESS
		}
	}
	inv := Open(Options{Library: s, Logger: quiet, WaitTimeout: 50 * time.Millisecond})
	defer inv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- inv.Watch(ctx) }()

	ev.ch <- nvml.EventData{Device: s.Devices[1], EventType: nvml.EventTypeXidCriticalError, EventData: 13}
	ev.ch <- nvml.EventData{Device: s.Devices[3], EventType: nvml.EventTypeSingleBitEccError, EventData: 79}
	ev.ch <- nvml.EventData{Device: s.Devices[5], EventType: nvml.EventTypeXidCriticalError, EventData: 79}
	var snap Snapshot
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if snap = inv.Snapshot(); snap.Devices[5].Health == Unhealthy {
			break
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Watch: %v", err)
	}
	for i, d := range snap.Devices {
		if _, ok := registered.Load(i); !ok {
			t.Errorf("GPU %d not registered for XID events", i)
		}
		if i == 5 {
			if d.Health != Unhealthy || !strings.HasPrefix(d.HealthReason, "XID 79 at ") {
				t.Errorf("GPU 5: %s %q", d.Health, d.HealthReason)
			}
			continue
		}
		if d.Health != Healthy || d.HealthReason != "" {
			t.Errorf("GPU %d: %s %q", i, d.Health, d.HealthReason)
		}
	}
}

// NVML losing a GPU while waiting marks every GPU unhealthy: it cannot say
// which one.
func TestGPULostMarksAll(t *testing.T) {
	s := machine(t)
	ev := newEvents(nil)
	lost := true
	ev.WaitFunc = func(uint32) (nvml.EventData, nvml.Return) {
		if lost {
			lost = false
			return nvml.EventData{}, nvml.ERROR_GPU_IS_LOST
		}
		time.Sleep(5 * time.Millisecond)
		return nvml.EventData{}, nvml.ERROR_TIMEOUT
	}
	s.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) { return ev, nvml.SUCCESS }
	inv := open(t, s, t.TempDir())
	inv.wait = 10 * time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	inv.Watch(ctx)
	for _, d := range inv.Snapshot().Devices {
		if d.Health != Unhealthy {
			t.Errorf("GPU %d: %s", d.Index, d.Health)
		}
	}
}

// The watcher waits in bounded steps: cancelling its context ends it within
// about one wait, and it frees its event set. Close ends a running watcher
// too, and shuts NVML down only after the event set is freed.
func TestWatchStopsOnCancel(t *testing.T) {
	var order []string
	s := machine(t)
	ev := newEvents(&order)
	s.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) { return ev, nvml.SUCCESS }
	shutdown := s.ShutdownFunc
	s.ShutdownFunc = func() nvml.Return {
		ev.mu.Lock()
		order = append(order, "shutdown")
		ev.mu.Unlock()
		return shutdown()
	}
	inv := Open(Options{Library: s, Logger: quiet, WaitTimeout: 20 * time.Millisecond})

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- inv.Watch(ctx) }()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Watch: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Watch did not stop after its context was cancelled")
	}
	ev.mu.Lock()
	waits, freed := ev.waits, ev.freed
	ev.mu.Unlock()
	if waits < 2 || freed != 1 {
		t.Errorf("waits %d, frees %d", waits, freed)
	}

	// A watcher still running when the inventory closes.
	go func() { done <- inv.Watch(t.Context()) }()
	time.Sleep(50 * time.Millisecond)
	closed := make(chan error, 1)
	go func() { closed <- inv.Close() }()
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not stop the watcher")
	}
	if err := <-done; err != nil {
		t.Errorf("Watch: %v", err)
	}
	if strings.Join(order, ",") != "free,free,shutdown" {
		t.Errorf("order %q, want the event sets freed before NVML shuts down", order)
	}
}
