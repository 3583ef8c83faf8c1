package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"

	"github.com/sygaldry/sygaldry/gpu"
	"github.com/sygaldry/sygaldry/workspace"
)

// GPU processes are named by the managed container their cgroup places
// them in; a process elsewhere keeps its bare container ID, and an engine
// that cannot list containers costs the names, not the report.
func TestAdminGPUsNamesContainers(t *testing.T) {
	const mine = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	const other = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	proc := t.TempDir()
	for pid, cg := range map[string]string{"10": "0::/system.slice/docker-" + mine + ".scope\n", "11": "0::/docker/" + other + "\n"} {
		os.MkdirAll(filepath.Join(proc, pid), 0o755)
		os.WriteFile(filepath.Join(proc, pid, "cgroup"), []byte(cg), 0o644)
	}
	s := dgxa100.New()
	for i, d := range s.Devices {
		dev := d.(*dgxa100.Device)
		dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{Gpu: 1}, nvml.SUCCESS }
		dev.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 30, nvml.SUCCESS }
		dev.GetGraphicsRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.SUCCESS }
		dev.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
			if i == 0 {
				return []nvml.ProcessInfo{{Pid: 10}, {Pid: 11}, {Pid: 12}}, nvml.SUCCESS
			}
			return nil, nvml.SUCCESS
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	inv := gpu.Open(gpu.Options{Library: s, ProcRoot: proc, Logger: log})
	defer inv.Close()
	listed := 0
	a := adminGPUs{inv: inv, log: log, list: func(context.Context) ([]workspace.Info, error) {
		listed++
		return []workspace.Info{{ID: mine, Name: "sygaldry-zephyr-alice", Project: "zephyr", User: "alice"}}, nil
	}}
	rep := a.GPUs(t.Context())
	if !rep.Available || len(rep.GPUs) != 8 || rep.GPUs[3].UUID != device3UUID(s) || *rep.GPUs[3].Utilization != 1 || rep.GPUs[3].Health != "healthy" {
		t.Fatalf("report %+v", rep)
	}
	ps := rep.GPUs[0].Processes
	if len(ps) != 3 || ps[0].Container != "sygaldry-zephyr-alice" || ps[0].Project != "zephyr" || ps[0].User != "alice" ||
		ps[1].ContainerID != other || ps[1].Container != "" || ps[2].ContainerID != "" || ps[2].Container != "" {
		t.Errorf("processes %+v", ps)
	}
	if listed != 1 {
		t.Errorf("containers listed %d times for one report", listed)
	}

	a.list = func(context.Context) ([]workspace.Info, error) { return nil, errors.New("engine down") }
	rep = a.GPUs(t.Context())
	if !rep.Available || rep.GPUs[0].Processes[0].ContainerID != mine || rep.GPUs[0].Processes[0].Container != "" {
		t.Errorf("with the engine down: %+v", rep.GPUs[0].Processes)
	}

	// No process in a container: the engine is not asked.
	s.Devices[0].(*dgxa100.Device).GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.SUCCESS }
	listed = 0
	a.list = func(context.Context) ([]workspace.Info, error) { listed++; return nil, nil }
	a.GPUs(t.Context())
	if listed != 0 {
		t.Errorf("containers listed with no GPU process in one")
	}
}

func device3UUID(s *dgxa100.Server) string { return s.Devices[3].(*dgxa100.Device).UUID }

// Without NVML the report says why, with no GPUs.
func TestAdminGPUsWithoutNVML(t *testing.T) {
	s := dgxa100.New()
	s.InitFunc = func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }
	inv := gpu.Open(gpu.Options{Library: s, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer inv.Close()
	rep := adminGPUs{inv: inv}.GPUs(t.Context())
	if rep.Available || rep.GPUs == nil || len(rep.GPUs) != 0 || !errors.Is(inv.Err(), gpu.ErrNoGPUs) || rep.Message != inv.Err().Error() {
		t.Errorf("report %+v", rep)
	}
}

type fakeLeaseTable []workspace.LeaseStatus

func (f fakeLeaseTable) GPULeases() []workspace.LeaseStatus { return f }

// The lease metrics get one holder per container and GPU it leases.
func TestLeaseHolders(t *testing.T) {
	got := leaseHolders(fakeLeaseTable{
		{Lease: workspace.Lease{Container: "sygaldry-zephyr-bob", Project: "zephyr", UUIDs: []string{"GPU-0", "GPU-1"}}},
		{Lease: workspace.Lease{Container: "sygaldry-mist-alice", Project: "mist", UUIDs: []string{"GPU-1"}}},
	})()
	want := []gpu.LeaseHolder{{UUID: "GPU-0", Project: "zephyr"}, {UUID: "GPU-1", Project: "zephyr"}, {UUID: "GPU-1", Project: "mist"}}
	if !slices.Equal(got, want) {
		t.Errorf("holders = %v, want %v", got, want)
	}
}
