//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/internal/testenv"
)

func TestMain(m *testing.M) {
	// Roles for TestInitAsPID1: this binary is PID 1 of a new pid namespace
	// (RunInit), then its re-executed child.
	switch {
	case os.Getenv("SA_TEST_ROLE") == "init" && os.Getpid() == 1 && os.Getenv(InitChildEnv) == "":
		os.Exit(RunInit(os.Args, slog.New(slog.NewTextHandler(os.Stderr, nil))))
	case os.Getenv("SA_TEST_ROLE") == "init":
		os.Exit(initChildRole())
	}
	testenv.MainNoEngine(m) // fails the run when a test left goroutines behind
}

// initChildRole is the "agent" under the test init: it orphans two
// short-lived processes (they are re-parented to PID 1 and must be reaped
// there), waits for the SIGTERM that init forwards, reports the zombies
// left in the namespace and exits 42.
func initChildRole() int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	if err := exec.Command("/bin/sh", "-c", "sleep 0.1 & sleep 0.1 & exit 0").Run(); err != nil {
		fmt.Println("error", err)
		return 1
	}
	time.Sleep(500 * time.Millisecond) // the orphans have exited by now
	fmt.Printf("ready pid=%d\n", os.Getpid())
	// Ask PID 1 to stop, as docker stop does; it must forward to us.
	syscall.Kill(1, syscall.SIGTERM)
	select {
	case <-term:
	case <-time.After(5 * time.Second):
		fmt.Println("no SIGTERM forwarded")
		return 1
	}
	fmt.Printf("zombies=%d\n", countZombies())
	return 42
}

func countZombies() int {
	n := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) && b[i+2] == 'Z' {
			n++
		}
	}
	return n
}

func TestInitAsPID1(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root for a pid namespace")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare not installed")
	}
	if err := exec.Command(unshare, "--pid", "--fork", "--mount-proc", "true").Run(); err != nil {
		t.Skipf("cannot create a pid namespace here: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, unshare, "--pid", "--fork", "--mount-proc", os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SA_TEST_ROLE=init")
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 42 {
		t.Fatalf("init exit: %v, want the child's status 42; output %q", err, out)
	}
	got := string(out)
	if !strings.Contains(got, "ready pid=") || strings.Contains(got, "ready pid=1\n") || !strings.Contains(got, "zombies=0\n") {
		t.Fatalf("output %q: want the agent as a child of init and no zombies", got)
	}
}

func TestListenUnix(t *testing.T) {
	dir, err := os.MkdirTemp("", "sa")
	must(t, err, "tempdir")
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "agent.sock")

	// A stale socket from a previous run is replaced.
	old, err := net.Listen("unix", path)
	must(t, err, "stale listener")
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close()
	ln, err := ListenUnix(path)
	must(t, err, "listen over stale socket")
	fi, err := os.Stat(path)
	must(t, err, "stat")
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	ln.Close()

	// Any other file is not ours to delete.
	regular := filepath.Join(dir, "file")
	must(t, os.WriteFile(regular, nil, 0o644), "write")
	if _, err := ListenUnix(regular); err == nil {
		t.Fatal("ListenUnix replaced a regular file")
	}
}

func TestShutdownWaitsForSessionsThenKills(t *testing.T) {
	e := startAgent(t, func(s *Server) { s.HangupGrace = 200 * time.Millisecond })
	e.dial(t) // an idle link is closed right away
	busy := e.dial(t)
	s := newSession(t, busy)
	pids := startAndReadPIDs(t, s, "echo $$; exec sleep 1000", 1)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := e.srv.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want deadline exceeded", err)
	}
	if time.Since(start) < 250*time.Millisecond {
		t.Fatal("Shutdown did not wait for the running session")
	}
	if alive(pids[0]) {
		t.Fatal("session process survived Shutdown's deadline")
	}
	// New links are refused.
	if c, err := net.Dial("unix", e.sock); err == nil {
		c.Close()
		t.Fatal("listener still accepting after Shutdown")
	}
}

func TestShutdownClosesIdleLinksAndReturns(t *testing.T) {
	e := startAgent(t)
	c := e.dial(t)
	if r := run(t, c, "true"); r.err != nil {
		t.Fatal(r.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with only idle links: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("idle link not closed by Shutdown")
	}
}

// TestNoGoroutineLeak exercises every kind of channel, closes the server and
// checks that the goroutine count returns to where it started.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		e := startAgent(t)
		defer e.srv.Close()
		c := e.dial(t)
		run(t, c, "echo hi; echo err >&2")
		s := newSession(t, c)
		must(t, s.RequestPty("xterm", 24, 80, nil), "pty")
		must(t, s.Run("true"), "pty run")
		ln := countServer(t, "tcp", "127.0.0.1:0")
		conn, err := c.Dial("tcp", ln.Addr().String())
		must(t, err, "direct-tcpip")
		halfCloseRoundTrip(t, conn, 10)
		conn.Close()
		_, err = c.Listen("tcp", "127.0.0.1:0") // left open: the link's end closes it
		must(t, err, "tcpip-forward")
		// A session still running when the server closes.
		s2 := newSession(t, c)
		startAndReadPIDs(t, s2, "echo $$; exec sleep 100", 1)
		ln.Close()
		c.Close()
	}()
	if !waitFor(5*time.Second, func() bool { return runtime.NumGoroutine() <= before }) {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Fatalf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:n])
	}
}
