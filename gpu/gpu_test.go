package gpu

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// machine is a DGX A100 mock with the functions the inventory reads that
// go-nvml's mock leaves unset: GPU i runs at 10*i+5 % and 40+i °C, with no
// processes.
func machine(t *testing.T) *dgxa100.Server {
	t.Helper()
	s := dgxa100.New()
	for i, d := range s.Devices {
		dev := d.(*dgxa100.Device)
		dev.MemoryInfo.Used = uint64(i+1) << 30
		dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: uint32(10*i + 5), Memory: 1}, nvml.SUCCESS
		}
		dev.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) {
			return uint32(40 + i), nvml.SUCCESS
		}
		dev.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.SUCCESS }
		dev.GetGraphicsRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.SUCCESS }
		dev.RegisterEventsFunc = func(uint64, nvml.EventSet) nvml.Return { return nvml.SUCCESS }
	}
	return s
}

func device(s *dgxa100.Server, i int) *dgxa100.Device { return s.Devices[i].(*dgxa100.Device) }

func open(t *testing.T, lib Library, procRoot string) *Inventory {
	t.Helper()
	inv := Open(Options{Library: lib, ProcRoot: procRoot, Logger: quiet})
	t.Cleanup(func() { inv.Close() })
	return inv
}

func TestInventoryFields(t *testing.T) {
	s := machine(t)
	device(s, 6).MigMode = nvml.DEVICE_MIG_ENABLE

	// GPU 2 runs a process in a container (pid 100, listed both as compute
	// and graphics) and one on the host (pid 200).
	const cid = "4f1c2b3a4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8"
	proc := t.TempDir()
	writeCgroup(t, proc, 100, "0::/system.slice/docker-"+cid+".scope\n")
	writeCgroup(t, proc, 200, "0::/user.slice/user-1000.slice/session-3.scope\n")
	device(s, 2).GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		return []nvml.ProcessInfo{{Pid: 200, UsedGpuMemory: 1 << 20}, {Pid: 100, UsedGpuMemory: 5 << 30}}, nvml.SUCCESS
	}
	device(s, 2).GetGraphicsRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		return []nvml.ProcessInfo{{Pid: 100, UsedGpuMemory: 5 << 30}}, nvml.SUCCESS
	}

	snap := open(t, s, proc).Snapshot()
	if snap.Err != nil || snap.Driver != "550.54.15" || len(snap.Devices) != 8 {
		t.Fatalf("snapshot: err %v, driver %q, %d GPUs", snap.Err, snap.Driver, len(snap.Devices))
	}
	for i, d := range snap.Devices {
		m := device(s, i)
		if d.Index != i || d.UUID != m.UUID || !strings.HasPrefix(d.UUID, "GPU-") || d.Name != m.Config.Name {
			t.Errorf("GPU %d: index %d uuid %q name %q; want %s %q", i, d.Index, d.UUID, d.Name, m.UUID, m.Config.Name)
		}
		if d.MemoryTotal == nil || *d.MemoryTotal != m.Config.MemoryMB<<20 || d.MemoryUsed == nil || *d.MemoryUsed != uint64(i+1)<<30 {
			t.Errorf("GPU %d memory: %v / %v", i, d.MemoryUsed, d.MemoryTotal)
		}
		if d.Utilization == nil || *d.Utilization != uint32(10*i+5) || d.Temperature == nil || *d.Temperature != uint32(40+i) {
			t.Errorf("GPU %d: utilisation %v temperature %v", i, d.Utilization, d.Temperature)
		}
		wantMIG := "disabled"
		if i == 6 {
			wantMIG = "enabled"
		}
		if d.MIGMode != wantMIG || d.Health != Healthy || len(d.Unknown) != 0 {
			t.Errorf("GPU %d: mig %q health %q unknown %q", i, d.MIGMode, d.Health, d.Unknown)
		}
		if i != 2 && len(d.Processes) != 0 {
			t.Errorf("GPU %d processes %+v", i, d.Processes)
		}
	}
	ps := snap.Devices[2].Processes
	if len(ps) != 2 || ps[0].PID != 100 || ps[0].ContainerID != cid || ps[0].UsedMemory == nil || *ps[0].UsedMemory != 5<<30 ||
		ps[1].PID != 200 || ps[1].ContainerID != "" {
		t.Errorf("GPU 2 processes %+v", ps)
	}
}

