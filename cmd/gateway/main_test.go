package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
)

// TestMain fails the run when a test left a container behind.
func TestMain(m *testing.M) { testenv.Main(m) }

// The admin's view of a bad config: exit 2 and file:line, before anything
// is started.
func TestBadConfigNamesFileAndLine(t *testing.T) {
	dir := t.TempDir()
	bin := testenv.Binary(t, "./cmd/gateway", "sygaldry-gateway")
	cfg := filepath.Join(dir, "gw.toml")
	os.WriteFile(cfg, []byte("[server]\nlisten = \"127.0.0.1:0\"\n\n[projects.zephyr]\nmembers = []\nimagee = \"x\"\n"), 0o644)
	out, err := exec.Command(bin, "--config", cfg).CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v, want 2\n%s", err, out)
	}
	if !strings.Contains(string(out), cfg+":6: unknown key \"projects.zephyr.imagee\"") {
		t.Errorf("output %q lacks file:line", out)
	}

	good := filepath.Join(dir, "ok.toml")
	os.WriteFile(good, []byte("[server]\nlisten = \"127.0.0.1:0\"\n"), 0o644)
	if out, err := exec.Command(bin, "--check", "--config", good).CombinedOutput(); err != nil || !strings.Contains(string(out), "ok") {
		t.Errorf("--check of a good config: %v %s", err, out)
	}
	if out, err := exec.Command(bin, "--config", filepath.Join(dir, "missing.toml")).CombinedOutput(); err == nil || !strings.Contains(string(out), "missing.toml") {
		t.Errorf("missing config: %v %s", err, out)
	}
}

