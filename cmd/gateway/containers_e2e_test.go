package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/admin/api"
	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/workspace"
)

// The daemon, the real engine and OpenSSH: sygctl containers shows a
// connection with its forward (ssh -L to a python3 http.server in the
// container), the server among the jobs, and "in use"; once the client
// is gone, when the idle stop will stop the container.
func TestDaemonContainersExplained(t *testing.T) {
	e := newDaemonEnv(t, "w")
	project, port, sock, sygctl := e.project, e.port, e.sock, e.sygctl
	alice := sshtest.NewKey(t, e.dir, "alice")
	e.write(t, e.config(`idle_stop = "2h"`, "", fmt.Sprintf(`[projects.%s]
members = ["alice"]
[users.alice]
keys = [%q]
`, project, alice.Authorized)))
	startDaemon(t, e.bin, e.cfgPath, port)
	name := workspace.ContainerName(project, "alice")

	containers := func() (api.ContainerInfo, string) {
		t.Helper()
		out, err := exec.Command(sygctl, "--socket", sock, "containers", "--json").Output()
		if err != nil {
			t.Fatalf("sygctl containers --json: %v", err)
		}
		var list []api.ContainerInfo
		if err := json.Unmarshal(out, &list); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		table, err := exec.Command(sygctl, "--socket", sock, "containers").Output()
		if err != nil {
			t.Fatalf("sygctl containers: %v", err)
		}
		// Our row and the lines under it (the engine may hold others).
		_, row, _ := strings.Cut(string(table), "\n"+name+" ")
		row, _, _ = strings.Cut(row, "\nsygaldry-")
		for _, c := range list {
			if c.Name == name {
				return c, row
			}
		}
		return api.ContainerInfo{}, row
	}
	poll := func(what string, cond func(api.ContainerInfo) bool) (api.ContainerInfo, string) {
		t.Helper()
		var c api.ContainerInfo
		var row string
		for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if c, row = containers(); cond(c) {
				return c, row
			}
			if time.Now().After(deadline) {
				t.Fatalf("sygctl containers never showed %s: %+v\n%s", what, c, row)
			}
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl := sshtest.Client{Host: "127.0.0.1", Port: strconv.Itoa(port), Login: project, Key: alice}
	local := freePort(t)
	job := cl.SSH(ctx, "-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:8777", local), "--", "exec python3 -m http.server --bind 127.0.0.1 8777")
	if err := job.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { job.Process.Kill(); job.Wait() }()
	// An open connection through the forward, idle: a live channel.
	var fwd net.Conn
	for deadline := time.Now().Add(90 * time.Second); fwd == nil; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the forward to the http.server never answered")
		}
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", local))
		if err != nil {
			continue
		}
		io.WriteString(c, "HEAD / HTTP/1.0\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		c.Close()
		if strings.HasPrefix(string(b), "HTTP/1.0 200") {
			fwd, _ = net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", local))
		}
	}
	defer func() {
		if fwd != nil {
			fwd.Close()
		}
	}()

	c, row := poll("the forward", func(c api.ContainerInfo) bool { return len(c.Forwards) == 1 })
	t.Logf("in use:\n%s %s", name, row)
	if len(c.Connections) != 1 || c.Connections[0].User != "alice" || !strings.HasPrefix(c.Connections[0].RemoteAddr, "127.0.0.1:") ||
		c.Connections[0].Channels != 2 || c.Connections[0].Conn != c.Forwards[0].Conn {
		t.Errorf("connections = %+v", c.Connections)
	}
	if f := c.Forwards[0]; f.Kind != "direct-tcpip" || f.Target != "127.0.0.1:8777" || f.User != "alice" {
		t.Errorf("forward = %+v", f)
	}
	server := false
	for _, j := range c.Jobs {
		server = server || strings.Contains(j.Command, "http.server") && j.PID > 1 && j.AgeSeconds != nil
	}
	if !server || c.Stop.Status != api.StopInUse || c.Stop.IdleStopSeconds != 7200 || c.Sessions != 2 {
		t.Errorf("jobs %+v, stop %+v, sessions %d", c.Jobs, c.Stop, c.Sessions)
	}
	for _, want := range []string{" in use\n", "    connection c", " alice from 127.0.0.1:", "2 channels open",
		"    forward direct-tcpip 127.0.0.1:8777 (session ", "http.server --bind 127.0.0.1 8777, running "} {
		if !strings.Contains(row, want) {
			t.Errorf("no %q in the row of %s:\n%s", want, name, row)
		}
	}

	// The client goes: the idle stop is scheduled 2h after the last
	// connection ended.
	fwd.Close()
	fwd = nil
	job.Process.Kill()
	job.Wait()
	c, row = poll("the idle stop scheduled", func(c api.ContainerInfo) bool {
		return len(c.Connections) == 0 && c.Stop.Status != api.StopInUse
	})
	if c.Stop.Status != api.StopScheduled || c.Stop.At == nil || c.Stop.IdleSince == nil || c.Stop.At.Sub(*c.Stop.IdleSince) != 2*time.Hour {
		t.Fatalf("after the client left: stop %+v, jobs %+v", c.Stop, c.Jobs)
	}
	t.Logf("idle:\n%s %s", name, row)
	want := "stops at " + c.Stop.At.Local().Format("15:04") + " (idle_stop 2h after the last connection)"
	if c.Stop.At.Local().YearDay() != time.Now().YearDay() {
		want = "stops at " + c.Stop.At.Local().Format("Jan 02 15:04") + " (idle_stop 2h after the last connection)"
	}
	if !strings.Contains(row, want) {
		t.Errorf("no %q in the row of %s:\n%s", want, name, row)
	}
}
