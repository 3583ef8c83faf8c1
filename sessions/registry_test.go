package sessions

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRegistryAddListOrder(t *testing.T) {
	r := NewRegistry(nil)
	base := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	r.Add(Info{User: "bob", Started: base.Add(time.Minute)}, func(error) {})
	r.Add(Info{User: "alice", Started: base}, func(error) {})
	r.Add(Info{User: "carol", Started: base.Add(time.Minute)}, func(error) {})
	got := r.List()
	if len(got) != 3 {
		t.Fatalf("List: %d sessions, want 3", len(got))
	}
	// Oldest first; equal start times in ID order.
	for i, want := range []struct{ id, user string }{{"2", "alice"}, {"1", "bob"}, {"3", "carol"}} {
		if got[i].ID != want.id || got[i].User != want.user {
			t.Errorf("List[%d] = %s/%s, want %s/%s", i, got[i].ID, got[i].User, want.id, want.user)
		}
	}
}

func TestRegistryIDsOrderNumerically(t *testing.T) {
	r := NewRegistry(nil)
	r.SetIDBase(8)
	at := time.Now()
	for range 3 {
		r.Add(Info{Started: at}, func(error) {})
	}
	got := r.List()
	if got[0].ID != "9" || got[1].ID != "10" || got[2].ID != "11" {
		t.Fatalf("IDs %s %s %s, want 9 10 11", got[0].ID, got[1].ID, got[2].ID)
	}
	r.SetIDBase(2) // never goes back
	if s := r.Add(Info{}, func(error) {}); s.ID() != "12" {
		t.Fatalf("after a lower base: ID %s, want 12", s.ID())
	}
}

func TestRegistryKillCancelsWithCause(t *testing.T) {
	r := NewRegistry(nil)
	ctx, cancel := context.WithCancelCause(context.Background())
	s := r.Add(Info{User: "alice"}, cancel)
	if err := r.Kill(s.ID(), "maintenance at 18:00"); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	<-ctx.Done()
	var ke *KilledError
	if !errors.As(context.Cause(ctx), &ke) || ke.Reason != "maintenance at 18:00" {
		t.Fatalf("cause = %v, want a KilledError with the reason", context.Cause(ctx))
	}
	if got := ke.Error(); got != "session killed by an administrator: maintenance at 18:00" {
		t.Errorf("message %q", got)
	}
	if got := (&KilledError{}).Error(); got != "session killed by an administrator" {
		t.Errorf("message without reason %q", got)
	}
	// Killing does not remove the entry: End does, once the proxy has torn
	// the channel down.
	if len(r.List()) != 1 {
		t.Fatalf("killed session left the list before End")
	}
	r.End(s, "killed")
	if len(r.List()) != 0 {
		t.Fatalf("session still listed after End")
	}
	if err := r.Kill(s.ID(), ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Kill after End: %v, want ErrNotFound", err)
	}
}

func TestRegistryKillUnknown(t *testing.T) {
	r := NewRegistry(nil)
	if err := r.Kill("42", "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Kill unknown: %v, want ErrNotFound", err)
	}
}

func TestSessionInfoSnapshot(t *testing.T) {
	r := NewRegistry(nil)
	s := r.Add(Info{User: "alice", Project: "zephyr"}, func(error) {})
	var in, out atomic.Int64
	s.CountBytes(&in, &out)
	s.SetKind("exec", "make test")
	s.SetPTY()
	s.SetContainer("sygaldry-zephyr-alice")
	in.Add(10)
	out.Add(2000)
	code := 3
	s.SetExit(&code, "")
	s.SetExit(nil, "TERM")
	got := s.Info()
	if got.Kind != "exec" || got.Command != "make test" || !got.PTY || got.Container != "sygaldry-zephyr-alice" ||
		got.BytesIn != 10 || got.BytesOut != 2000 || got.ExitStatus == nil || *got.ExitStatus != 3 || got.ExitSignal != "TERM" {
		t.Fatalf("Info = %+v", got)
	}
	if got.Started.IsZero() || got.LastActive.IsZero() {
		t.Fatalf("Started/LastActive not set: %+v", got)
	}
}

func TestRegistryEndWritesHistory(t *testing.T) {
	h, err := OpenHistory(filepath.Join(t.TempDir(), "history.jsonl"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	r := NewRegistry(h)
	s := r.Add(Info{User: "alice", Project: "zephyr", RemoteAddr: "192.0.2.1:5555"}, func(error) {})
	s.SetKind("shell", "")
	r.End(s, "client closed")
	r.End(s, "twice") // a second End is a no-op
	got, err := h.Read(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != s.ID() || got[0].EndReason != "client closed" || got[0].Ended.IsZero() || got[0].Kind != "shell" {
		t.Fatalf("history = %+v", got)
	}
	if h.MaxID() != 1 {
		t.Fatalf("MaxID = %d", h.MaxID())
	}
}

func TestRegistryConcurrent(t *testing.T) {
	h, err := OpenHistory(filepath.Join(t.TempDir(), "history.jsonl"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	r := NewRegistry(h)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 50 {
				s := r.Add(Info{}, func(error) {})
				s.Touch()
				s.SetKind("exec", "true")
				_ = r.List()
				_ = r.Kill(s.ID(), "x")
				r.End(s, "done")
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			if _, err := h.Read(10); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	all, err := h.Read(0)
	if err != nil || len(all) != 800 {
		t.Fatalf("history: %d records, err %v; want 800", len(all), err)
	}
	if len(r.List()) != 0 {
		t.Fatal("sessions left live")
	}
}
