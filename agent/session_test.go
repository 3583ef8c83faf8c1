package agent

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestExecStdoutStderrSeparated(t *testing.T) {
	t.Parallel()
	c := startAgent(t).dial(t)
	r := run(t, c, "echo out; echo err >&2")
	if r.err != nil || r.stdout != "out\n" || r.stderr != "err\n" {
		t.Fatalf("got stdout %q stderr %q err %v", r.stdout, r.stderr, r.err)
	}
}

func TestExecExitCodes(t *testing.T) {
	t.Parallel()
	c := startAgent(t).dial(t)
	for _, tc := range []struct {
		cmd  string
		want int
	}{
		{"true", 0},
		{"exit 7", 7},
		{"no-such-command-sygaldry", 127}, // proves $SHELL -c
	} {
		if got := exitCode(run(t, c, tc.cmd).err); got != tc.want {
			t.Errorf("%q: exit %d, want %d", tc.cmd, got, tc.want)
		}
	}
}

func TestExecRawCommandVerbatim(t *testing.T) {
	t.Parallel()
	c := startAgent(t).dial(t)
	r := run(t, c, `printf "%s|" "a b" c`)
	if r.stdout != "a b|c|" {
		t.Fatalf("got %q (the command must reach the shell unsplit)", r.stdout)
	}
}

func TestExecKilledBySignal(t *testing.T) {
	t.Parallel()
	c := startAgent(t).dial(t)
	r := run(t, c, "kill -TERM $$")
	var ee *ssh.ExitError
	if !errors.As(r.err, &ee) {
		t.Fatalf("err = %v, want *ssh.ExitError", r.err)
	}
	if ee.Signal() != "TERM" || ee.ExitStatus() != 128+15 {
		t.Fatalf("signal %q status %d, want TERM and 143", ee.Signal(), ee.ExitStatus())
	}
}

