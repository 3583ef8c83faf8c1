package gpu

import (
	"context"
	"fmt"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// applicationXIDs are the XIDs that mean a program on the GPU faulted, not
// the GPU: NVIDIA's Kubernetes device plugin ignores the same ones
// (internal/rm/health.go), and so do we. Every other XID that NVML reports
// as a critical error (EventTypeXidCriticalError) marks the GPU unhealthy:
// 48 (double-bit ECC), 63/64 (row remapping), 74 (NVLink), 79 (fallen off
// the bus), 92 (high single-bit ECC rate), 94/95 (contained and
// uncontained ECC), 119/120 (GSP) and the rest.
//
// Unhealthy is sticky until the gateway restarts: a GPU that went bad needs
// an admin (and usually a reset) before it is trusted again.
var applicationXIDs = map[uint64]string{
	13:  "graphics engine exception",
	31:  "GPU memory page fault",
	43:  "GPU stopped processing",
	45:  "preemptive cleanup, due to previous errors",
	68:  "video processor exception",
	109: "context switch timeout",
}

// Critical tells whether an XID marks a GPU unhealthy.
func Critical(xid uint64) bool {
	_, app := applicationXIDs[xid]
	return !app
}

func (inv *Inventory) unhealthy(uuid string) (string, bool) {
	inv.healthMu.Lock()
	defer inv.healthMu.Unlock()
	why, bad := inv.health[uuid]
	return why, bad
}

func (inv *Inventory) markUnhealthy(uuid, why string) {
	inv.healthMu.Lock()
	_, already := inv.health[uuid]
	if !already {
		inv.health[uuid] = why
	}
	inv.healthMu.Unlock()
	if !already {
		inv.log.Error("GPU marked unhealthy", "uuid", uuid, "reason", why)
	}
}

// Watch marks GPUs unhealthy from their XID events until ctx ends or the
// inventory is closed. Each wait for an event is bounded by
// Options.WaitTimeout, so cancelling ctx ends Watch within that time. It
// returns nil when stopped, or the error that kept it from watching
// (Snapshot.Err's when NVML is absent; an event set NVML refuses).
func (inv *Inventory) Watch(ctx context.Context) error {
	if err := inv.acquire(); err != nil {
		return err
	}
	inv.watchers.Add(1)
	inv.mu.RUnlock()
	defer inv.watchers.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(inv.stopCtx, cancel)
	defer stop()

	set, byUUID, err := inv.register()
	if err != nil {
		return err
	}
	defer set.Free()
	inv.log.Info("watching GPU health", "gpus", len(byUUID))

	for ctx.Err() == nil {
		ev, ret := set.Wait(uint32(inv.wait / time.Millisecond))
		switch ret {
		case nvml.SUCCESS:
			inv.event(ev, byUUID)
		case nvml.ERROR_TIMEOUT:
		case nvml.ERROR_GPU_IS_LOST:
			// NVML cannot say which one: every GPU is suspect.
			for uuid := range byUUID {
				inv.markUnhealthy(uuid, "NVML lost a GPU while waiting for events (ERROR_GPU_IS_LOST)")
			}
			pause(ctx, inv.wait)
		default:
			// Not a GPU fault: say so and wait before the next try, so a
			// broken event set costs one line per wait, not a busy loop.
			inv.log.Warn("waiting for GPU events", "err", errorName(ret))
			pause(ctx, inv.wait)
		}
	}
	return nil
}

// register makes an event set with every GPU's XID critical errors in it.
// A GPU that cannot report them (too old) is watched by nobody and says so
// in the log; it stays healthy.
func (inv *Inventory) register() (nvml.EventSet, map[string]int, error) {
	set, ret := inv.lib.EventSetCreate()
	if ret != nvml.SUCCESS {
		return nil, nil, fmt.Errorf("NVML event set: %s", errorName(ret))
	}
	n, ret := inv.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		set.Free()
		return nil, nil, fmt.Errorf("NVML cannot count the GPUs: %s", errorName(ret))
	}
	byUUID := map[string]int{}
	for i := range n {
		h, ret := inv.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			inv.log.Warn("GPU not watched", "index", i, "err", errorName(ret))
			continue
		}
		uuid, ret := h.GetUUID()
		if ret != nvml.SUCCESS {
			inv.log.Warn("GPU not watched", "index", i, "err", errorName(ret))
			continue
		}
		if ret := h.RegisterEvents(nvml.EventTypeXidCriticalError, set); ret != nvml.SUCCESS {
			inv.log.Warn("GPU health not watched: the driver reports no XID events for it", "index", i, "uuid", uuid, "err", errorName(ret))
			continue
		}
		byUUID[uuid] = i
	}
	return set, byUUID, nil
}

// event handles one NVML event.
func (inv *Inventory) event(ev nvml.EventData, byUUID map[string]int) {
	if ev.EventType != nvml.EventTypeXidCriticalError {
		return
	}
	xid := ev.EventData
	if ev.Device == nil {
		return
	}
	uuid, ret := ev.Device.GetUUID()
	if ret != nvml.SUCCESS {
		inv.log.Warn("XID event from a GPU NVML cannot name", "xid", xid, "err", errorName(ret))
		return
	}
	if _, ours := byUUID[uuid]; !ours {
		return
	}
	if !Critical(xid) {
		inv.log.Info("GPU XID from an application, GPU still healthy", "uuid", uuid, "xid", xid, "meaning", applicationXIDs[xid])
		return
	}
	inv.markUnhealthy(uuid, fmt.Sprintf("XID %d at %s", xid, time.Now().UTC().Format(time.RFC3339)))
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
