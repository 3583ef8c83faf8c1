package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"

	"github.com/sygaldry/sygaldry/admin"
	"github.com/sygaldry/sygaldry/admin/api"
	"github.com/sygaldry/sygaldry/admin/client"
	"github.com/sygaldry/sygaldry/gpu"
	"github.com/sygaldry/sygaldry/internal/testenv"
	"github.com/sygaldry/sygaldry/workspace"
)

type listedContainers []api.ContainerInfo

func (l listedContainers) List(context.Context) ([]api.ContainerInfo, error) { return l, nil }

// GET /v1/containers names each container's GPU processes as the inventory
// reports them (NVML's mock here: the cgroup of PID 10 places it in alice's
// container), with the command of the job behind the PID.
func TestContainersShowGPUProcesses(t *testing.T) {
	const alice = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	proc := t.TempDir()
	os.MkdirAll(filepath.Join(proc, "10"), 0o755)
	os.WriteFile(filepath.Join(proc, "10", "cgroup"), []byte("0::/system.slice/docker-"+alice+".scope\n"), 0o644)
	s := dgxa100.New()
	for i, d := range s.Devices {
		dev := d.(*dgxa100.Device)
		dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{}, nvml.SUCCESS }
		dev.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 30, nvml.SUCCESS }
		dev.GetGraphicsRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.SUCCESS }
		dev.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
			if i == 2 {
				return []nvml.ProcessInfo{{Pid: 10, UsedGpuMemory: 5 << 30}}, nvml.SUCCESS
			}
			return nil, nvml.SUCCESS
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	inv := gpu.Open(gpu.Options{Library: s, ProcRoot: proc, Logger: log})
	defer inv.Close()
	gpus := adminGPUs{inv: inv, log: log, list: func(context.Context) ([]workspace.Info, error) {
		return []workspace.Info{{ID: alice, Name: "sygaldry-zephyr-alice", Project: "zephyr", User: "alice"}}, nil
	}}
	srv := &admin.Server{GPUs: gpus, Logger: log, Containers: listedContainers{
		{Name: "sygaldry-zephyr-alice", State: "running", Jobs: []api.ContainerJob{{PID: 10, Command: "python3 train.py"}},
			Stop: api.ContainerStop{Status: api.StopPostponed}},
		{Name: "sygaldry-zephyr-bob", State: "running", Stop: api.ContainerStop{Status: api.StopScheduled}},
	}}
	sock := filepath.Join(testenv.ShortTempDir(t), "admin.sock")
	l, err := admin.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	defer func() { srv.Close(); <-done }()

	list, err := client.New(sock).Containers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	uuid, _ := s.Devices[2].GetUUID()
	if len(list) != 2 || len(list[0].GPUProcesses) != 1 || len(list[1].GPUProcesses) != 0 {
		t.Fatalf("containers %+v", list)
	}
	g := list[0].GPUProcesses[0]
	if g.GPU != 2 || g.UUID != uuid || g.PID != 10 || g.Command != "python3 train.py" || g.UsedMemory == nil || *g.UsedMemory != 5<<30 {
		t.Errorf("GPU process %+v", g)
	}
}
