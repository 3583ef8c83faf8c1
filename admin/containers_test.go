package admin_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/admin/api"
	"github.com/sygaldry/sygaldry/sessions"
)

// GET /v1/containers explains each container: its connections (grouped by
// client connection), its forwards, its GPU processes with the command of
// the job behind each PID, and "in use" while a connection is open.
func TestContainersExplained(t *testing.T) {
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	mem := uint64(3 << 30)
	fc := &fakeContainers{list: []api.ContainerInfo{
		{Name: "sygaldry-zephyr-alice", State: "running",
			Jobs: []api.ContainerJob{{PID: 4242, Command: "python3 train.py"}, {PID: 77, Command: "sleep 100"}},
			Stop: api.ContainerStop{Status: api.StopPostponed, IdleStopSeconds: 7200}},
		{Name: "sygaldry-zephyr-bob", State: "running",
			Stop: api.ContainerStop{Status: api.StopScheduled, At: &at, IdleStopSeconds: 7200}},
		{Name: "sygaldry-zephyr-carol", State: "exited", Stop: api.ContainerStop{Status: api.StopNotRunning}},
	}}
	e := start(t, fc)
	e.srv.GPUs = fakeGPUs{api.GPUReport{Available: true, GPUs: []api.GPUInfo{
		{Index: 0, UUID: "GPU-0", Processes: []api.GPUProcess{{PID: 4242, UsedMemory: &mem, Container: "sygaldry-zephyr-alice"}, {PID: 9, ContainerID: "other"}}},
		{Index: 1, UUID: "GPU-1", Processes: []api.GPUProcess{{PID: 5151, Container: "sygaldry-zephyr-alice"}}},
	}}}

	// Connection c1 of alice: a shell and an ssh -L forward; c2: a tunnel
	// with no channel open (ssh -N).
	add := func(in sessions.Info) *sessions.Session {
		in.User, in.Container, in.RemoteAddr = "alice", "sygaldry-zephyr-alice", "192.0.2.7:5000"
		s := e.reg.Add(in, func(error) {})
		return s
	}
	add(sessions.Info{Conn: "c1", Kind: "shell"})
	add(sessions.Info{Conn: "c1", Kind: "direct-tcpip", Command: "127.0.0.1:8888"})
	c2 := e.reg.AddConn(sessions.Info{ID: "c2", User: "alice", RemoteAddr: "192.0.2.8:6000"}, func(error) {})
	c2.SetContainer("sygaldry-zephyr-alice")

	got, err := e.cl.Containers(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	alice, bob, carol := got[0], got[1], got[2]
	if alice.Sessions != 2 || len(alice.Connections) != 2 {
		t.Fatalf("alice: %+v", alice)
	}
	for _, c := range alice.Connections {
		switch c.Conn {
		case "c1":
			if c.Channels != 2 || c.User != "alice" || c.RemoteAddr != "192.0.2.7:5000" || c.LastActive.IsZero() || c.IdleSeconds > 60 {
				t.Errorf("c1 = %+v", c)
			}
		case "c2":
			if c.Channels != 0 || c.RemoteAddr != "192.0.2.8:6000" {
				t.Errorf("c2 = %+v", c)
			}
		default:
			t.Errorf("connection %+v", c)
		}
	}
	if len(alice.Forwards) != 1 || alice.Forwards[0].Kind != "direct-tcpip" || alice.Forwards[0].Target != "127.0.0.1:8888" || alice.Forwards[0].Conn != "c1" {
		t.Errorf("forwards = %+v", alice.Forwards)
	}
	if len(alice.GPUProcesses) != 2 {
		t.Fatalf("gpu processes = %+v", alice.GPUProcesses)
	}
	if g := alice.GPUProcesses[0]; g.GPU != 0 || g.UUID != "GPU-0" || g.PID != 4242 || g.Command != "python3 train.py" || g.UsedMemory == nil || *g.UsedMemory != mem {
		t.Errorf("gpu process = %+v", g)
	}
	if g := alice.GPUProcesses[1]; g.GPU != 1 || g.PID != 5151 || g.Command != "" {
		t.Errorf("gpu process = %+v", g)
	}
	if alice.Stop.Status != api.StopInUse {
		t.Errorf("alice with open connections: stop %+v, want in_use", alice.Stop)
	}
	// Nobody inside bob: the manager's plan stands.
	if bob.Stop.Status != api.StopScheduled || bob.Stop.At == nil || !bob.Stop.At.Equal(at) || len(bob.Connections) != 0 {
		t.Errorf("bob = %+v", bob)
	}
	if carol.Stop.Status != api.StopNotRunning {
		t.Errorf("carol = %+v", carol.Stop)
	}

	// On the wire every list is [], never null, and the old fields keep
	// their names.
	_, b := rawBytes(t, e.sock, "GET", "/v1/containers", "")
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"connections", "forwards", "jobs", "gpu_processes"} {
		if string(raw[2][k]) != "[]" {
			t.Errorf("%s = %s, want []", k, raw[2][k])
		}
	}
	for _, k := range []string{"name", "project", "user", "state", "image", "created", "up_to_date", "sessions", "stop"} {
		if _, ok := raw[0][k]; !ok {
			t.Errorf("field %q missing: %s", k, b)
		}
	}
	if !strings.Contains(string(b), `"idle_stop_seconds":7200`) {
		t.Errorf("stop without idle_stop_seconds: %s", b)
	}
}