func TestSignalRequestReachesProcessGroup(t *testing.T) {
	t.Parallel()
	c := startAgent(t).dial(t)
	s := newSession(t, c)
	out, err := s.StdoutPipe()
	must(t, err, "stdout")
	// A child in the same group must see the signal too: the shell waits in
	// `wait`, the sleep child is what dies.
	must(t, s.Start("sleep 100 & echo $!; wait; echo waited"), "start")
	pid := atoi(t, readLines(t, out, 1)[0])
	killLater(t, pid)
	must(t, s.Signal(ssh.SIGUSR1), "signal")
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err := <-done:
		var ee *ssh.ExitError
		if !errors.As(err, &ee) || ee.Signal() != "USR1" {
			t.Fatalf("wait: %v, want exit-signal USR1", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("signal did not end the session")
	}
	if !waitFor(2*time.Second, func() bool { return !alive(pid) }) {
		t.Fatal("background child did not get the signal")
	}
}

func TestExecStdinRoundTrip20MB(t *testing.T) {
	t.Parallel()
	c := startAgent(t).dial(t)
	data := make([]byte, 20<<20)
	rand.Read(data)
	sum := sha256.Sum256(data)
	r := run(t, c, "sha256sum", func(s *ssh.Session) { s.Stdin = bytes.NewReader(data) })
	if r.err != nil {
		t.Fatalf("sha256sum: %v (stderr %q)", r.err, r.stderr)
	}
	if got := strings.Fields(r.stdout); len(got) == 0 || got[0] != hex.EncodeToString(sum[:]) {
		t.Fatalf("remote hash %q, want %x", r.stdout, sum)
	}
}

func TestStdinEOFFinishesCatAndOutputContinues(t *testing.T) {
	t.Parallel()
	c := startAgent(t).dial(t)
	r := run(t, c, "cat; echo after-eof", func(s *ssh.Session) { s.Stdin = strings.NewReader("hi\n") })
	if r.err != nil || r.stdout != "hi\nafter-eof\n" {
		t.Fatalf("got %q, %v", r.stdout, r.err)
	}
	// Explicit EOF on a session whose stdin stays open otherwise.
	s := newSession(t, c)
	in, err := s.StdinPipe()
	must(t, err, "stdin")
	var out bytes.Buffer
	s.Stdout = &out
	must(t, s.Start("sort"), "start")
	io.WriteString(in, "3\n1\n2\n")
	in.Close()
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err := <-done:
		if err != nil || out.String() != "1\n2\n3\n" {
			t.Fatalf("sort: %q, %v", out.String(), err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sort did not see EOF")
	}
}

// TestOutputBeforeExitOrdering is the classic race: exit-status or close
// overtaking the last output. Every run must deliver all bytes and the code.
func TestOutputBeforeExitOrdering(t *testing.T) {
	t.Parallel()
	c := startAgent(t).dial(t)
	const runs, workers = 200, 4
	var wg sync.WaitGroup
	errs := make(chan string, runs)
	next := make(chan int, runs)
	for i := range runs {
		next <- i
	}
	close(next)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				s, err := c.NewSession()
				if err != nil {
					errs <- err.Error()
					return
				}
				var out, serr bytes.Buffer
				s.Stdout, s.Stderr = &out, &serr
				err = s.Run("head -c 65536 /dev/zero; head -c 3000 /dev/zero >&2; exit 3")
				s.Close()
				if exitCode(err) != 3 || out.Len() != 65536 || serr.Len() != 3000 {
					errs <- fmt.Sprintf("run %d: stdout %d stderr %d bytes, err %v", i, out.Len(), serr.Len(), err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestEnvRequestAndAccountVariables(t *testing.T) {
	t.Parallel()
	e := startAgent(t, func(s *Server) {
		s.Env = []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "SYGALDRY_AGENT_INIT_CHILD=1", "HOME=/wrong"}
	})
	c := e.dial(t)
	r := run(t, c, `echo "$FOO|$USER|$LOGNAME|$HOME|$SHELL|$LANG|${SYGALDRY_AGENT_INIT_CHILD:-unset}|$(printenv TERM || echo noterm)|${SSH_TTY:-notty}|$(pwd)"`,
		func(s *ssh.Session) { must(t, s.Setenv("FOO", "bar baz"), "setenv") })
	want := fmt.Sprintf("bar baz|kvothe|kvothe|%s|/bin/bash|C.UTF-8|unset|noterm|notty|%s\n", e.home, e.home)
	if r.stdout != want {
		t.Fatalf("got  %q\nwant %q (stderr %q)", r.stdout, want, r.stderr)
	}
}

func TestSessionsStartInWorkspace(t *testing.T) {
	t.Parallel()
	ws := t.TempDir()
	e := startAgent(t, func(s *Server) {
		s.Env = []string{"PATH=/usr/bin:/bin", "SYGALDRY_WORKSPACE=" + ws}
	})
	c := e.dial(t)
	if r := run(t, c, "pwd"); r.stdout != ws+"\n" {
		t.Errorf("exec started in %q, want %s", r.stdout, ws)
	}
	s := newSession(t, c)
	var out bytes.Buffer
	s.Stdout = &out
	s.Stdin = strings.NewReader("pwd\n")
	must(t, s.Shell(), "shell")
	must(t, s.Wait(), "wait")
	if out.String() != ws+"\n" {
		t.Errorf("shell started in %q, want %s", out.String(), ws)
	}

	// A workspace that is not a directory: $HOME, as without one.
	missing := startAgent(t, func(s *Server) {
		s.Env = []string{"PATH=/usr/bin:/bin", "SYGALDRY_WORKSPACE=" + filepath.Join(ws, "gone")}
	})
	if r := run(t, missing.dial(t), "pwd"); r.stdout != missing.home+"\n" {
		t.Errorf("with a missing workspace exec started in %q, want %s", r.stdout, missing.home)
	}
}

func TestEnvAfterExecRefused(t *testing.T) {
	t.Parallel()
	c := startAgent(t).dial(t)
	s := newSession(t, c)
	in, _ := s.StdinPipe()
	must(t, s.Start("cat >/dev/null"), "start")
	if err := s.Setenv("LATE", "1"); err == nil {
		t.Error("env after exec was accepted")
	}
	in.Close()
	must(t, s.Wait(), "wait")
}

func TestShellIsLoginShellInHome(t *testing.T) {
	t.Parallel()
	e := startAgent(t)
	s := newSession(t, e.dial(t))
	var out bytes.Buffer
	s.Stdout = &out
	s.Stdin = strings.NewReader("echo \"$0|$(pwd)\"; shopt -q login_shell && echo login\n")
	must(t, s.Shell(), "shell")
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err := <-done:
		must(t, err, "wait")
	case <-time.After(10 * time.Second):
		t.Fatal("shell did not exit at stdin EOF")
	}
	if want := "-bash|" + e.home + "\nlogin\n"; out.String() != want {
		t.Fatalf("got %q, want %q", out.String(), want)
	}
}

func TestUnknownSubsystemAndRequestsRefused(t *testing.T) {
	t.Parallel()
	c := startAgent(t).dial(t)
	s := newSession(t, c)
	if err := s.RequestSubsystem("nope"); err == nil {
		t.Error("unknown subsystem accepted")
	}
	s2 := newSession(t, c)
	for _, req := range []string{"break", "x11-req"} {
		ok, err := s2.SendRequest(req, true, nil)
		if err != nil || ok {
			t.Errorf("%s: ok=%v err=%v, want refused", req, ok, err)
		}
	}
	// Global keepalive gets a (negative) reply, promptly.
	ok, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
	if err != nil || ok {
		t.Errorf("keepalive: ok=%v err=%v", ok, err)
	}
	// Unknown channel types are rejected.
	if _, _, err := c.OpenChannel("tun@openssh.com", nil); err == nil {
		t.Error("tun channel accepted")
	}
}

// TestBackgroundJobHoldsPipes matches sshd: without a pty, the session ends
// when the pipes close, not when the shell exits.
func TestBackgroundJobHoldsPipes(t *testing.T) {
	t.Parallel()
	c := startAgent(t).dial(t)
	start := time.Now()
	r := run(t, c, "(sleep 1; echo late) & echo early")
	if r.stdout != "early\nlate\n" || r.err != nil {
		t.Fatalf("got %q, %v", r.stdout, r.err)
	}
	if time.Since(start) < 900*time.Millisecond {
		t.Fatal("session ended before the background job closed stdout")
	}
}

// BenchmarkExecDownload measures bulk stdout over one link (the agent side
// of `ssh host cat big.bin`).
func BenchmarkExecDownload(b *testing.B) {
	e := startAgent(b)
	c := e.dial(b)
	const size = 64 << 20
	b.SetBytes(size)
	for b.Loop() {
		s, err := c.NewSession()
		if err != nil {
			b.Fatal(err)
		}
		out, _ := s.StdoutPipe()
		if err := s.Start(fmt.Sprintf("head -c %d /dev/zero", size)); err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, out)
		if err := s.Wait(); err != nil || n != size {
			b.Fatalf("got %d bytes, %v", n, err)
		}
		s.Close()
	}
}
