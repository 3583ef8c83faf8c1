package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/docker/docker/api/types/system"

	"github.com/sygaldry/sygaldry/internal/testenv"
)

// fakeEngine answers docker info with info, or fails with err.
type fakeEngine struct {
	info system.Info
	err  error
}

func (f fakeEngine) Info(context.Context) (system.Info, error) { return f.info, f.err }

var _ engineInfo = fakeEngine{}

const procVersion = `NVRM version: NVIDIA UNIX x86_64 Kernel Module  575.57.08  Sat May 24 07:21:04 UTC 2025
GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)
`

// zephyrDockerfile is the repository's Zephyr image Dockerfile.
func zephyrDockerfile() string {
	return filepath.Join(testenv.RepoRoot(), "container", "dev_container.dockerfile")
}

// gpuHost is a root with the driver loaded, NVML on a DGX A100 mock whose
// driver supports CUDA cuda, and an engine with the nvidia runtime.
func gpuHost(t *testing.T, cuda int) doctorEnv {
	t.Helper()
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "proc/driver/nvidia/version"), procVersion)
	m := dgxa100.New()
	// The inventory reads these, which go-nvml's mock leaves unset.
	for _, d := range m.Devices {
		dev := d.(*dgxa100.Device)
		dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{}, nvml.SUCCESS }
		dev.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 40, nvml.SUCCESS }
		dev.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.SUCCESS }
		dev.GetGraphicsRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.SUCCESS }
	}
	m.SystemGetCudaDriverVersionFunc = func() (int, nvml.Return) { return cuda, nvml.SUCCESS }
	return doctorEnv{
		root:       root,
		nvml:       m,
		engine:     fakeEngine{info: system.Info{ServerVersion: "28.5.2", Runtimes: map[string]system.RuntimeWithStatus{"runc": {}, "nvidia": {Runtime: system.Runtime{Path: "nvidia-container-runtime"}}}}},
		engineHost: "unix:///var/run/docker.sock",
		cdiDirs:    []string{},
		lookPath:   func(string) (string, error) { return "", exec.ErrNotFound },
		dockerfile: zephyrDockerfile(),
		gpuMissing: statusFail,
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// byCheck indexes results by check name, failing when one is missing.
func byCheck(t *testing.T, res []checkResult) map[string]checkResult {
	t.Helper()
	m := map[string]checkResult{}
	for _, r := range res {
		m[r.Check] = r
	}
	for _, c := range []string{"driver", "nvml", "cuda", "engine", "runtime"} {
		if _, ok := m[c]; !ok {
			t.Fatalf("no %s check in %+v", c, res)
		}
	}
	return m
}

func expect(t *testing.T, r checkResult, status string, detail ...string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("%s: status %s, want %s: %s", r.Check, r.Status, status, r.line())
	}
	for _, d := range detail {
		if !strings.Contains(r.line(), d) {
			t.Errorf("%s: %q lacks %q", r.Check, r.line(), d)
		}
	}
}

func TestDoctorGPUHostOK(t *testing.T) {
	res := byCheck(t, runDoctor(gpuHost(t, 12090)))
	expect(t, res["driver"], statusOK, "NVIDIA kernel driver 575.57.08 is loaded")
	expect(t, res["nvml"], statusOK, "NVML works: 8 GPU(s), driver 550.54.15")
	expect(t, res["cuda"], statusOK, "the driver supports CUDA 12.9, the image (dev_container.dockerfile) needs 12.9")
	expect(t, res["engine"], statusOK, "Docker engine 28.5.2 answers at unix:///var/run/docker.sock")
	expect(t, res["runtime"], statusOK, "the nvidia runtime is registered with the engine (nvidia-container-runtime)")

	// A newer driver is fine too.
	res = byCheck(t, runDoctor(gpuHost(t, 13000)))
	expect(t, res["cuda"], statusOK, "CUDA 13.0")
}

