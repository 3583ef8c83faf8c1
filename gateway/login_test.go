package gateway_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/sygaldry/sygaldry/internal/sshtest"
)

// These tests drive the real OpenSSH client against a real gateway and real
// containers on the local engine (see harness_test.go).

func TestExecExitCodesAndStreams(t *testing.T) {
	w := newWorld(t)
	c := w.client(w.alice)
	ctx := ctxT(t, 3*time.Minute)

	r := sshtest.Run(t, c.SSH(ctx, "echo out; echo err >&2; exit 7"), nil)
	if r.Code != 7 || r.Stdout != "out\n" || !strings.HasSuffix(r.Stderr, "err\n") {
		t.Errorf("exit 7 command: %v", r)
	}
	// The first login created the container and said so on stderr only.
	if !strings.Contains(r.Stderr, "sygaldry-"+w.project+"-alice") {
		t.Errorf("first login did not tell the user about the container: %q", r.Stderr)
	}

	for _, tc := range []struct {
		cmd  string
		code int
		out  string
	}{
		{"true", 0, ""},
		{"exit 255", 255, ""},
		{"kill -9 $$", 128 + 9, ""}, // exit-signal KILL, and 137 for OpenSSH's client
		{"kill -TERM $$", 128 + 15, ""},
		// The command goes through the user's shell, like sshd: quoting,
		// variables and pipes are the remote shell's.
		{`printf '%s|' "a b" $HOME; echo x | tr x y`, 0, "a b|/home/kvothe|y\n"},
		{"id -un; pwd; hostname", 0, "kvothe\n/home/kvothe\n" + strings.ReplaceAll(w.project, "_", "-") + "\n"},
	} {
		r := sshtest.Run(t, c.SSH(ctx, tc.cmd), nil)
		if r.Code != tc.code || (tc.out != "" && r.Stdout != tc.out) {
			t.Errorf("%q: got %v, want exit %d stdout %q", tc.cmd, r, tc.code, tc.out)
		}
		if tc.code == 0 && r.Stderr != "" {
			t.Errorf("%q: unexpected stderr %q", tc.cmd, r.Stderr)
		}
	}

	// Many short commands with output just before exit: never truncated,
	// never the wrong exit code (the classic exit-status race).
	want := strings.Repeat("0123456789abcdef", 4096) // 64 KiB
	for i := range 15 {
		r := sshtest.Run(t, c.SSH(ctx, fmt.Sprintf("head -c 65536 /dev/zero | tr '\\0' x >/dev/null; printf '%%s' %s; exit %d", want, i%3)), nil)
		if r.Code != i%3 || r.Stdout != want {
			t.Fatalf("run %d: exit %d, %d bytes of stdout (want %d)", i, r.Code, len(r.Stdout), len(want))
		}
	}
}

