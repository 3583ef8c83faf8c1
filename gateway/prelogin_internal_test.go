package gateway

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/config"
)

func lim(m config.Startups, queue, perSource int) startupLimits {
	return startupLimits{m: m, queue: queue, perSource: perSource}
}

// Slots go first to newcomers while free, then to waiters in order,
// skipping those whose source is at its share.
func TestStartupGateQueueAndShares(t *testing.T) {
	var g startupGate
	l := lim(config.Startups{Start: 3, Rate: 100, Full: 3}, 2, 2)
	for i, want := range []startupVerdict{startupAdmitted, startupAdmitted, startupQueued} {
		if _, v := g.admit("a", l); v != want {
			t.Fatalf("a#%d: verdict %d, want %d", i, v, want)
		}
	}
	// b is under its share and a slot is free: it gets it at once, ahead
	// of a's waiter.
	if _, v := g.admit("b", l); v != startupAdmitted {
		t.Fatalf("b: verdict %d, want admitted", v)
	}
	wb, v := g.admit("b", l)
	if v != startupQueued {
		t.Fatalf("b#2: verdict %d, want queued", v)
	}
	if _, v := g.admit("c", l); v != startupQueueFull {
		t.Fatalf("c: verdict %d, want queue full", v)
	}
	// One of a's slots frees: a's waiter, first in line, takes it.
	g.release("a", l)
	if a, w := g.counts(); a != 3 || w != 1 {
		t.Fatalf("after release: %d active, %d waiting; want 3, 1", a, w)
	}
	// b's slot frees: b's waiter gets it.
	g.release("b", l)
	select {
	case <-wb.granted:
	default:
		t.Fatal("b's waiter was not given the freed slot")
	}
	// A waiter that times out leaves the queue.
	w, _ := g.admit("d", l)
	if g.wait(w, 10*time.Millisecond) {
		t.Fatal("granted with no free slot")
	}
	if _, n := g.counts(); n != 0 {
		t.Fatalf("%d still waiting after the timeout", n)
	}
	g.close()
	if _, v := g.admit("e", l); v != startupClosed {
		t.Fatalf("after close: verdict %d", v)
	}
}

// sshd's drop_connection: from start on, refuse with rate%, rising
// linearly to 100% at full; the count includes waiting connections.
func TestStartupGateRandomEarlyDrop(t *testing.T) {
	m := config.Startups{Start: 10, Rate: 30, Full: 100, Early: true}
	l := lim(m, 512, 1000)
	var g startupGate
	draw := 0
	g.dropRand = func() int { return draw }
	for range 10 {
		if _, v := g.admit("a", l); v != startupAdmitted {
			t.Fatalf("below start: verdict %d", v)
		}
	}
	// n = 10 = start: p = 30%.
	draw = 29
	if _, v := g.admit("a", l); v != startupDropped {
		t.Fatalf("n=start, draw 29 < 30: verdict %d, want dropped", v)
	}
	draw = 30
	if _, v := g.admit("a", l); v != startupAdmitted {
		t.Fatalf("n=start, draw 30: verdict %d, want admitted", v)
	}
	// n = 55: p = 30 + 70*45/90 = 65.
	for g.active < 55 {
		g.take("a")
	}
	draw = 64
	if _, v := g.admit("a", l); v != startupDropped {
		t.Fatalf("n=55, draw 64: verdict %d, want dropped", v)
	}
	draw = 65
	if _, v := g.admit("a", l); v != startupAdmitted {
		t.Fatalf("n=55, draw 65: verdict %d, want admitted", v)
	}
	for g.active < 100 {
		g.take("a")
	}
	draw = 99
	if _, v := g.admit("a", l); v != startupDropped {
		t.Fatalf("n=full: verdict %d, want dropped", v)
	}
	// The integer form never drops at random: it queues.
	var h startupGate
	h.dropRand = func() int { return 0 }
	li := lim(config.Startups{Start: 2, Rate: 100, Full: 2}, 5, 10)
	h.admit("a", li)
	h.admit("a", li)
	if _, v := h.admit("a", li); v != startupQueued {
		t.Fatalf("integer form at full: verdict %d, want queued", v)
	}
}

// The pre-login log passes a burst, then a rate; what it dropped is
// counted in the next line that passes.
func TestPreLogRateLimit(t *testing.T) {
	var buf bytes.Buffer
	h := newPreLogHandler(slog.NewTextHandler(&buf, nil), 10, 5, time.Hour)
	now := time.Unix(1000, 0)
	h.bucket.now = func() time.Time { return now }
	log := slog.New(h).With("remote", "127.0.0.1:1")
	for range 20 {
		log.Info("refused")
	}
	if n := strings.Count(buf.String(), "msg=refused"); n != 5 {
		t.Fatalf("%d lines passed at once, want the burst of 5:\n%s", n, buf.String())
	}
	now = now.Add(time.Second) // 10 tokens, capped at the burst of 5
	log.Info("refused")
	out := buf.String()
	if !strings.Contains(out, "suppressed=15") {
		t.Fatalf("no count of the 15 suppressed lines:\n%s", out)
	}
	if strings.Index(out, "suppressed=15") > strings.LastIndex(out, "msg=refused") {
		t.Error("the count came after the line that let it out")
	}
	// A flood that stops is reported by the timer.
	var lb lockedBuf
	l2 := slog.New(newPreLogHandler(slog.NewTextHandler(&lb, nil), 1, 1, 50*time.Millisecond))
	l2.Info("x")
	l2.Info("x")
	l2.Info("x")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(lb.String(), "suppressed=2") {
		if time.Now().After(deadline) {
			t.Fatalf("the quiet timer did not report the count:\n%s", lb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Names a client chose are escaped and cut before they reach the log.
func TestPreLogCleansValues(t *testing.T) {
	var buf bytes.Buffer
	h := newPreLogHandler(slog.NewTextHandler(&buf, nil), 100, 100, time.Hour)
	login := "evil\x1b[31m\nuser=root " + strings.Repeat("é", 400)
	slog.New(h).Info("key refused", "login", login, "err", context.DeadlineExceeded)
	out := buf.String()
	if strings.Contains(out, "\x1b") || strings.Count(out, "\n") != 1 {
		t.Fatalf("control characters reached the log: %q", out)
	}
	if strings.Contains(out, strings.Repeat("é", 40)) {
		t.Fatalf("login not cut: %q", out)
	}
	if !strings.Contains(out, "…(") {
		t.Errorf("no cut marker: %q", out)
	}
	for _, c := range []struct {
		in    string
		limit int
		want  string
	}{
		{"alice", 64, "alice"},
		{"a\x00b", 64, `a\x00b`},
		{`a\b`, 64, `a\\b`},
		{strings.Repeat("x", 70), 64, strings.Repeat("x", 64) + "…(70 bytes)"},
		// Never half an escape: "\x01" is 4 bytes, 3 are left.
		{strings.Repeat("x", 62) + "\x01", 64, strings.Repeat("x", 62) + "…(63 bytes)"},
		{strings.Repeat("x", 63) + "é", 64, strings.Repeat("x", 63) + "…(65 bytes)"},
	} {
		if got := logSafe(c.in, c.limit); got != c.want {
			t.Errorf("logSafe(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