// An older driver lacks a function: that field is unknown and says why,
// everything else is still there.
func TestMissingFunction(t *testing.T) {
	s := machine(t)
	device(s, 3).GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) {
		return 0, nvml.ERROR_FUNCTION_NOT_FOUND
	}
	device(s, 4).GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
		return nvml.Utilization{}, nvml.ERROR_NOT_SUPPORTED
	}
	device(s, 5).GetGraphicsRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		return nil, nvml.ERROR_FUNCTION_NOT_FOUND
	}
	device(s, 5).GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		return []nvml.ProcessInfo{{Pid: 7}}, nvml.SUCCESS
	}
	snap := open(t, s, t.TempDir()).Snapshot()
	if snap.Err != nil || len(snap.Devices) != 8 {
		t.Fatalf("snapshot: %v, %d GPUs", snap.Err, len(snap.Devices))
	}
	d3, d4, d5 := snap.Devices[3], snap.Devices[4], snap.Devices[5]
	if d3.Temperature != nil || !slices.Equal(d3.Unknown, []string{"temperature: ERROR_FUNCTION_NOT_FOUND"}) {
		t.Errorf("GPU 3: temperature %v unknown %q", d3.Temperature, d3.Unknown)
	}
	if d3.Utilization == nil || d3.MemoryTotal == nil || d3.Name == "" || d3.UUID == "" {
		t.Errorf("GPU 3 lost more than its temperature: %+v", d3)
	}
	if d4.Utilization != nil || !slices.Equal(d4.Unknown, []string{"utilization: ERROR_NOT_SUPPORTED"}) || d4.Temperature == nil {
		t.Errorf("GPU 4: utilisation %v temperature %v unknown %q", d4.Utilization, d4.Temperature, d4.Unknown)
	}
	if len(d5.Processes) != 1 || d5.Processes[0].PID != 7 || !slices.Equal(d5.Unknown, []string{"graphics_processes: ERROR_FUNCTION_NOT_FOUND"}) {
		t.Errorf("GPU 5: processes %+v unknown %q", d5.Processes, d5.Unknown)
	}
	for _, d := range snap.Devices {
		if d.Index != 3 && d.Index != 4 && d.Index != 5 && len(d.Unknown) != 0 {
			t.Errorf("GPU %d unknown %q", d.Index, d.Unknown)
		}
	}
}

// A GPU that NVML says is lost while its fields are read is unhealthy, and
// stays so.
func TestLostWhileRead(t *testing.T) {
	s := machine(t)
	lost := true
	device(s, 2).GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) {
		if lost {
			return 0, nvml.ERROR_GPU_IS_LOST
		}
		return 50, nvml.SUCCESS
	}
	inv := open(t, s, t.TempDir())
	d := inv.Snapshot().Devices[2]
	if d.Health != Unhealthy || !strings.Contains(d.HealthReason, "ERROR_GPU_IS_LOST") {
		t.Errorf("GPU 2: %s %q", d.Health, d.HealthReason)
	}
	lost = false
	for _, d := range inv.Snapshot().Devices {
		if (d.Health == Unhealthy) != (d.Index == 2) {
			t.Errorf("GPU %d: %s", d.Index, d.Health)
		}
	}
}

// A GPU without MIG answers GetMigMode with NOT_SUPPORTED: no mode, and
// nothing unknown either.
func TestNoMIG(t *testing.T) {
	s := machine(t)
	device(s, 0).GetMigModeFunc = func() (int, int, nvml.Return) { return 0, 0, nvml.ERROR_NOT_SUPPORTED }
	d := open(t, s, t.TempDir()).Snapshot().Devices[0]
	if d.MIGMode != "" || len(d.Unknown) != 0 {
		t.Errorf("mig %q unknown %q", d.MIGMode, d.Unknown)
	}
}

