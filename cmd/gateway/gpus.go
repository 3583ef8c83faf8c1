package main

import (
	"context"
	"github.com/sygaldry/sygaldry/admin/api"
	"log/slog"
	"os"

	"github.com/sygaldry/sygaldry/admin"
	"github.com/sygaldry/sygaldry/gpu"
	"github.com/sygaldry/sygaldry/workspace"
)

// nvmlLibraryEnv names the NVML shared library to load instead of the
// loader's libnvidia-ml.so.1: for a driver installed off the loader's path,
// and for tests that need a host without one.
const nvmlLibraryEnv = "SYGALDRY_NVML_LIBRARY"

// openGPUs initialises NVML once. A host without NVIDIA's driver or library
// gets one line in the log and a gateway that runs on without GPUs.
func openGPUs(log *slog.Logger) *gpu.Inventory {
	inv := gpu.Open(gpu.Options{LibraryPath: os.Getenv(nvmlLibraryEnv), Logger: log})
	if err := inv.Err(); err != nil {
		log.Warn("running without GPUs", "reason", err.Error())
		return inv
	}
	snap := inv.Snapshot()
	if snap.Err != nil {
		log.Warn("running without GPUs", "reason", snap.Err.Error())
		return inv
	}
	log.Info("GPUs found", "count", len(snap.Devices), "driver", snap.Driver)
	return inv
}

// adminGPUs serves GET /v1/gpus from the inventory, naming the containers
// the gateway manages that processes run in.
type adminGPUs struct {
	inv  *gpu.Inventory
	list func(context.Context) ([]workspace.Info, error)
	log  *slog.Logger
}

var _ admin.GPUs = adminGPUs{}

func (a adminGPUs) GPUs(ctx context.Context) api.GPUReport {
	snap := a.inv.Snapshot()
	if snap.Err != nil {
		return api.GPUReport{Message: snap.Err.Error(), Driver: snap.Driver, GPUs: []api.GPUInfo{}}
	}
	rep := api.GPUReport{Available: true, Driver: snap.Driver, GPUs: make([]api.GPUInfo, 0, len(snap.Devices))}
	byID := a.containers(ctx, snap)
	for _, d := range snap.Devices {
		g := api.GPUInfo{
			Index: d.Index, UUID: d.UUID, Name: d.Name,
			MemoryTotal: d.MemoryTotal, MemoryUsed: d.MemoryUsed,
			Utilization: d.Utilization, Temperature: d.Temperature, MIGMode: d.MIGMode,
			Health: string(d.Health), HealthReason: d.HealthReason,
			Processes: make([]api.GPUProcess, 0, len(d.Processes)), Unknown: d.Unknown,
		}
		for _, p := range d.Processes {
			gp := api.GPUProcess{PID: p.PID, UsedMemory: p.UsedMemory, ContainerID: p.ContainerID}
			if c, ok := byID[p.ContainerID]; ok && p.ContainerID != "" {
				gp.Container, gp.Project, gp.User = c.Name, c.Project, c.User
			}
			g.Processes = append(g.Processes, gp)
		}
		rep.GPUs = append(rep.GPUs, g)
	}
	return rep
}

// containers maps container IDs to the managed containers, asking the
// engine only when some GPU process runs in a container. An engine that
// does not answer costs the names, not the report.
func (a adminGPUs) containers(ctx context.Context, snap gpu.Snapshot) map[string]workspace.Info {
	need := false
	for _, d := range snap.Devices {
		for _, p := range d.Processes {
			need = need || p.ContainerID != ""
		}
	}
	if !need || a.list == nil {
		return nil
	}
	list, err := a.list(ctx)
	if err != nil {
		a.log.Warn("GPU processes without container names: cannot list containers", "err", err)
		return nil
	}
	byID := make(map[string]workspace.Info, len(list))
	for _, c := range list {
		byID[c.ID] = c
	}
	return byID
}

// leaseTable is the container manager's GPU lease listing.
type leaseTable interface {
	GPULeases() []workspace.LeaseStatus
}

// leaseHolders feeds the GPU lease metrics from the container manager's
// lease table: one holder per container and GPU it leases.
func leaseHolders(m leaseTable) func() []gpu.LeaseHolder {
	return func() []gpu.LeaseHolder {
		var out []gpu.LeaseHolder
		for _, l := range m.GPULeases() {
			for _, u := range l.UUIDs {
				out = append(out, gpu.LeaseHolder{UUID: u, Project: l.Project})
			}
		}
		return out
	}
}