func TestDoctorCUDATooOld(t *testing.T) {
	// The DGX A100 mock's driver says CUDA 12.4.
	env := gpuHost(t, 12040)
	res := byCheck(t, runDoctor(env))
	expect(t, res["cuda"], statusFail, "the driver supports CUDA 12.4, the image (dev_container.dockerfile) needs 12.9",
		"; upgrade the NVIDIA driver to one that supports CUDA 12.9")

	// A driver too old to say its CUDA version.
	m := env.nvml.(*dgxa100.Server)
	m.SystemGetCudaDriverVersionFunc = func() (int, nvml.Return) { return 0, nvml.ERROR_FUNCTION_NOT_FOUND }
	res = byCheck(t, runDoctor(env))
	expect(t, res["cuda"], statusWarn, "NVML cannot say the CUDA driver version: ERROR_FUNCTION_NOT_FOUND")

	// An image whose Dockerfile names no CUDA version.
	env = gpuHost(t, 12090)
	env.dockerfile = filepath.Join(t.TempDir(), "Dockerfile")
	writeFile(t, env.dockerfile, "FROM debian:bookworm\n")
	res = byCheck(t, runDoctor(env))
	expect(t, res["cuda"], statusWarn, "the driver supports CUDA 12.9", "has no FROM nvidia/cuda:X.Y base image", "--dockerfile")
}

func TestRequiredCUDA(t *testing.T) {
	// The real Zephyr Dockerfile: nvidia/cuda:12.9.1-cudnn-devel-ubuntu24.04.
	if v, err := requiredCUDA(zephyrDockerfile()); v != 12090 || err != nil {
		t.Fatalf("Zephyr Dockerfile: %d %v", v, err)
	}
	dir := t.TempDir()
	for text, want := range map[string]int{
		"# FROM nvidia/cuda:11.0\nARG X=1\nFROM nvidia/cuda:12.4.1-base-ubuntu22.04 AS build\n": 12040,
		"from --platform=linux/amd64 docker.io/nvidia/cuda:13.0-runtime\n":                      13000,
		"FROM nvidia/cuda:12.10.0-devel\n":                                                      12100,
		"FROM ubuntu:24.04\n":                                                                   0,
		"FROM nvidia/cuda:latest\n":                                                             0,
	} {
		p := filepath.Join(dir, "Dockerfile")
		writeFile(t, p, text)
		v, err := requiredCUDA(p)
		if v != want || (want == 0) != (err != nil) {
			t.Errorf("%q: %d %v, want %d", text, v, err, want)
		}
	}
	if _, err := requiredCUDA(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "cannot read the image's Dockerfile") {
		t.Errorf("missing file: %v", err)
	}
	if cudaString(12090) != "12.9" || cudaString(13010) != "13.1" {
		t.Error(cudaString(12090), cudaString(13010))
	}
}

func TestDoctorDriver(t *testing.T) {
	env := gpuHost(t, 12090)
	// The open kernel module's line.
	writeFile(t, filepath.Join(env.root, "proc/driver/nvidia/version"),
		"NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build  (dvs-builder@U16-I3-B03-4-3)  Thu Jan 23 22:52:43 UTC 2025\n")
	expect(t, checkDriver(env), statusOK, "NVIDIA kernel driver 570.86.15 is loaded")

	// No /proc file, but the module is in /sys.
	os.RemoveAll(filepath.Join(env.root, "proc"))
	writeFile(t, filepath.Join(env.root, "sys/module/nvidia/version"), "550.54.15\n")
	expect(t, checkDriver(env), statusOK, "NVIDIA kernel driver 550.54.15 is loaded")

	// Neither: not loaded.
	os.RemoveAll(filepath.Join(env.root, "sys"))
	res := byCheck(t, runDoctor(env))
	expect(t, res["driver"], statusFail, "the NVIDIA kernel driver is not loaded", "; install the NVIDIA driver")
	env.gpuMissing = statusWarn
	expect(t, checkDriver(env), statusWarn, "the NVIDIA kernel driver is not loaded")
}

