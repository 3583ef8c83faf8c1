package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/internal/sshtest"
)

// SIGHUP with a new memory limit updates the running container in place:
// the same container ID, the new limit in the engine and in the kernel, and
// the session that was running all along still running.
func TestReloadUpdatesContainerLimits(t *testing.T) {
	e := newDaemonEnv(t, "l")
	docker, bin, project, port, cfgPath := e.docker, e.bin, e.project, e.port, e.cfgPath
	alice := sshtest.NewKey(t, e.dir, "alice")
	doc := func(memory string) string {
		return e.config("", `memory = "512m"`, fmt.Sprintf(`[projects.%s]
members = ["alice"]
memory = %q
pids_limit = 500
[users.alice]
keys = [%q]
`, project, memory, alice.Authorized))
	}
	e.write(t, doc("256m"))

	gw, _, _ := startDaemon(t, bin, cfgPath, port)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := sshtest.Client{Host: "127.0.0.1", Port: strconv.Itoa(port), Login: project, Key: alice}
	live := c.SSH(ctx, "echo started; sleep 60")
	out, err := live.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 8)
	if n, _ := out.Read(b); string(b[:n]) != "started\n" {
		t.Fatalf("session did not start: %q", b[:n])
	}
	ended := make(chan struct{})
	go func() { io.Copy(io.Discard, out); close(ended) }()
	defer func() { live.Process.Kill(); <-ended; live.Wait() }()

	name := "sygaldry-" + project + "-alice"
	ci, err := docker.ContainerInspect(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	id := ci.ID
	if ci.HostConfig.Memory != 256<<20 || *ci.HostConfig.PidsLimit != 500 {
		t.Fatalf("before reload: memory %d pids %v", ci.HostConfig.Memory, *ci.HostConfig.PidsLimit)
	}

	if err := os.WriteFile(cfgPath, []byte(doc("384m")), 0o644); err != nil {
		t.Fatal(err)
	}
	gw.Process.Signal(syscall.SIGHUP)
	var mem int64
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		ci, err = docker.ContainerInspect(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if mem = ci.HostConfig.Memory; mem == 384<<20 {
			break
		}
	}
	if mem != 384<<20 || ci.HostConfig.MemorySwap != 384<<20 {
		t.Fatalf("after reload: memory %d swap %d, want 384 MiB both", mem, ci.HostConfig.MemorySwap)
	}
	if ci.ID != id || !ci.State.Running {
		t.Errorf("after reload: container %s running %t, want the same %s running", ci.ID, ci.State.Running, id)
	}
	r := sshtest.Run(t, c.SSH(ctx, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"), nil)
	if r.Stdout != "402653184\n" {
		t.Errorf("cgroup limit in the container: %v", r)
	}
	// The session that ran across the reload is still there.
	select {
	case <-ended:
		t.Error("the live session ended at the reload")
	default:
	}
}
