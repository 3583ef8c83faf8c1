//go:build cgo

package workspace

import (
	"errors"

	"github.com/sygaldry/sygaldry/gpu"
)

// NVMLInventory adapts the gateway's NVML inventory to the lease table. It is
// built with cgo only (the gpu package loads NVML with dlopen), so the rest
// of this package, and sygctl without cgo, do not need it.
func NVMLInventory(inv *gpu.Inventory) GPUInventory { return nvmlInventory{inv} }

type nvmlInventory struct{ inv *gpu.Inventory }

func (n nvmlInventory) GPUs() ([]GPU, error) {
	snap := n.inv.Snapshot()
	if snap.Err != nil {
		if errors.Is(snap.Err, gpu.ErrNoGPUs) {
			return nil, errors.Join(ErrNoHostGPUs, snap.Err)
		}
		return nil, snap.Err
	}
	out := make([]GPU, 0, len(snap.Devices))
	for _, d := range snap.Devices {
		g := GPU{UUID: d.UUID, Index: d.Index, Healthy: d.Health == gpu.Healthy && d.UUID != ""}
		if d.Utilization != nil {
			g.Utilization = *d.Utilization
		}
		if d.MemoryUsed != nil {
			g.MemoryUsed = *d.MemoryUsed
		}
		out = append(out, g)
	}
	return out, nil
}