func TestDoctorNoNVML(t *testing.T) {
	env := gpuHost(t, 12090)
	env.nvml = &mock.Interface{
		InitFunc: func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND },
	}
	res := byCheck(t, runDoctor(env))
	expect(t, res["nvml"], statusFail, "nvml: no NVIDIA GPUs on this host (NVML: ERROR_LIBRARY_NOT_FOUND)", "--no-gpu-ok")
	expect(t, res["cuda"], statusFail, "cannot tell the driver's CUDA version without NVML")
	// The mock panics on any call but Init: none was made after it failed.

	env.gpuMissing = statusWarn
	res = byCheck(t, runDoctor(env))
	expect(t, res["nvml"], statusWarn, "no NVIDIA GPUs on this host")
	expect(t, res["cuda"], statusWarn)

	// NVML answers, with no GPU.
	env.gpuMissing = statusFail
	m := gpuHost(t, 12090).nvml.(*dgxa100.Server)
	m.DeviceGetCountFunc = func() (int, nvml.Return) { return 0, nvml.SUCCESS }
	env.nvml = m
	res = byCheck(t, runDoctor(env))
	expect(t, res["nvml"], statusFail, "no NVIDIA GPUs on this host", "lspci")
	expect(t, res["cuda"], statusOK, "the driver supports CUDA 12.9")

	// NVML present but broken.
	env.gpuMissing = statusFail
	env.nvml = &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_LIB_RM_VERSION_MISMATCH }}
	res = byCheck(t, runDoctor(env))
	expect(t, res["nvml"], statusFail, "NVML cannot be initialised: ERROR_LIB_RM_VERSION_MISMATCH", "match the loaded kernel module")
}

func TestDoctorRuntime(t *testing.T) {
	env := gpuHost(t, 12090)

	// The engine reads a CDI dir holding nvidia-ctk's spec.
	cdi := t.TempDir()
	writeFile(t, filepath.Join(cdi, "nvidia.yaml"), "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n")
	env.engine = fakeEngine{info: system.Info{ServerVersion: "28.5.2", CDISpecDirs: []string{"/nonexistent", cdi}}}
	_, rt := checkEngine(env)
	expect(t, rt, statusOK, "the engine reads the NVIDIA CDI spec "+filepath.Join(cdi, "nvidia.yaml"))

	// The engine lists NVIDIA CDI devices.
	env.engine = fakeEngine{info: system.Info{ServerVersion: "28.5.2", DiscoveredDevices: []system.DeviceInfo{{Source: "cdi", ID: "nvidia.com/gpu=all"}}}}
	_, rt = checkEngine(env)
	expect(t, rt, statusOK, "the engine lists NVIDIA CDI devices (nvidia.com/gpu=all")

	// A spec on disk, but an engine without CDI.
	env.engine = fakeEngine{info: system.Info{ServerVersion: "24.0.7"}}
	env.cdiDirs = []string{cdi}
	_, rt = checkEngine(env)
	expect(t, rt, statusFail, "does not read the NVIDIA CDI spec", `"features": {"cdi": true}`)

	// Neither runtime nor CDI.
	env.cdiDirs = []string{t.TempDir()}
	env.engine = fakeEngine{info: system.Info{ServerVersion: "24.0.7", CDISpecDirs: []string{t.TempDir()},
		Runtimes: map[string]system.RuntimeWithStatus{"runc": {}}}}
	res := byCheck(t, runDoctor(env))
	expect(t, res["engine"], statusOK)
	expect(t, res["runtime"], statusFail, "runtime: no NVIDIA container runtime or CDI devices registered with the engine",
		"; install the NVIDIA Container Toolkit and run nvidia-ctk runtime configure --runtime=docker")
	env.gpuMissing = statusWarn
	_, rt = checkEngine(env)
	expect(t, rt, statusWarn, "nvidia-ctk runtime configure")

	// The toolkit's hook without a registered runtime.
	env.gpuMissing = statusFail
	env.lookPath = func(name string) (string, error) { return "/usr/bin/" + name, nil }
	_, rt = checkEngine(env)
	expect(t, rt, statusWarn, "the toolkit's /usr/bin/nvidia-container-runtime-hook is installed", "restart the engine")
}