// The daemon as an admin runs it: the built binary with a config file, a
// user logging in with the OpenSSH client, sygctl reading the admin socket,
// Prometheus scraping metrics, SIGHUP reloading, SIGTERM stopping cleanly.
func TestDaemonEndToEnd(t *testing.T) {
	e := newDaemonEnv(t, "d")
	dir, bin, sygctl, project, port, sock, cfgPath := e.dir, e.bin, e.sygctl, e.project, e.port, e.sock, e.cfgPath
	alice := sshtest.NewKey(t, dir, "alice")
	bob := sshtest.NewKey(t, dir, "bob")
	metricsPort := freePort(t)
	doc := func(members string) string {
		return e.config(fmt.Sprintf(`metrics_listen = "127.0.0.1:%d"`, metricsPort), "", fmt.Sprintf(`[projects.%s]
members = [%s]
[users.alice]
keys = [%q]
[users.bob]
keys = [%q]
`, project, members, alice.Authorized, bob.Authorized))
	}
	e.write(t, doc(`"alice"`))

	gw, _, exited := startDaemon(t, bin, cfgPath, port)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := sshtest.Client{Host: "127.0.0.1", Port: strconv.Itoa(port), Login: project, Key: alice}
	if r := sshtest.Run(t, c.SSH(ctx, "echo hi; exit 3"), nil); r.Code != 3 || r.Stdout != "hi\n" {
		t.Fatalf("login: %v", r)
	}

	// A live session, seen by sygctl.
	live := c.SSH(ctx, "sleep 30")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { live.Process.Kill(); live.Wait() }()
	var sessions []map[string]any
	for deadline := time.Now().Add(10 * time.Second); len(sessions) == 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		out, err := exec.Command(sygctl, "--socket", sock, "sessions", "--json").Output()
		if err != nil {
			t.Fatalf("sygctl sessions: %v", err)
		}
		var all []map[string]any
		json.Unmarshal(out, &all)
		sessions = sessions[:0]
		for _, s := range all {
			// Until its session channel is open, the connection is a row of
			// its own.
			if s["kind"] != "connection" {
				sessions = append(sessions, s)
			}
		}
	}
	if len(sessions) != 1 || sessions[0]["user"] != "alice" || sessions[0]["project"] != project ||
		sessions[0]["command"] != "sleep 30" || sessions[0]["kind"] != "exec" {
		t.Errorf("sygctl sessions --json = %v", sessions)
	}
	for _, f := range []string{"id", "container", "remote_addr", "started"} {
		if len(sessions) > 0 && sessions[0][f] == nil {
			t.Errorf("sygctl sessions --json lacks %q", f)
		}
	}

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `sygaldry_sessions_live{kind="exec",project="`+project+`"} 1`) {
		t.Errorf("metrics lack the live session:\n%s", body)
	}

	// Reload: bob becomes a member without a restart.
	bc := c
	bc.Key = bob
	if r := sshtest.Run(t, bc.SSH(ctx, "true"), nil); r.Code != 255 {
		t.Fatalf("bob before reload: %v", r)
	}
	os.WriteFile(cfgPath, []byte(doc(`"alice", "bob"`)), 0o644)
	gw.Process.Signal(syscall.SIGHUP)
	var r sshtest.Result
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if r = sshtest.Run(t, bc.SSH(ctx, "echo $SYGALDRY_USER"), nil); r.Code == 0 {
			break
		}
	}
	if r.Stdout != "bob\n" {
		t.Errorf("bob after reload: %v", r)
	}

	// sygctl reload says, key by key, what it applied and what waits for a
	// restart; the listen address stays in force until then.
	next := strings.Replace(doc(`"alice", "bob"`), fmt.Sprintf("listen = \"127.0.0.1:%d\"", port), "listen = \"127.0.0.1:1\"\nidle_stop = \"45m\"", 1)
	os.WriteFile(cfgPath, []byte(next), 0o644)
	out, err := exec.Command(sygctl, "--socket", sock, "reload").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "applied  server.idle_stop: 2h0m0s -> 45m0s\n") ||
		!strings.Contains(string(out), fmt.Sprintf("needs a restart  server.listen: 127.0.0.1:%d -> 127.0.0.1:1\n", port)) ||
		!strings.Contains(string(out), "configuration reloaded: 1 applied, 1 needs a restart, 0 connections ended\n") {
		t.Errorf("sygctl reload: %v\n%s", err, out)
	}
	if r := sshtest.Run(t, bc.SSH(ctx, "true"), nil); r.Code != 0 {
		t.Errorf("login after a reload that changed the listen address: %v", r)
	}
	// A file with an error is refused with its file:line; nothing changes.
	os.WriteFile(cfgPath, []byte(next+"\n[server.oops]\n"), 0o644)
	out, err = exec.Command(sygctl, "--socket", sock, "reload").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "sygctl reload: "+cfgPath+":") {
		t.Errorf("sygctl reload of a bad file: %v\n%s", err, out)
	}
	os.WriteFile(cfgPath, []byte(next), 0o644)
	out, err = exec.Command(sygctl, "--socket", sock, "reload").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "needs a restart  server.listen") || strings.Contains(string(out), "applied  ") {
		t.Errorf("sygctl reload of the same file again: %v\n%s", err, out)
	}

	// SIGTERM: a clean exit, within the drain time.
	live.Process.Kill()
	live.Wait()
	gw.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("gateway exit after SIGTERM: %v", err)
		}
		exited <- err // for the cleanup
	case <-time.After(45 * time.Second):
		t.Error("gateway did not stop after SIGTERM")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("admin socket left behind: %v", err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startDaemon runs the gateway binary with cfgPath (env added to this
// process's environment) and returns once it listens on 127.0.0.1:port. The
// cleanup kills it and, when the test failed, logs what it wrote. exited
// gets its Wait result; a test that takes it puts it back for the cleanup.
func startDaemon(t *testing.T, bin, cfgPath string, port int, env ...string) (*exec.Cmd, *testenv.SyncBuffer, chan error) {
	t.Helper()
	logs := &testenv.SyncBuffer{}
	gw := exec.Command(bin, "--config", cfgPath)
	if len(env) > 0 {
		gw.Env = append(os.Environ(), env...)
	}
	gw.Stdout, gw.Stderr = logs, logs
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- gw.Wait() }()
	t.Cleanup(func() {
		gw.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})
	waitListening(t, fmt.Sprintf("127.0.0.1:%d", port))
	return gw, logs, exited
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("nothing listens on %s", addr)
}