// No driver, no library: "no NVIDIA GPUs on this host", and after the
// failed Init not one more NVML call, whatever is asked of the inventory.
func TestNoNVML(t *testing.T) {
	for _, tc := range []struct {
		ret    nvml.Return
		noGPUs bool
	}{
		{nvml.ERROR_LIBRARY_NOT_FOUND, true},
		{nvml.ERROR_DRIVER_NOT_LOADED, true},
		{nvml.ERROR_LIB_RM_VERSION_MISMATCH, false},
	} {
		t.Run(tc.ret.Error(), func(t *testing.T) {
			s := machine(t)
			s.InitFunc = func() nvml.Return { return tc.ret }
			s.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) {
				t.Error("event set after a failed Init")
				return nil, nvml.ERROR_UNKNOWN
			}
			inv := Open(Options{Library: s, Logger: quiet})
			snap := inv.Snapshot()
			if errors.Is(snap.Err, ErrNoGPUs) != tc.noGPUs || !errors.Is(inv.Err(), snap.Err) || len(snap.Devices) != 0 {
				t.Errorf("snapshot err %v (no GPUs: want %v), Err %v", snap.Err, tc.noGPUs, inv.Err())
			}
			if tc.noGPUs && !strings.HasPrefix(snap.Err.Error(), "no NVIDIA GPUs on this host") {
				t.Errorf("message %q", snap.Err)
			}
			if !strings.Contains(snap.Err.Error(), tc.ret.Error()) {
				t.Errorf("message %q does not name %s", snap.Err, tc.ret)
			}
			if err := inv.Watch(t.Context()); !errors.Is(err, inv.Err()) {
				t.Errorf("Watch: %v", err)
			}
			if err := inv.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			calls := map[string]int{
				"Init":                   len(s.InitCalls()),
				"Shutdown":               len(s.ShutdownCalls()),
				"SystemGetDriverVersion": len(s.SystemGetDriverVersionCalls()),
				"DeviceGetCount":         len(s.DeviceGetCountCalls()),
				"DeviceGetHandleByIndex": len(s.DeviceGetHandleByIndexCalls()),
				"EventSetCreate":         len(s.EventSetCreateCalls()),
			}
			for name, n := range calls {
				want := 0
				if name == "Init" {
					want = 1
				}
				if n != want {
					t.Errorf("%s called %d times, want %d", name, n, want)
				}
			}
		})
	}
}

// The real go-nvml, pointed at a library that is not there, is the same
// case: this is what a host without the driver sees.
func TestSystemLibraryMissing(t *testing.T) {
	inv := Open(Options{LibraryPath: filepath.Join(t.TempDir(), "libnvidia-ml.so.1"), Logger: quiet})
	defer inv.Close()
	if err := inv.Snapshot().Err; !errors.Is(err, ErrNoGPUs) || !strings.Contains(err.Error(), "ERROR_LIBRARY_NOT_FOUND") {
		t.Fatalf("snapshot err %v", err)
	}
}

// Init once at Open, Shutdown once at Close; a closed inventory calls
// nothing.
func TestInitShutdownOnce(t *testing.T) {
	s := dgxh100.New()
	for _, d := range s.Devices {
		dev := d.(*server.Device)
		dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{}, nvml.SUCCESS }
		dev.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 30, nvml.SUCCESS }
		dev.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.SUCCESS }
		dev.GetGraphicsRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.SUCCESS }
	}
	inv := Open(Options{Library: s, Logger: quiet})
	if snap := inv.Snapshot(); snap.Err != nil || len(snap.Devices) != 8 || !strings.Contains(snap.Devices[0].Name, "H100") {
		t.Fatalf("snapshot %v %d", snap.Err, len(snap.Devices))
	}
	inv.Snapshot()
	if err := inv.Close(); err != nil {
		t.Fatal(err)
	}
	inv.Close()
	counted := len(s.DeviceGetCountCalls())
	if snap := inv.Snapshot(); !errors.Is(snap.Err, ErrClosed) {
		t.Errorf("snapshot after Close: %v", snap.Err)
	}
	if n := len(s.DeviceGetCountCalls()); n != counted {
		t.Errorf("NVML called after Close")
	}
	if i, sd := len(s.InitCalls()), len(s.ShutdownCalls()); i != 1 || sd != 1 {
		t.Errorf("Init %d times, Shutdown %d times; want once each", i, sd)
	}
}

func TestContainerIDFromCgroup(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	const other = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	for _, tc := range []struct{ text, want string }{
		{"0::/system.slice/docker-" + id + ".scope\n", id},
		{"12:memory:/docker/" + id + "\n11:cpu:/docker/" + id + "\n", id},
		{"0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-" + id + ".scope", id},
		{"0::/docker/" + other + "/docker/" + id + "\n", id}, // nested: the innermost
		{"0::/user.slice/user-1000.slice/session-3.scope\n", ""},
		{"0::/docker/" + id[:63] + "\n", ""},
		{"0::/docker/" + strings.ToUpper(id) + "\n", ""},
		{"0::/docker/" + id[:60] + "xyzw\n", ""},
		{"garbage without colons " + id, ""},
		{"", ""},
	} {
		if got := ContainerIDFromCgroup(tc.text); got != tc.want {
			t.Errorf("ContainerIDFromCgroup(%q) = %q, want %q", tc.text, got, tc.want)
		}
	}
}

func writeCgroup(t *testing.T, root string, pid int, text string) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
