package gpu

import (
	"context"
	"encoding/csv"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRealNVML checks the inventory against the real driver: what
// `nvidia-smi` reports (index, UUID, name, memory total) and a few seconds
// of the health watcher. It runs only with SYGALDRY_GPU_CHECK=1, on a GPU
// machine (`make gpu-check` builds it for one); SYGALDRY_GPU_CHECK_WATCH
// sets how long to watch (a Go duration, default 5s).
func TestRealNVML(t *testing.T) {
	if os.Getenv("SYGALDRY_GPU_CHECK") != "1" {
		t.Skip("needs a GPU machine: set SYGALDRY_GPU_CHECK=1 (see make gpu-check)")
	}
	inv := Open(Options{LibraryPath: os.Getenv("SYGALDRY_NVML_LIBRARY"), WaitTimeout: time.Second})
	defer func() {
		if err := inv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	if err := inv.Err(); err != nil {
		t.Fatalf("NVML: %v", err)
	}
	snap := inv.Snapshot()
	if snap.Err != nil {
		t.Fatalf("snapshot: %v", snap.Err)
	}
	t.Logf("driver %s, %d GPUs", snap.Driver, len(snap.Devices))
	for _, d := range snap.Devices {
		t.Logf("GPU %d %s %q memory %s/%s util %s temp %s mig %q health %s processes %d unknown %q",
			d.Index, d.UUID, d.Name, show(d.MemoryUsed), show(d.MemoryTotal), show(d.Utilization), show(d.Temperature),
			d.MIGMode, d.Health, len(d.Processes), d.Unknown)
	}

	out, err := exec.Command("nvidia-smi", "--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits").Output()
	if err != nil {
		t.Fatalf("nvidia-smi: %v", err)
	}
	r := csv.NewReader(strings.NewReader(string(out)))
	r.TrimLeadingSpace = true
	rows, err := r.ReadAll()
	if err != nil {
		t.Fatalf("nvidia-smi output %q: %v", out, err)
	}
	if len(rows) != len(snap.Devices) {
		t.Fatalf("nvidia-smi lists %d GPUs, NVML through us %d", len(rows), len(snap.Devices))
	}
	for i, row := range rows {
		if len(row) != 4 {
			t.Errorf("nvidia-smi row %q", row)
			continue
		}
		d := snap.Devices[i]
		if idx, _ := strconv.Atoi(row[0]); idx != d.Index {
			t.Errorf("row %d: nvidia-smi index %s, ours %d", i, row[0], d.Index)
		}
		if row[1] != d.UUID || row[2] != d.Name {
			t.Errorf("GPU %d: nvidia-smi %s %q, ours %s %q", d.Index, row[1], row[2], d.UUID, d.Name)
		}
		mib, err := strconv.ParseUint(row[3], 10, 64)
		if err != nil || d.MemoryTotal == nil || *d.MemoryTotal>>20 != mib {
			t.Errorf("GPU %d: nvidia-smi memory.total %s MiB, ours %s bytes", d.Index, row[3], show(d.MemoryTotal))
		}
	}

	watch := 5 * time.Second
	if v := os.Getenv("SYGALDRY_GPU_CHECK_WATCH"); v != "" {
		if watch, err = time.ParseDuration(v); err != nil {
			t.Fatalf("SYGALDRY_GPU_CHECK_WATCH: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), watch)
	defer cancel()
	start := time.Now()
	if err := inv.Watch(ctx); err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if took := time.Since(start); took > watch+3*time.Second {
		t.Errorf("Watch took %v to stop after %v", took, watch)
	}
	for _, d := range inv.Snapshot().Devices {
		if d.Health != Healthy {
			t.Errorf("GPU %d %s: %s (%s)", d.Index, d.UUID, d.Health, d.HealthReason)
		}
	}
}

func show[T uint32 | uint64](p *T) string {
	if p == nil {
		return "?"
	}
	return strconv.FormatUint(uint64(*p), 10)
}
