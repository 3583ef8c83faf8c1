package gpu

import (
	"os"
	"regexp"
	"testing"

	"github.com/sygaldry/sygaldry/internal/gpuprobe"
)

// TestRealDeviceProbe runs the agent's GPU probe (internal/gpuprobe) on a
// GPU machine's own /dev, where nothing denies the NVIDIA devices: it must
// find the control device and a node per GPU NVML sees, every one "ok".
// This is the half of the lost-access check the dev machines cannot show
// (they have no NVIDIA driver nodes). SYGALDRY_GPU_CHECK=1 only, as
// TestRealNVML; `make gpu-check` runs it.
func TestRealDeviceProbe(t *testing.T) {
	if os.Getenv("SYGALDRY_GPU_CHECK") != "1" {
		t.Skip("needs a GPU machine: set SYGALDRY_GPU_CHECK=1 (see make gpu-check)")
	}
	r := gpuprobe.Probe()
	t.Logf("probe: %+v", r.Devices)
	perGPU := regexp.MustCompile(`^/dev/nvidia[0-9]+$`)
	ctl, gpus := false, 0
	for _, d := range r.Devices {
		if d.State != gpuprobe.OK {
			t.Errorf("%s: %s, want ok", d.Path, d.State)
		}
		ctl = ctl || d.Path == "/dev/nvidiactl"
		if perGPU.MatchString(d.Path) {
			gpus++
		}
	}
	inv := Open(Options{LibraryPath: os.Getenv("SYGALDRY_NVML_LIBRARY")})
	defer inv.Close()
	snap := inv.Snapshot()
	if snap.Err != nil {
		t.Fatalf("NVML: %v", snap.Err)
	}
	if !ctl || gpus < len(snap.Devices) {
		t.Errorf("found nvidiactl %v and %d GPU nodes; NVML sees %d GPUs", ctl, gpus, len(snap.Devices))
	}
}
