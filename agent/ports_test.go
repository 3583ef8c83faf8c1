//go:build linux

package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/internal/ports"
)

// fakeProc is a /proc where python3 (pid 77) listens on 0.0.0.0:8777 and
// on 127.0.0.1:6006, or where nothing listens.
func fakeProc(t *testing.T, listening bool) string {
	t.Helper()
	dir := t.TempDir()
	tcp := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	if listening {
		tcp += "   0: 00000000:2249 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0 100 0 0 10 0\n" +
			"   1: 0100007F:1776 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4243 1 0 100 0 0 10 0\n"
	}
	tcp += "   2: 0100007F:A000 0100007F:2249 01 00000000:00000000 00:00000000 00000000  1000        0 4244 1 0 100 0 0 10 0\n"
	for _, d := range []string{"net", "77/fd"} {
		must(t, os.MkdirAll(filepath.Join(dir, d), 0o755), "mkdir")
	}
	must(t, os.WriteFile(filepath.Join(dir, "net", "tcp"), []byte(tcp), 0o644), "tcp")
	must(t, os.WriteFile(filepath.Join(dir, "77", "comm"), []byte("python3\n"), 0o644), "comm")
	must(t, os.Symlink("socket:[4242]", filepath.Join(dir, "77", "fd", "3")), "fd")
	must(t, os.Symlink("socket:[4243]", filepath.Join(dir, "77", "fd", "4")), "fd")
	return dir
}

// loginOutput runs an interactive login (pty-req + shell) that prints a
// marker and exits, and returns everything the client got.
func loginOutput(t *testing.T, c *ssh.Client, env map[string]string) string {
	t.Helper()
	s := newSession(t, c)
	for k, v := range env {
		must(t, s.Setenv(k, v), "env %s", k)
	}
	must(t, s.RequestPty("xterm", 24, 120, nil), "pty-req")
	var out bytes.Buffer
	s.Stdout = &out
	s.Stdin = strings.NewReader("echo marker-$((6*7)); exit\n")
	must(t, s.Shell(), "shell")
	must(t, waitSession(t, s, 20*time.Second), "wait")
	return out.String()
}

func TestPortsBannerAtInteractiveLogin(t *testing.T) {
	t.Parallel()
	proc := fakeProc(t, true)
	c := startAgent(t, func(s *Server) {
		s.ProcDir = proc
		s.Env = []string{"PATH=/usr/bin:/bin", "SYGALDRY_PROJECT=zephyr"}
	}).dial(t)

	out := loginOutput(t, c, map[string]string{ports.DestEnv: "-p 2222 zephyr@127.0.0.1"})
	want := "Listening in this container:\r\n" +
		"  6006 python3 (pid 77)  on 127.0.0.1  ssh -L 6006:localhost:6006 -p 2222 zephyr@127.0.0.1\r\n" +
		"  8777 python3 (pid 77)  on 0.0.0.0    ssh -L 8777:localhost:8777 -p 2222 zephyr@127.0.0.1\r\n"
	if !strings.HasPrefix(out, want) {
		t.Fatalf("login output:\n%q\nwant it to start with\n%q", out, want)
	}
	if !strings.Contains(out, "marker-42") {
		t.Errorf("the shell did not run after the banner: %q", out)
	}

	// Without the gateway's destination: a placeholder naming the project.
	if out := loginOutput(t, c, nil); !strings.Contains(out, "ssh -L 8777:localhost:8777 -p PORT zephyr@GATEWAY-HOST\r\n") {
		t.Errorf("without %s:\n%q", ports.DestEnv, out)
	}
}

