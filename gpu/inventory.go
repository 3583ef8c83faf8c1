package gpu

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Snapshot reads every GPU now. A failed Init or a closed inventory gives
// a Snapshot with Err set and no NVML call; a GPU whose handle NVML refuses
// is listed by its index with the reason in Unknown.
func (inv *Inventory) Snapshot() Snapshot {
	if err := inv.acquire(); err != nil {
		return Snapshot{Err: err}
	}
	defer inv.mu.RUnlock()

	var snap Snapshot
	if v, ret := inv.lib.SystemGetDriverVersion(); ret == nvml.SUCCESS {
		snap.Driver = v
	}
	n, ret := inv.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		snap.Err = fmt.Errorf("NVML cannot count the GPUs: %s", errorName(ret))
		return snap
	}
	if n == 0 {
		snap.Err = ErrNoGPUs
		return snap
	}
	snap.Devices = make([]Device, 0, n)
	for i := range n {
		snap.Devices = append(snap.Devices, inv.device(i))
	}
	return snap
}

// device reads GPU i. Each field is read on its own, so one function the
// driver lacks costs that field only.
func (inv *Inventory) device(i int) Device {
	d := Device{Index: i, Health: Healthy, Processes: []Process{}}
	lost := false
	unknown := func(field string, ret nvml.Return) {
		d.Unknown = append(d.Unknown, field+": "+errorName(ret))
		lost = lost || ret == nvml.ERROR_GPU_IS_LOST
	}
	h, ret := inv.lib.DeviceGetHandleByIndex(i)
	if ret != nvml.SUCCESS {
		unknown("device", ret)
		return d
	}
	if idx, ret := h.GetIndex(); ret == nvml.SUCCESS {
		d.Index = idx
	}
	if d.UUID, ret = h.GetUUID(); ret != nvml.SUCCESS {
		unknown("uuid", ret)
	}
	if d.Name, ret = h.GetName(); ret != nvml.SUCCESS {
		unknown("name", ret)
	}
	if m, ret := h.GetMemoryInfo(); ret == nvml.SUCCESS {
		d.MemoryTotal, d.MemoryUsed = &m.Total, &m.Used
	} else {
		unknown("memory", ret)
	}
	if u, ret := h.GetUtilizationRates(); ret == nvml.SUCCESS {
		d.Utilization = &u.Gpu
	} else {
		unknown("utilization", ret)
	}
	if t, ret := h.GetTemperature(nvml.TEMPERATURE_GPU); ret == nvml.SUCCESS {
		d.Temperature = &t
	} else {
		unknown("temperature", ret)
	}
	switch current, _, ret := h.GetMigMode(); {
	case ret == nvml.SUCCESS && current == nvml.DEVICE_MIG_ENABLE:
		d.MIGMode = "enabled"
	case ret == nvml.SUCCESS:
		d.MIGMode = "disabled"
	case ret == nvml.ERROR_NOT_SUPPORTED:
		// A GPU without MIG (anything before Ampere): nothing unknown.
	default:
		unknown("mig_mode", ret)
	}
	d.Processes = inv.processes(h, func(kind string, ret nvml.Return) { unknown(kind, ret) })
	if lost && d.UUID != "" {
		// The GPU fell off the bus (XID 79 usually comes with it): it stays
		// unhealthy even if it answers again.
		inv.markUnhealthy(d.UUID, "NVML: ERROR_GPU_IS_LOST at "+time.Now().UTC().Format(time.RFC3339))
	}
	if why, bad := inv.unhealthy(d.UUID); bad {
		d.Health, d.HealthReason = Unhealthy, why
	}
	return d
}

// processes lists the compute and graphics processes on a GPU, once each,
// by pid.
func (inv *Inventory) processes(h nvml.Device, unknown func(string, nvml.Return)) []Process {
	out := []Process{}
	seen := map[uint32]bool{}
	add := func(kind string, list []nvml.ProcessInfo, ret nvml.Return) {
		if ret != nvml.SUCCESS {
			unknown(kind, ret)
			return
		}
		for _, p := range list {
			if seen[p.Pid] {
				continue
			}
			seen[p.Pid] = true
			proc := Process{PID: p.Pid, ContainerID: containerOf(inv.procRoot, p.Pid)}
			// NVML reports "not available" (in a VM, or without the
			// right to see another user's process) as all ones.
			if p.UsedGpuMemory != 0 && p.UsedGpuMemory != ^uint64(0) {
				mem := p.UsedGpuMemory
				proc.UsedMemory = &mem
			}
			out = append(out, proc)
		}
	}
	list, ret := h.GetComputeRunningProcesses()
	add("compute_processes", list, ret)
	list, ret = h.GetGraphicsRunningProcesses()
	add("graphics_processes", list, ret)
	slices.SortFunc(out, func(a, b Process) int { return cmp.Compare(a.PID, b.PID) })
	return out
}
