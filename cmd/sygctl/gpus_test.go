package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/admin"
	"github.com/sygaldry/sygaldry/admin/api"
	"github.com/sygaldry/sygaldry/internal/testenv"
)

type staticGPUs struct{ rep api.GPUReport }

func (s staticGPUs) GPUs(context.Context) api.GPUReport { return s.rep }

var _ admin.GPUs = staticGPUs{}

// startGPUAdmin serves the admin API with gpus (nil: a gateway that does
// not report GPUs) and returns its socket.
func startGPUAdmin(t *testing.T, gpus admin.GPUs) string {
	t.Helper()
	return startGPUAdminLeases(t, gpus, nil)
}

type staticLeases []admin.GPULease

func (s staticLeases) GPULeases(context.Context) []admin.GPULease { return s }

// startGPUAdminLeases is startGPUAdmin with a lease table (nil: none).
func startGPUAdminLeases(t *testing.T, gpus admin.GPUs, leases admin.GPULeases) string {
	t.Helper()
	sock := filepath.Join(testenv.ShortTempDir(t), "admin.sock")
	serveAdmin(t, &admin.Server{GPUs: gpus, Leases: leases, Version: "test"}, sock)
	return sock
}

func ptr[T any](v T) *T { return &v }

func TestGPUs(t *testing.T) {
	const cid = "4f1c2b3a4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8"
	sock := startGPUAdminLeases(t, staticGPUs{api.GPUReport{Available: true, Driver: "550.54.15", GPUs: []api.GPUInfo{
		{Index: 0, UUID: "GPU-aaaa", Name: "NVIDIA A100-SXM4-40GB", MemoryTotal: ptr(uint64(40 << 30)), MemoryUsed: ptr(uint64(5 << 29)),
			Utilization: ptr(uint32(87)), Temperature: ptr(uint32(61)), MIGMode: "disabled", Health: "healthy",
			Processes: []api.GPUProcess{
				{PID: 4242, ContainerID: cid, Container: "sygaldry-zephyr-alice", Project: "zephyr", User: "alice"},
				{PID: 77, ContainerID: cid[:20] + strings.Repeat("0", 44)},
				{PID: 9},
			}},
		{Index: 1, UUID: "GPU-bbbb", Name: "NVIDIA A100-SXM4-40GB", MemoryTotal: ptr(uint64(40 << 30)), MemoryUsed: ptr(uint64(0)),
			Health: "unhealthy", HealthReason: "XID 79 at 2026-12-01T10:00:00Z", Unknown: []string{"utilization: ERROR_NOT_SUPPORTED", "temperature: ERROR_FUNCTION_NOT_FOUND"}},
		{Index: 2, UUID: "GPU-cccc", Name: "NVIDIA A100-SXM4-40GB", Health: "healthy"},
	}}}, staticLeases{
		{Container: "sygaldry-zephyr-bob", User: "bob", Project: "zephyr", Mode: "exclusive", UUIDs: []string{"GPU-aaaa"}, IdleSince: time.Now().Add(-(3*time.Hour + 5*time.Minute + 10*time.Second))},
		{Container: "sygaldry-mist-alice", User: "alice", Project: "mist", Mode: "shared", UUIDs: []string{"GPU-cccc"}, InUse: true},
		{Container: "sygaldry-mist-carol", User: "carol", Project: "mist", Mode: "shared", UUIDs: []string{"GPU-cccc"}},
	})

	code, out, errs := runAdmin(t, cmdGPUs, "--socket", sock, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var rep api.GPUReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || !rep.Available || len(rep.GPUs) != 3 {
		t.Fatalf("%v: %s", err, out)
	}
	g0, g1, g2 := rep.GPUs[0], rep.GPUs[1], rep.GPUs[2]
	if g0.UUID != "GPU-aaaa" || *g0.MemoryUsed != 5<<29 || *g0.Utilization != 87 || len(g0.Processes) != 3 || g0.Processes[0].Container != "sygaldry-zephyr-alice" ||
		g1.Health != "unhealthy" || g1.Utilization != nil || g1.Processes == nil || len(g1.Unknown) != 2 {
		t.Fatalf("report %+v", rep)
	}
	if h := g0.Holders; len(h) != 1 || h[0].Container != "sygaldry-zephyr-bob" || h[0].User != "bob" || h[0].Project != "zephyr" || h[0].Mode != "exclusive" ||
		h[0].InUse || h[0].IdleSeconds == nil || *h[0].IdleSeconds < 3*3600+5*60 {
		t.Errorf("GPU 0 holders %+v", h)
	}
	if g1.Holders == nil || len(g1.Holders) != 0 || len(g2.Holders) != 2 || !g2.Holders[0].InUse || g2.Holders[1].IdleSeconds != nil {
		t.Errorf("holders: GPU 1 %+v, GPU 2 %+v", g1.Holders, g2.Holders)
	}
	for _, f := range []string{`"holders"`, `"in_use"`, `"idle_seconds"`, `"mode"`, `"memory_total_bytes"`, `"utilization_percent"`, `"temperature_celsius"`, `"health_reason"`, `"container_id"`, `"driver_version"`} {
		if !strings.Contains(out, f) {
			t.Errorf("field %s missing:\n%s", f, out)
		}
	}
	if strings.Contains(strings.Split(out, `"index": 1`)[1], `"utilization_percent"`) {
		t.Errorf("an unknown utilisation is in the JSON as a value:\n%s", out)
	}

	code, out, _ = runAdmin(t, cmdGPUs, "--socket", sock)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if code != 0 || len(lines) != 5 || strings.Join(strings.Fields(lines[0]), " ") != "INDEX UUID NAME MEMORY UTIL TEMP HEALTH HOLDER IDLE PROCESSES" {
		t.Fatalf("table:\n%s", out)
	}
	if f := strings.Fields(lines[1]); len(f) < 9 || f[0] != "0" || f[1] != "GPU-aaaa" || f[4] != "2.5/40.0GiB" || f[5] != "87%" || f[6] != "61C" || f[7] != "healthy" {
		t.Fatalf("row %q", lines[1])
	}
	if f := strings.Fields(lines[1]); len(f) < 11 || f[8] != "sygaldry-zephyr-bob(user=bob,project=zephyr,exclusive)" || f[9] != "3h05m" {
		t.Errorf("holder: %q", lines[1])
	}
	if !strings.HasSuffix(lines[1], " 4242(sygaldry-zephyr-alice),77(container 4f1c2b3a4d5e),9") {
		t.Errorf("processes: %q", lines[1])
	}
	if f := strings.Fields(lines[2]); f[4] != "0.0/40.0GiB" || f[5] != "-" || f[6] != "-" || f[7] != "unhealthy" || !strings.Contains(lines[2], "(XID 79 at 2026-12-01T10:00:00Z)") || f[len(f)-1] != "-" {
		t.Fatalf("row %q", lines[2])
	}
	if f := strings.Fields(lines[2]); strings.Join(f[len(f)-3:], " ") != "- - -" {
		t.Errorf("a GPU without holder: %q", lines[2])
	}
	if !strings.Contains(lines[3], " sygaldry-mist-alice(user=alice,project=mist,shared),sygaldry-mist-carol(user=carol,project=mist,shared)  in use,? ") {
		t.Errorf("shared holders: %q", lines[3])
	}
	if lines[4] != "driver 550.54.15" {
		t.Errorf("driver line %q", lines[4])
	}
}

// A host without the NVIDIA driver: one plain line, exit 0, in the table
// form; the JSON says available false with the same message.
func TestGPUsNone(t *testing.T) {
	sock := startGPUAdmin(t, staticGPUs{api.GPUReport{Message: "no NVIDIA GPUs on this host (NVML: ERROR_LIBRARY_NOT_FOUND)"}})
	code, out, errs := runAdmin(t, cmdGPUs, "--socket", sock)
	if code != 0 || out != "no NVIDIA GPUs on this host (NVML: ERROR_LIBRARY_NOT_FOUND)\n" || errs != "" {
		t.Fatalf("exit %d, out %q, err %q", code, out, errs)
	}
	code, out, _ = runAdmin(t, cmdGPUs, "--socket", sock, "--json")
	var rep api.GPUReport
	if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil || rep.Available || !strings.HasPrefix(rep.Message, "no NVIDIA GPUs on this host") || rep.GPUs == nil {
		t.Fatalf("exit %d %v: %s", code, err, out)
	}
}

func TestGPUsWithoutInventory(t *testing.T) {
	sock := startGPUAdmin(t, nil)
	code, _, errs := runAdmin(t, cmdGPUs, "--socket", sock)
	if code != 1 || !strings.Contains(errs, "does not report GPUs") {
		t.Fatalf("exit %d %q", code, errs)
	}
}

// A holder that lost its GPUs is marked in its row and named in a warning
// under the table, and --json says nvml_lost; a container made before
// leases shows as an "unknown-lease" holder with its own warning. Each container
// is named once even when it holds several GPUs.
func TestGPUsLostAndUnknownHolders(t *testing.T) {
	sock := startGPUAdminLeases(t, staticGPUs{api.GPUReport{Available: true, GPUs: []api.GPUInfo{
		{Index: 0, UUID: "GPU-aaaa", Name: "A100", Health: "healthy"},
		{Index: 1, UUID: "GPU-bbbb", Name: "A100", Health: "healthy"},
		{Index: 2, UUID: "GPU-cccc", Name: "A100", Health: "healthy"},
	}}}, staticLeases{
		{Container: "sygaldry-zephyr-bob", User: "bob", Project: "zephyr", Mode: "exclusive", UUIDs: []string{"GPU-aaaa", "GPU-bbbb"}, InUse: true, NVMLLost: true},
		{Container: "sygaldry-mist-old", User: "old", Project: "mist", Mode: "unknown", UUIDs: []string{"GPU-cccc"}},
	})
	code, out, errs := runAdmin(t, cmdGPUs, "--socket", sock, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var rep api.GPUReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.GPUs) != 3 {
		t.Fatalf("%v: %s", err, out)
	}
	if h := rep.GPUs[0].Holders; len(h) != 1 || !h[0].NVMLLost {
		t.Errorf("GPU 0 holders %+v, want nvml_lost", h)
	}
	if h := rep.GPUs[2].Holders; len(h) != 1 || h[0].NVMLLost || h[0].Mode != "unknown" {
		t.Errorf("GPU 2 holders %+v, want mode unknown", h)
	}
	if !strings.Contains(out, `"nvml_lost": true`) {
		t.Errorf("no nvml_lost field:\n%s", out)
	}

	code, out, _ = runAdmin(t, cmdGPUs, "--socket", sock)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if code != 0 || len(lines) != 6 {
		t.Fatalf("table:\n%s", out)
	}
	for _, i := range []int{1, 2} {
		if !strings.Contains(lines[i], " sygaldry-zephyr-bob(user=bob,project=zephyr,exclusive,NVML LOST)  in use ") {
			t.Errorf("row %d: %q", i, lines[i])
		}
	}
	if f := strings.Fields(lines[3]); len(f) != 10 || f[7] != "sygaldry-mist-old(user=old,project=mist,unknown-lease)" || f[8] != "?" {
		t.Errorf("row 3: %q", lines[3])
	}
	if !strings.HasPrefix(lines[4], "warning: sygaldry-zephyr-bob lost access to its GPUs (\"Failed to initialize NVML: Unknown Error\"") ||
		!strings.Contains(lines[4], "recreated") {
		t.Errorf("warning line %q", lines[4])
	}
	if !strings.HasPrefix(lines[5], "warning: sygaldry-mist-old was made before GPU leases") {
		t.Errorf("warning line %q", lines[5])
	}
}
