//go:build linux

package agent

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// startAndReadPIDs starts cmd, which must print n pids (one per line) first.
func startAndReadPIDs(t *testing.T, s *ssh.Session, cmd string, n int) []int {
	t.Helper()
	out, err := s.StdoutPipe()
	must(t, err, "stdout")
	must(t, s.Start(cmd), "start")
	var pids []int
	for _, l := range readLines(t, out, n) {
		f := strings.Fields(l)
		pid := atoi(t, f[len(f)-1])
		killLater(t, pid)
		pids = append(pids, pid)
	}
	return pids
}

// TestHangupOnChannelClose: the client goes away while the command runs.
// Ordinary children die; nohup'd and setsid'd jobs survive.
func TestHangupOnChannelClose(t *testing.T) {
	t.Parallel()
	for _, withPTY := range []bool{false, true} {
		name := "pipes"
		if withPTY {
			name = "pty"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := startAgent(t).dial(t)
			s := newSession(t, c)
			if withPTY {
				must(t, s.RequestPty("xterm", 24, 80, nil), "pty-req")
			}
			// The final sleep keeps the shell (or what it execs) as leader.
			pids := startAndReadPIDs(t, s, `sleep 1000 & echo bg $!
nohup sleep 1002 >/dev/null 2>&1 & echo nohup $!
setsid sleep 1003 >/dev/null 2>&1 </dev/null & echo setsid $!
echo leader $$
sleep 0.3
exec sleep 1001`, 4)
			bg, nohup, setsid, leader := pids[0], pids[1], pids[2], pids[3]
			// Wait until nohup has set SIGHUP to ignored and exec'd sleep,
			// and the shell has exec'd its last sleep: the states under test.
			if !waitFor(10*time.Second, func() bool {
				return procName(nohup) == "sleep" && ignoresHUP(nohup) && procName(leader) == "sleep"
			}) {
				t.Fatalf("jobs never reached their state: nohup %q (HUP ignored %v), leader %q", procName(nohup), ignoresHUP(nohup), procName(leader))
			}
			for _, p := range pids {
				if !alive(p) {
					t.Fatalf("pid %d not running before the hangup", p)
				}
			}
			must(t, s.Close(), "close channel")
			if !waitFor(3*time.Second, func() bool { return !alive(bg) && !alive(leader) }) {
				t.Fatalf("after hangup: background sleep alive=%v, leader alive=%v", alive(bg), alive(leader))
			}
			// Well past the hangup grace: the detached jobs are still there.
			time.Sleep(800 * time.Millisecond)
			if !alive(nohup) || !alive(setsid) {
				t.Fatalf("detached jobs killed: nohup alive=%v, setsid alive=%v", alive(nohup), alive(setsid))
			}
		})
	}
}

// TestHangupKillsLeaderIgnoringHUP: a leader that ignores SIGHUP is killed
// after the grace period.
func TestHangupKillsLeaderIgnoringHUP(t *testing.T) {
	t.Parallel()
	e := startAgent(t, func(s *Server) { s.HangupGrace = 300 * time.Millisecond })
	c := e.dial(t)
	s := newSession(t, c)
	pids := startAndReadPIDs(t, s, `trap "" HUP; echo $$; while :; do sleep 0.05; done`, 1)
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	must(t, s.Close(), "close")
	if !waitFor(3*time.Second, func() bool { return !alive(pids[0]) }) {
		t.Fatal("leader ignoring SIGHUP survived")
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("leader died after %v, before the grace period: SIGKILL came too early", d)
	}
}

// TestLinkLossHangsUp: the gateway's link dying is the same as the client
// closing every channel.
func TestLinkLossHangsUp(t *testing.T) {
	t.Parallel()
	c := startAgent(t).dial(t)
	s := newSession(t, c)
	pids := startAndReadPIDs(t, s, `sleep 1000 & echo $!; exec sleep 1001`, 1)
	time.Sleep(100 * time.Millisecond)
	c.Close()
	if !waitFor(3*time.Second, func() bool { return !alive(pids[0]) }) {
		t.Fatal("child survived the link loss")
	}
}

// procName is the command name of pid ("" when gone).
func procName(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// ignoresHUP reports whether pid has SIGHUP set to ignored.
func ignoresHUP(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "SigIgn:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&1 != 0 // bit 0 is signal 1, SIGHUP
		}
	}
	return false
}
