package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/sygaldry/sygaldry/admin"
	"github.com/sygaldry/sygaldry/admin/api"
	"github.com/sygaldry/sygaldry/internal/bind"
	"github.com/sygaldry/sygaldry/internal/testenv"
	"github.com/sygaldry/sygaldry/sessions"
	"github.com/sygaldry/sygaldry/workspace"
)

// A container with an open `sygctl launch` session, idle at a shell
// prompt, is in use: the gateway's idle stop finds the shell among its
// jobs and postpones, and `sygctl containers` says so, with the shell, its
// host PID and age. Once the shell exits, the same idle stop stops it.
func TestLaunchSessionIsNotIdleStopped(t *testing.T) {
	r := newLaunchRig(t)
	cmd := r.cmd()
	cmd.Env = append(cmd.Env, "TERM=xterm")
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var term testenv.SyncBuffer
	copied := make(chan struct{})
	go func() { io.Copy(&term, ptmx); close(copied) }()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	waitUntil(t, 60*time.Second, "a shell prompt from sygctl launch", func() bool { return strings.Contains(term.String(), "$ ") }, &term)

	// The gateway, started while the launched container runs: RestoreIdle
	// arms its idle timer (a second here, so the check comes soon).
	name := workspace.ContainerName(r.project, "tester")
	var log testenv.SyncBuffer
	m, err := workspace.NewManager(workspace.Options{
		Client: r.cl, StorageRoot: r.root, StateDir: r.state, AgentPath: filepath.Join(r.bin, "sygaldry-agent"),
		DisableGPUs: true, Labels: map[string]string{testenv.TestLabel: r.testID}, IdleStop: time.Second,
		Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if n, err := m.RestoreIdle(context.Background()); err != nil || n != 1 {
		t.Fatalf("RestoreIdle = %d, %v; want the launched container armed", n, err)
	}
	waitUntil(t, 30*time.Second, "the idle stop postponed", func() bool {
		return strings.Contains(log.String(), "idle stop postponed") && strings.Contains(log.String(), name)
	}, &log)
	ci, err := r.cl.ContainerInspect(context.Background(), name)
	if err != nil || !ci.State.Running {
		t.Fatalf("the container with a launch session open was stopped (%v)\n%s", err, log.String())
	}

	// sygctl containers, against an admin API on this manager.
	sock := filepath.Join(testenv.ShortTempDir(t), "admin.sock")
	serveAdmin(t, &admin.Server{Sessions: admin.FromRegistry(sessions.NewRegistry(nil)), Containers: bind.AdminContainers(m), Version: "test"}, sock)
	start := time.Now()
	code, out, errs := runAdmin(t, cmdContainers, "--socket", sock, "--json")
	t.Logf("sygctl containers --json took %v", time.Since(start).Round(time.Millisecond))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var list []api.ContainerInfo
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var c api.ContainerInfo
	for _, in := range list { // the engine may hold other tests' containers
		if in.Name == name {
			c = in
		}
	}
	var shell *api.ContainerJob
	for i, j := range c.Jobs {
		if strings.Contains(j.Command, "bash") {
			shell = &c.Jobs[i]
		}
	}
	if shell == nil || shell.PID <= 1 || shell.AgeSeconds == nil || c.JobsError != "" {
		t.Fatalf("the launch shell is not among the jobs: %+v", c)
	}
	for _, j := range c.Jobs {
		if strings.HasPrefix(j.Command, workspace.AgentTarget) {
			t.Errorf("the agent is listed as a job: %+v", j)
		}
	}
	if c.Stop.Status != api.StopPostponed || c.Stop.IdleStopSeconds != 1 || len(c.Connections) != 0 {
		t.Errorf("stop = %+v, want postponed", c.Stop)
	}
	code, out, _ = runAdmin(t, cmdContainers, "--socket", sock)
	t.Logf("sygctl containers:\n%s", out)
	row, _, _ := strings.Cut(out[strings.Index(out, "\n"+name+" ")+1:], "\n"+"sygaldry-")
	if code != 0 || !strings.Contains(row, "stop postponed: "+plural(len(c.Jobs), "job")+" running") ||
		!strings.Contains(row, "\n    job "+strconv.Itoa(shell.PID)+" ") {
		t.Errorf("row of %s:\n%s\nin\n%s", name, row, out)
	}

	// The shell exits: nothing but the agent is left, and the same idle
	// stop stops the container.
	io.WriteString(ptmx, "exit\r")
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("sygctl launch: %v\n%s", err, term.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("sygctl launch did not exit after `exit`:\n%s", term.String())
	}
	ptmx.Close()
	<-copied
	waitUntil(t, 30*time.Second, "the idle container stopped once the launch session ended", func() bool {
		ci, err := r.cl.ContainerInspect(context.Background(), name)
		return err == nil && !ci.State.Running
	}, &log)
}

// waitUntil polls cond until it holds, failing after limit with what
// explains the wait.
func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool, explain interface{ String() string }) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %s:\n%s", what, limit, explain.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
