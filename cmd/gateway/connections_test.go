package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
)

// The daemon and sygctl as an admin uses them: an `ssh -N` connection with
// no channel is listed by `sygctl sessions` (table and --json) as a row of
// kind "connection", and `sygctl sessions kill ID` ends it; a SIGHUP that
// removes bob's key ends bob's tunnel and his shell, which shows one line
// saying why.
func TestDaemonConnectionsKilledAndRevoked(t *testing.T) {
	e := newDaemonEnv(t, "d")
	dir, bin, sygctl, project, port, sock, cfgPath := e.dir, e.bin, e.sygctl, e.project, e.port, e.sock, e.cfgPath
	alice := sshtest.NewKey(t, dir, "alice")
	bob := sshtest.NewKey(t, dir, "bob")
	bobNext := sshtest.NewKey(t, dir, "bob-next")
	doc := func(bobKey string) string {
		return e.config("", "", fmt.Sprintf(`[projects.%s]
members = ["alice", "bob"]
[users.alice]
keys = [%q]
[users.bob]
keys = [%q]
`, project, alice.Authorized, bobKey))
	}
	e.write(t, doc(bob.Authorized))

	gw, logs, _ := startDaemon(t, bin, cfgPath, port)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bc := sshtest.Client{Host: "127.0.0.1", Port: strconv.Itoa(port), Login: project, Key: bob}

	sessions := func() []map[string]any {
		t.Helper()
		out, err := exec.Command(sygctl, "--socket", sock, "sessions", "--json").Output()
		if err != nil {
			t.Fatalf("sygctl sessions --json: %v", err)
		}
		var list []map[string]any
		if err := json.Unmarshal(out, &list); err != nil {
			t.Fatalf("sygctl sessions --json: %v\n%s", err, out)
		}
		return list
	}
	// background starts an ssh that runs until something ends it.
	background := func(args ...string) (*exec.Cmd, chan struct{}) {
		cmd := bc.SSH(ctx, args...)
		done := make(chan struct{})
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { cmd.Wait(); close(done) }()
		t.Cleanup(func() { cmd.Process.Kill(); <-done })
		return cmd, done
	}
	ended := func(what string, done chan struct{}) {
		t.Helper()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s did not end", what)
		}
	}

	// An idle tunnel, listed and killed with sygctl.
	_, tunnelDone := background("-N", "-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:22", freePort(t)), "--")
	var conn map[string]any
	for deadline := time.Now().Add(20 * time.Second); conn == nil && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, s := range sessions() {
			if s["kind"] == "connection" && s["user"] == "bob" {
				conn = s
			}
		}
	}
	if conn == nil || conn["project"] != project || !strings.HasPrefix(conn["remote_addr"].(string), "127.0.0.1:") {
		t.Fatalf("the -N connection is not listed: %v", conn)
	}
	id := conn["id"].(string)
	table, err := exec.Command(sygctl, "--socket", sock, "sessions").Output()
	if err != nil || !strings.Contains(string(table), id+" ") || !strings.Contains(string(table), " connection ") {
		t.Errorf("sygctl sessions table (%v):\n%s", err, table)
	}
	if out, err := exec.Command(sygctl, "--socket", sock, "sessions", "kill", id).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "closed connection "+id) {
		t.Fatalf("sygctl sessions kill %s: %v %s", id, err, out)
	}
	ended("the killed tunnel", tunnelDone)

	// A reload that removes bob's key ends his tunnel and his shell.
	_, tunnelDone = background("-N", "--")
	shell := bc.SSH(ctx, "echo started; sleep 300")
	stdout, err := shell.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var shellErr testenv.SyncBuffer
	shell.Stderr = &shellErr
	if err := shell.Start(); err != nil {
		t.Fatal(err)
	}
	shellDone := make(chan struct{})
	rd := bufio.NewReader(stdout)
	if line, _ := rd.ReadString('\n'); line != "started\n" {
		t.Fatalf("bob's shell: %q %s", line, shellErr.String())
	}
	go func() { rd.WriteTo(io.Discard); shell.Wait(); close(shellDone) }()
	t.Cleanup(func() { shell.Process.Kill(); <-shellDone })

	if err := os.WriteFile(cfgPath, []byte(doc(bobNext.Authorized)), 0o644); err != nil {
		t.Fatal(err)
	}
	gw.Process.Signal(syscall.SIGHUP)
	ended("bob's shell after the reload", shellDone)
	ended("bob's tunnel after the reload", tunnelDone)
	if want := "sygaldry: your access to " + project + " was withdrawn by the administrator"; !strings.Contains(shellErr.String(), want) {
		t.Errorf("bob's shell was not told: %q", shellErr.String())
	}
	if !strings.Contains(logs.String(), "the reloaded config withdrew its access") {
		t.Errorf("the gateway log does not say why")
	}
	// His entries leave the list once their teardown has finished.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		left := []map[string]any{}
		for _, s := range sessions() {
			if s["user"] == "bob" {
				left = append(left, s)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob still listed after the reload: %v", left)
		}
	}
}
