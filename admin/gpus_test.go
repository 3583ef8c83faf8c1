package admin_test

import (
	"context"
	"github.com/sygaldry/sygaldry/admin/api"
	"strings"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/admin"
)

type fakeGPUs struct{ rep api.GPUReport }

func (f fakeGPUs) GPUs(context.Context) api.GPUReport { return f.rep }

// Lists are [] on the wire, never null, so a script can iterate them.
func TestGPUsListsNeverNull(t *testing.T) {
	e := start(t, nil)
	e.srv.GPUs = fakeGPUs{api.GPUReport{Available: true, GPUs: []api.GPUInfo{{UUID: "GPU-1", Health: "healthy"}}}}
	code, b := rawBytes(t, e.sock, "GET", "/v1/gpus", "")
	if code != 200 || !strings.Contains(string(b), `"processes":[]`) {
		t.Errorf("%d %s", code, b)
	}
	e.srv.GPUs = fakeGPUs{api.GPUReport{Message: "no NVIDIA GPUs on this host"}}
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

type fakeLeases []admin.GPULease

func (f fakeLeases) GPULeases(context.Context) []admin.GPULease { return f }

// Each GPU names the containers leasing it: in use, or idle for how long,
// and whether it lost its GPUs (nvml_lost); a free GPU has "holders": [].
func TestGPUsHolders(t *testing.T) {
	e := start(t, nil)
	e.srv.GPUs = fakeGPUs{api.GPUReport{Available: true, GPUs: []api.GPUInfo{
		{Index: 0, UUID: "GPU-0", Health: "healthy"},
		{Index: 1, UUID: "GPU-1", Health: "healthy"},
		{Index: 2, UUID: "GPU-2", Health: "healthy"},
	}}}
	e.srv.Leases = fakeLeases{
		{Container: "sygaldry-zephyr-bob", User: "bob", Project: "zephyr", Mode: "exclusive", UUIDs: []string{"GPU-0"}, IdleSince: time.Now().Add(-3 * time.Hour)},
		{Container: "sygaldry-mist-alice", User: "alice", Project: "mist", Mode: "shared", UUIDs: []string{"GPU-1"}, InUse: true},
		{Container: "sygaldry-mist-carol", User: "carol", Project: "mist", Mode: "shared", UUIDs: []string{"GPU-1"}, NVMLLost: true},
	}
	code, b := rawBytes(t, e.sock, "GET", "/v1/gpus", "")
	if code != 200 || !strings.Contains(string(b), `"holders":[]`) {
		t.Errorf("a free GPU: %d %s", code, b)
	}
	rep, err := e.cl.GPUs(ctx(t))
	if err != nil || len(rep.GPUs) != 3 {
		t.Fatalf("%+v %v", rep, err)
	}
	h0 := rep.GPUs[0].Holders
	if len(h0) != 1 || h0[0].Container != "sygaldry-zephyr-bob" || h0[0].User != "bob" || h0[0].Project != "zephyr" || h0[0].Mode != "exclusive" || h0[0].InUse {
		t.Errorf("GPU 0 holders = %+v", h0)
	}
	if len(h0) == 1 && (h0[0].IdleSeconds == nil || *h0[0].IdleSeconds < 3*3600 || *h0[0].IdleSeconds > 3*3600+60) {
		t.Errorf("GPU 0 idle_seconds = %v, want about 10800", h0[0].IdleSeconds)
	}
	h1 := rep.GPUs[1].Holders
	if len(h1) != 2 || h1[0].Container != "sygaldry-mist-alice" || !h1[0].InUse || h1[0].IdleSeconds != nil || h1[0].Mode != "shared" ||
		h1[1].Container != "sygaldry-mist-carol" || h1[1].InUse || h1[1].IdleSeconds != nil || h1[0].NVMLLost || !h1[1].NVMLLost {
		t.Errorf("GPU 1 holders = %+v", h1)
	}
	if len(rep.GPUs[2].Holders) != 0 {
		t.Errorf("GPU 2 holders = %+v", rep.GPUs[2].Holders)
	}
}