func TestStdinRoundTrip(t *testing.T) {
	w := newWorld(t)
	c := w.client(w.alice)
	ctx := ctxT(t, 3*time.Minute)
	data := make([]byte, 20<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	r := sshtest.Must(t, c.SSH(ctx, "sha256sum"), data)
	if got := strings.Fields(r.Stdout); len(got) == 0 || got[0] != hex.EncodeToString(sum[:]) {
		t.Errorf("sha256 in container = %q, want %x", r.Stdout, sum)
	}
	// Binary-clean both ways: the bytes come back unchanged.
	r = sshtest.Must(t, c.SSH(ctx, "cat"), data)
	if !bytes.Equal([]byte(r.Stdout), data) {
		t.Errorf("cat round trip: got %d bytes, differ from the %d sent", len(r.Stdout), len(data))
	}
	// EOF on stdin reaches the command: sort finishes.
	r = sshtest.Must(t, c.SSH(ctx, "sort"), []byte("b\na\n"))
	if r.Stdout != "a\nb\n" {
		t.Errorf("sort = %q", r.Stdout)
	}
}

func TestPTYAndResize(t *testing.T) {
	w := newWorld(t)
	c := w.client(w.alice)
	ctx := ctxT(t, 2*time.Minute)
	// Warm the container so the pty output below holds no progress lines.
	sshtest.Must(t, c.SSH(ctx, "true"), nil)

	cmd := c.SSH(ctx, "-t", "--", `stty size; tty >/dev/null && echo TTY-OK; printf 'a\nb\n'; read x; stty size; echo "$TERM"`)
	cmd.Env = append(os.Environ(), "TERM=xterm-256color")
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 41, Cols: 117})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var mu sync.Mutex
	var out bytes.Buffer
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			mu.Lock()
			out.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	waitFor := func(s string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			ok := strings.Contains(out.String(), s)
			mu.Unlock()
			if ok {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("no %q in pty output %q", s, out.String())
	}
	waitFor("41 117")
	waitFor("TTY-OK")
	// The remote tty turns \n into \r\n once (ONLCR); the gateway adds
	// nothing (gliderlabs' emulation would make it \r\r\n).
	waitFor("a\r\nb\r\n")
	if err := pty.Setsize(f, &pty.Winsize{Rows: 50, Cols: 132}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // let SIGWINCH reach ssh and window-change the agent
	f.Write([]byte("\r"))
	waitFor("50 132")
	waitFor("xterm-256color")
	if err := cmd.Wait(); err != nil {
		t.Errorf("ssh -t: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(out.String(), "\r\r\n") {
		t.Errorf("pty output has \\r\\r\\n: %q", out.String())
	}
}

func TestEnvAllowlist(t *testing.T) {
	w := newWorld(t)
	c := w.client(w.alice)
	c.Extra = []string{"-o", "SetEnv=LANG=C.UTF-8 LC_TIME=C FOO=bar LD_PRELOAD=/tmp/x.so"}
	ctx := ctxT(t, 2*time.Minute)
	r := sshtest.Must(t, c.SSH(ctx, `echo "$LANG|$LC_TIME|${FOO-unset}|${LD_PRELOAD-unset}|$USER|$HOME|$SHELL|$SYGALDRY_USER|$SYGALDRY_PROJECT"; echo "$SSH_CONNECTION"`), nil)
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	want := "C.UTF-8|C|unset|unset|kvothe|/home/kvothe|/bin/bash|alice|" + w.project
	if len(lines) != 2 || lines[0] != want {
		t.Fatalf("env = %q, want first line %q", r.Stdout, want)
	}
	if f := strings.Fields(lines[1]); len(f) != 4 || f[0] != "127.0.0.1" || f[3] != w.port {
		t.Errorf("SSH_CONNECTION = %q", lines[1])
	}
}

func TestStorageMountsOwnershipAndIsolation(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t, 3*time.Minute)
	alice, bob := w.client(w.alice), w.client(w.bob)

	r := sshtest.Must(t, alice.SSH(ctx, `stat -c '%n %u' /home/kvothe /opt/spack_store /opt/bazel_cache /config && echo shared > ~/from-alice && echo mine > /tmp/alice-only && cat /proc/1/cgroup >/dev/null`), nil)
	for _, p := range []string{"/home/kvothe 1000", "/opt/spack_store 1000", "/opt/bazel_cache 1000", "/config 1000"} {
		if !strings.Contains(r.Stdout, p) {
			t.Errorf("mount ownership: %q lacks %q", r.Stdout, p)
		}
	}
	for _, d := range []string{"monorepo_home", "spack_store", "bazel_cache", "config"} {
		fi, err := os.Stat(filepath.Join(w.storage, w.project, d))
		if err != nil {
			t.Fatalf("host storage: %v", err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1000 {
			t.Errorf("%s owned by uid %d, want 1000", d, st.Uid)
		}
	}
	if b, err := os.ReadFile(filepath.Join(w.storage, w.project, "monorepo_home", "from-alice")); err != nil || string(b) != "shared\n" {
		t.Errorf("file written in the container is not in host storage: %q %v", b, err)
	}

	// Bob: his own container, the same project storage, not alice's /tmp.
	r = sshtest.Must(t, bob.SSH(ctx, `cat ~/from-alice; test -e /tmp/alice-only && echo SEES-ALICE || echo isolated`), nil)
	if r.Stdout != "shared\nisolated\n" {
		t.Errorf("bob sees %q", r.Stdout)
	}
	// Alice again: the same container (her /tmp survives).
	r = sshtest.Must(t, alice.SSH(ctx, "cat /tmp/alice-only"), nil)
	if r.Stdout != "mine\n" {
		t.Errorf("second login did not reuse the container: %q", r.Stdout)
	}
	for _, user := range []string{"alice", "bob"} {
		cs := w.containers(ctx, user)
		if len(cs) != 1 {
			t.Fatalf("%s has %d containers, want 1", user, len(cs))
		}
		l := cs[0].Labels
		if l["sygaldry.managed"] != "true" || l["sygaldry.project"] != w.project || l["sygaldry.user"] != user {
			t.Errorf("%s labels = %v", user, l)
		}
		if want := "/sygaldry-" + w.project + "-" + user; cs[0].Names[0] != want {
			t.Errorf("name = %v, want %s", cs[0].Names, want)
		}
	}
}

func TestRefusedLogins(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t, 2*time.Minute)
	cases := []struct {
		name string
		c    sshtest.Client
	}{
		{"non-member", w.client(w.carol)},
		{"unknown key", w.client(w.stranger)},
		{"unknown project", w.client(w.alice, "nosuchproject")},
		{"escaping project", w.client(w.alice, "..")},
	}
	for _, tc := range cases {
		r := sshtest.Run(t, tc.c.SSH(ctx, "true"), nil)
		if r.Code != 255 || !strings.Contains(r.Stderr, "Permission denied") {
			t.Errorf("%s: %v, want 255 and Permission denied", tc.name, r)
		}
	}
	if cs := w.containers(ctx, ""); len(cs) != 0 {
		t.Errorf("refused logins created %d containers", len(cs))
	}
	if entries, err := os.ReadDir(w.storage); err == nil && len(entries) != 0 {
		t.Errorf("refused logins created storage: %v", entries)
	}
}

func TestFirstLoginRace(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t, 4*time.Minute)
	c := w.client(w.alice)
	var wg sync.WaitGroup
	results := make([]sshtest.Result, 20)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = sshtest.Run(t, c.SSH(ctx, "echo ok"), nil)
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.Code != 0 || r.Stdout != "ok\n" {
			t.Errorf("login %d: %v", i, r)
		}
	}
	if cs := w.containers(ctx, "alice"); len(cs) != 1 {
		t.Errorf("20 first logins made %d containers, want 1", len(cs))
	}
}

func TestStoppedContainerStartsAgain(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t, 3*time.Minute)
	c := w.client(w.alice)
	sshtest.Must(t, c.SSH(ctx, "echo keep > ~/kept"), nil)
	cs := w.containers(ctx, "alice")
	if len(cs) != 1 {
		t.Fatalf("%d containers", len(cs))
	}
	timeout := 5
	if err := w.docker.ContainerStop(ctx, cs[0].ID, stopOptions(timeout)); err != nil {
		t.Fatal(err)
	}
	r := sshtest.Must(t, c.SSH(ctx, "cat ~/kept"), nil)
	if r.Stdout != "keep\n" {
		t.Errorf("after restart: %v", r)
	}
	after := w.containers(ctx, "alice")
	if len(after) != 1 || after[0].ID != cs[0].ID || after[0].State != "running" {
		t.Errorf("stopped container not restarted in place: %+v", after)
	}
}
