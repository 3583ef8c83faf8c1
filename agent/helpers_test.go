package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// testEnv is an agent serving on a real unix socket in a short temp dir
// (sun_path is limited to 108 bytes), with its own home directory: tests run
// as root, whose real home must not be touched.
type testEnv struct {
	srv  *Server
	sock string
	home string
	logs *syncBuffer
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startAgent(t testing.TB, configure ...func(*Server)) *testEnv {
	t.Helper()
	dir, err := os.MkdirTemp("", "sa")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	logs := newSyncBuffer()
	srv := &Server{
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Home:        home,
		Shell:       "/bin/bash",
		User:        "kvothe",
		HangupGrace: 500 * time.Millisecond,
	}
	for _, f := range configure {
		f(srv)
	}
	sock := filepath.Join(dir, "agent.sock")
	ln, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		select {
		case err := <-serveErr:
			if !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Close")
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})
	return &testEnv{srv: srv, sock: sock, home: home, logs: logs}
}

// dial opens a link the way the gateway does: an x/crypto SSH client over
// the unix socket, no authentication.
func (e *testEnv) dial(t testing.TB) *ssh.Client {
	t.Helper()
	conn, err := net.DialTimeout("unix", e.sock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, "unix", &ssh.ClientConfig{
		User:            "zephyr",
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	client := ssh.NewClient(c, chans, reqs)
	t.Cleanup(func() { client.Close() })
	return client
}

func newSession(t *testing.T, c *ssh.Client) *ssh.Session {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// result of one exec.
type result struct {
	stdout, stderr string
	err            error
}

// run execs cmd without a pty and bounds the wait.
func run(t *testing.T, c *ssh.Client, cmd string, setup ...func(*ssh.Session)) result {
	t.Helper()
	s := newSession(t, c)
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	for _, f := range setup {
		f(s)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(cmd) }()
	select {
	case err := <-done:
		return result{out.String(), errb.String(), err}
	case <-time.After(30 * time.Second):
		s.Close()
		t.Fatalf("exec %q did not finish", cmd)
		return result{}
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return ee.ExitStatus()
	}
	return -1
}

// alive reports whether pid exists and is not a zombie (an orphan's zombie
// lingers until the machine's init reaps it, and kill(pid, 0) succeeds on it).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	st := b[i+2]
	return st != 'Z' && st != 'X'
}

// waitFor polls cond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

// killLater makes sure a process the test deliberately left running dies.
func killLater(t *testing.T, pid int) {
	t.Cleanup(func() {
		if pid > 1 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

// readLines reads n lines from r with a deadline.
func readLines(t *testing.T, r io.Reader, n int) []string {
	t.Helper()
	type res struct {
		lines []string
		err   error
	}
	ch := make(chan res, 1)
	go func() {
		var lines []string
		var cur []byte
		b := make([]byte, 1)
		for len(lines) < n {
			if _, err := r.Read(b); err != nil {
				ch <- res{lines, err}
				return
			}
			if b[0] == '\n' {
				lines = append(lines, strings.TrimRight(string(cur), "\r"))
				cur = cur[:0]
				continue
			}
			cur = append(cur, b[0])
		}
		ch <- res{lines, nil}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("read %d lines: got %q, then %v", n, r.lines, r.err)
		}
		return r.lines
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out reading %d lines", n)
		return nil
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}

func must(t testing.TB, err error, what string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}

func waitSession(t *testing.T, s *ssh.Session, d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("session did not end within %v", d)
		return nil
	}
}
