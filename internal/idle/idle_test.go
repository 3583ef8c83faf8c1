package idle

import (
	"testing"
	"time"
)

func TestUses(t *testing.T) {
	var s Uses
	s.Acquire("c")
	s.Acquire("c")
	if ok, idle := s.Release("c"); !ok || idle {
		t.Fatalf("first of two releases: ok %v idle %v", ok, idle)
	}
	if !s.Since("c").IsZero() {
		t.Error("held, yet idle since")
	}
	if ok, idle := s.Release("c"); !ok || !idle || s.Since("c").IsZero() {
		t.Fatalf("last release: ok %v idle %v since %v", ok, idle, s.Since("c"))
	}
	if ok, _ := s.Release("c"); ok {
		t.Error("a release of nothing held was taken")
	}

	fired := make(chan uint64, 2)
	s.Arm("c", time.Hour, func(gen uint64) { fired <- gen })
	if !s.Armed("c") {
		t.Error("not armed")
	}
	s.Arm("c", -time.Minute, func(gen uint64) { fired <- gen }) // overdue: at once
	select {
	case gen := <-fired:
		if !s.Current("c", gen) {
			t.Error("the newest timer is not current")
		}
		if s.Current("c", gen-1) {
			t.Error("an older generation is current")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an overdue timer did not fire")
	}
	s.Acquire("c")
	if s.Current("c", 0) || s.Armed("c") || !s.Since("c").IsZero() {
		t.Error("an acquire left the idle state behind")
	}
	s.Release("c")
	if got := s.Idle(); len(got) != 1 || got[0] != "c" {
		t.Errorf("Idle() = %v", got)
	}
	s.Forget("c")
	if s.Tracked("c") || s.Since("c").IsZero() {
		t.Error("Forget drops the record and keeps the idle time")
	}
	s.ForgetSince("c")
	if !s.Since("c").IsZero() {
		t.Error("ForgetSince kept it")
	}
	s.MarkIdle("d")
	first := s.Since("d")
	s.MarkIdle("d")
	if s.Since("d") != first {
		t.Error("MarkIdle moved an idle time already known")
	}
}