func TestDoctorEngineDown(t *testing.T) {
	env := gpuHost(t, 12090)
	env.engine = fakeEngine{err: errors.New("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?")}
	res := byCheck(t, runDoctor(env))
	expect(t, res["engine"], statusFail, "engine: the Docker engine at unix:///var/run/docker.sock does not answer", "systemctl start docker")
	expect(t, res["runtime"], statusFail, "cannot tell without the engine")

	env.engine, env.engineErr = nil, errors.New("unable to parse docker host `tcp:/bad`")
	res = byCheck(t, runDoctor(env))
	expect(t, res["engine"], statusFail, "no Docker client for unix:///var/run/docker.sock")
}

// TestDoctorThisHost runs sygctl doctor against this host's real engine
// and NVML. It is meant for a host without GPUs or the NVIDIA runtime.
func TestDoctorThisHost(t *testing.T) {
	testenv.Docker(t)
	if _, err := os.Stat("/proc/driver/nvidia/version"); err == nil {
		t.Skip("this host has the NVIDIA driver; the test is for a host without GPUs")
	}
	t.Setenv("SYGALDRY_CONFIG", "")
	run1 := func(args ...string) (int, string) {
		t.Helper()
		var out, errb strings.Builder
		code := run(args, stdio{in: os.Stdin, out: &out, err: &errb})
		if errb.Len() > 0 {
			t.Errorf("%v: stderr %q", args, errb.String())
		}
		return code, out.String()
	}

	// The default: the host is meant for GPUs, so missing ones FAIL.
	code, out := run1("doctor")
	for _, want := range []string{
		"FAIL  driver: the NVIDIA kernel driver is not loaded",
		"FAIL  nvml: no NVIDIA GPUs on this host",
		"FAIL  runtime: no NVIDIA container runtime or CDI devices registered with the engine; install the NVIDIA Container Toolkit and run nvidia-ctk runtime configure --runtime=docker",
		"ok    engine: Docker engine ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	if code != 1 {
		t.Errorf("exit %d, want 1:\n%s", code, out)
	}

	// --no-gpu-ok: the same findings are warnings.
	code, out = run1("doctor", "--no-gpu-ok")
	if code != 0 || !strings.Contains(out, "warn  nvml: no NVIDIA GPUs on this host") || strings.Contains(out, "FAIL") {
		t.Errorf("--no-gpu-ok: exit %d\n%s", code, out)
	}

	// A config whose projects take no GPUs, through the global --config.
	cfg := filepath.Join(t.TempDir(), "gateway.toml")
	writeFile(t, cfg, "[defaults]\ngpus = \"none\"\n[projects.docs]\nmembers = []\n")
	code, out = run1("--config", cfg, "doctor", "--json")
	var list []checkResult
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	res := byCheck(t, list)
	if code != 0 || res["nvml"].Status != "warn" || res["runtime"].Status != "warn" || res["engine"].Status != "ok" ||
		!strings.Contains(res["runtime"].Fix, "nvidia-ctk runtime configure --runtime=docker") {
		t.Errorf("gpus = none: exit %d\n%s", code, out)
	}

	// One project taking GPUs makes them needed again.
	writeFile(t, cfg, "[defaults]\ngpus = \"none\"\n[projects.docs]\nmembers = []\n[projects.zephyr]\ngpus = 1\nmembers = []\n")
	if code, out = run1("--config", cfg, "doctor"); code != 1 || !strings.Contains(out, "FAIL  nvml") {
		t.Errorf("a GPU project: exit %d\n%s", code, out)
	}
}

func TestDoctorUsage(t *testing.T) {
	code, out, _ := runAdmin(t, cmdDoctor, "-h")
	if code != 0 || !strings.Contains(out, "--no-gpu-ok") {
		t.Errorf("-h: %d %s", code, out)
	}
	if code, _, errs := runAdmin(t, cmdDoctor, "extra"); code != 2 || !strings.Contains(errs, `unexpected argument "extra"`) {
		t.Errorf("operand: %d %s", code, errs)
	}
	cfg := filepath.Join(t.TempDir(), "gateway.toml")
	writeFile(t, cfg, "[defaults]\ngpus = \"most\"\n")
	if code, _, errs := runAdmin(t, cmdDoctor, "--config", cfg); code != 1 || !strings.Contains(errs, cfg) {
		t.Errorf("bad config: %d %s", code, errs)
	}
}
