package admin_test

import (
	"context"
	"strings"
	"testing"

	"github.com/sygaldry/sygaldry/admin"
	"github.com/sygaldry/sygaldry/admin/client"
)

type fakeGPUs struct{ rep admin.GPUReport }

func (f fakeGPUs) GPUs(context.Context) admin.GPUReport { return f.rep }

// Lists are [] on the wire, never null, so a script can iterate them.
func TestGPUsListsNeverNull(t *testing.T) {
	e := start(t, nil)
	e.srv.GPUs = fakeGPUs{admin.GPUReport{Available: true, GPUs: []admin.GPUInfo{{UUID: "GPU-1", Health: "healthy"}}}}
	code, b := rawBytes(t, e.sock, "GET", "/v1/gpus", "")
	if code != 200 || !strings.Contains(string(b), `"processes":[]`) {
		t.Errorf("%d %s", code, b)
	}
	e.srv.GPUs = fakeGPUs{admin.GPUReport{Message: "no NVIDIA GPUs on this host"}}
	code, b = rawBytes(t, e.sock, "GET", "/v1/gpus", "")
	if code != 200 || !strings.Contains(string(b), `"gpus":[]`) || !strings.Contains(string(b), `"available":false`) {
		t.Errorf("%d %s", code, b)
	}
	rep, err := e.cl.GPUs(ctx(t))
	if err != nil || rep.Available || rep.Message != "no NVIDIA GPUs on this host" {
		t.Errorf("client: %+v %v", rep, err)
	}
}

func TestNoGPUInventory(t *testing.T) {
	e := start(t, nil)
	if code, m := raw(t, e.sock, "GET", "/v1/gpus", ""); code != 503 || !strings.Contains(m["error"].(string), "does not report GPUs") {
		t.Errorf("%d %v", code, m)
	}
}

// The server's GPU wire types and the client's copies must not drift apart.
func TestGPUWireTypesMatch(t *testing.T) {
	u64, u32 := uint64(7), uint32(3)
	rep := admin.GPUReport{Available: true, Message: "m", Driver: "d", GPUs: []admin.GPUInfo{{
		Index: 1, UUID: "u", Name: "n", MemoryTotal: &u64, MemoryUsed: &u64, Utilization: &u32, Temperature: &u32,
		MIGMode: "disabled", Health: "unhealthy", HealthReason: "XID 79", Unknown: []string{"x"},
		Processes: []admin.GPUProcess{{PID: 1, UsedMemory: &u64, ContainerID: "c", Container: "n", Project: "p", User: "u"}},
	}}}
	roundTrip(t, rep, &client.GPUReport{})
}