func TestPortsBannerOnlyOnInteractiveLogins(t *testing.T) {
	t.Parallel()
	c := startAgent(t, func(s *Server) { s.ProcDir = fakeProc(t, true) }).dial(t)

	// exec with a pty (ssh -t host cmd): the command's output only.
	s := newSession(t, c)
	must(t, s.RequestPty("xterm", 24, 80, nil), "pty-req")
	var out bytes.Buffer
	s.Stdout = &out
	must(t, s.Run("echo only"), "exec")
	if out.String() != "only\r\n" {
		t.Errorf("exec on a pty printed %q", out.String())
	}

	// A shell without a pty (ssh -T host, scripts piping into it).
	s = newSession(t, c)
	out.Reset()
	s.Stdout = &out
	s.Stdin = strings.NewReader("echo only\n")
	must(t, s.Shell(), "shell")
	must(t, waitSession(t, s, 10*time.Second), "wait")
	if out.String() != "only\n" {
		t.Errorf("shell without a pty printed %q", out.String())
	}

	// exec without a pty.
	if r := run(t, c, "echo only"); r.stdout != "only\n" || r.err != nil {
		t.Errorf("exec printed %q (%v)", r.stdout, r.err)
	}
}

func TestPortsBannerNothingListening(t *testing.T) {
	t.Parallel()
	c := startAgent(t, func(s *Server) { s.ProcDir = fakeProc(t, false) }).dial(t)
	if out := loginOutput(t, c, nil); strings.Contains(out, "Listening") {
		t.Errorf("banner with nothing listening: %q", out)
	}
	// An unreadable /proc: no banner, the login goes on.
	c = startAgent(t, func(s *Server) { s.ProcDir = filepath.Join(t.TempDir(), "none") }).dial(t)
	if out := loginOutput(t, c, nil); strings.Contains(out, "Listening") || !strings.Contains(out, "marker-42") {
		t.Errorf("login without /proc: %q", out)
	}
}

func TestPortsBannerBounded(t *testing.T) {
	dir := fakeProc(t, false)
	tcp := "  sl  local_address rem_address   st\n"
	for i := range 40 {
		tcp += fmt.Sprintf("   0: 00000000:%04X 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 0 1\n", 0x1000+i)
	}
	must(t, os.WriteFile(filepath.Join(dir, "net", "tcp"), []byte(tcp), 0o644), "tcp")
	b := portsBanner(dir, []string{ports.DestEnv + "=" + strings.Repeat("d", 500)})
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(b) > bannerBytes || len(lines) < 2 || lines[0] != ports.Header {
		t.Fatalf("banner of %d bytes:\n%s", len(b), b)
	}
	b = portsBanner(dir, nil)
	lines = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 1+bannerListeners+1 || lines[len(lines)-1] != "  ... and 32 more: sygaldry ports" {
		t.Errorf("banner:\n%s", b)
	}
}

// TestPortsCommand runs `sygaldry ports` on the real /proc: a socket this
// test listens on is listed with this process's pid.
func TestPortsCommand(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err, "listen")
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	env := map[string]string{ports.DestEnv: "-p 2222 zephyr@127.0.0.1"}

	var out, errb bytes.Buffer
	if code := Command([]string{"ports", "--json"}, &out, &errb, func(k string) string { return env[k] }); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var ls []ports.Listener
	must(t, json.Unmarshal(out.Bytes(), &ls), "json %s", out.String())
	found := false
	for _, l := range ls {
		if int(l.Port) == port && l.Address == "127.0.0.1" {
			found = l.PID == os.Getpid() && l.SSH == fmt.Sprintf("ssh -L %d:localhost:%d -p 2222 zephyr@127.0.0.1", port, port)
			if !found {
				t.Errorf("listener = %+v", l)
			}
		}
	}
	if !found {
		t.Errorf("port %d not in %s", port, out.String())
	}

	out.Reset()
	if code := Command([]string{"ports"}, &out, &errb, func(string) string { return "" }); code != 0 || !strings.HasPrefix(out.String(), ports.Header+"\n") || !strings.Contains(out.String(), " -p PORT PROJECT@GATEWAY-HOST\n") {
		t.Errorf("text listing (exit %d):\n%s", code, out.String())
	}

	for _, args := range [][]string{nil, {"nope"}, {"ports", "--yaml"}, {"ports", "extra"}} {
		errb.Reset()
		if code := Command(args, &out, &errb, func(string) string { return "" }); code != 2 || !strings.Contains(errb.String(), "usage: sygaldry ports") {
			t.Errorf("%q: exit %d, stderr %q", args, code, errb.String())
		}
	}
}
