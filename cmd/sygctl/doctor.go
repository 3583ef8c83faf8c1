package main

// sygctl doctor: checks that this host can give containers their GPUs.
// It runs on the host (as root, like the gateway), reads the kernel's view
// of the driver, opens NVML itself through gpu.Open and asks the Docker
// engine the gateway uses: it does not need a running gateway.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/gpu"
)

const doctorHelp = `Checks that this host can give containers their GPUs, one line per check:
"ok|warn|FAIL  CHECK: what was found; what to do". Checks: the NVIDIA kernel
driver and its version, NVML, the driver's CUDA version against the one the
image's Dockerfile (FROM nvidia/cuda:X.Y...) needs, the Docker engine, and the
NVIDIA container runtime or CDI registered with it. Exits 1 when a check
FAILs, 0 otherwise. Run it on the host, as root.

A missing GPU piece FAILs, since the host exists for its GPUs; it is only a
warning with --no-gpu-ok, or when every project of --config has gpus = "none".
With --config of a gateway whose server.backend is "kubernetes", it checks
instead what that gateway needs: the API server with the config's
credentials, the rights of etc/kubernetes/rbac.yaml in kubernetes.namespace
(asked of the API server as that identity), and nodes that advertise the
GPU resource the projects ask for.
With --json: a list of {check, status (ok, warn or fail), detail, fix}.`

// doctorTimeout bounds the whole doctor run's engine calls.
const doctorTimeout = 20 * time.Second

// Check statuses, as the text lines print them; JSON has them in lower case.
const (
	statusOK   = "ok"
	statusWarn = "warn"
	statusFail = "FAIL"
)

// checkResult is one line of the doctor's report.
type checkResult struct {
	Check  string `json:"check"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix"`
}

// engineInfo is the part of the Docker client the doctor uses.
type engineInfo interface {
	Info(ctx context.Context) (system.Info, error)
}

var _ engineInfo = (*client.Client)(nil)

// doctorEnv is what the checks look at; tests replace each part.
type doctorEnv struct {
	// root is where the host's / is ("/" for real), for /proc and /sys.
	root string
	// nvml is the NVML to open; nil: the system's libnvidia-ml, from
	// nvmlPath when set (the gateway's SYGALDRY_NVML_LIBRARY).
	nvml     gpu.Library
	nvmlPath string
	// engine answers docker info; nil with engineErr set: no client could
	// be made.
	engine    engineInfo
	engineErr error
	// engineHost is the engine's address, for the messages.
	engineHost string
	// cdiDirs are searched for NVIDIA CDI specs when the engine does not
	// list its own (engines before CDI support); nil: /etc/cdi, /var/run/cdi.
	cdiDirs []string
	// lookPath finds the NVIDIA Container Toolkit's hook; nil: exec.LookPath.
	lookPath func(string) (string, error)
	// dockerfile is the image's Dockerfile the CUDA requirement is read
	// from; empty: the CUDA check says it cannot tell.
	dockerfile string
	// gpuMissing is the status a missing GPU piece gets: statusFail, or
	// statusWarn when this host is not meant to hand out GPUs.
	gpuMissing string
}

// doctorFlags are the doctor's flags, declared by declareDoctorFlags for
// cmdDoctor and for the command table (help, completion).
type doctorFlags struct {
	config, dockerfile string
	noGPUOK, json      bool
}

func declareDoctorFlags(fs *flag.FlagSet) *doctorFlags {
	f := new(doctorFlags)
	fs.StringVar(&f.config, "config", os.Getenv("SYGALDRY_CONFIG"), "gateway config `FILE`: its docker.host, its projects' gpus and Dockerfiles (default $SYGALDRY_CONFIG)")
	fs.StringVar(&f.dockerfile, "dockerfile", "", "read the CUDA version the image needs from this Dockerfile `FILE` (default: the config's, else the checkout's container/dev_container.dockerfile)")
	fs.BoolVar(&f.noGPUOK, "no-gpu-ok", false, "a host without GPUs is fine: missing GPU pieces are warnings")
	fs.BoolVar(&f.json, "json", false, "print JSON instead of lines")
	return f
}

// cmdDoctor is `sygctl doctor [flags]`.
func cmdDoctor(args []string, stdout, stderr io.Writer) int {
	fs := newAdminFlagSet("doctor", "sygctl doctor [--config FILE] [--dockerfile FILE] [--no-gpu-ok] [--json]", doctorHelp)
	f := declareDoctorFlags(fs)
	if code := parseFlagsOnly(fs, args, stdout, stderr); code >= 0 {
		return code
	}

	env := doctorEnv{root: "/", gpuMissing: statusFail, dockerfile: f.dockerfile, nvmlPath: os.Getenv("SYGALDRY_NVML_LIBRARY")}
	var host string
	if f.config != "" {
		cfg, err := config.Load(f.config)
		if err != nil {
			fmt.Fprintf(stderr, "sygctl doctor: %v\n", err)
			return 1
		}
		if cfg.Server.Backend == config.BackendKubernetes {
			gpuMissing := statusFail
			if f.noGPUOK {
				gpuMissing = statusWarn
			}
			ctx, cancel := context.WithTimeout(context.Background(), doctorTimeout)
			defer cancel()
			return writeDoctor(stdout, stderr, f.json, kubeDoctor(ctx, cfg, gpuMissing))
		}
		host = cfg.Docker.Host
		gpuFiles := gpuDockerfiles(cfg)
		if len(gpuFiles) == 0 {
			env.gpuMissing = statusWarn
		}
		if env.dockerfile == "" && len(gpuFiles) > 0 {
			env.dockerfile = gpuFiles[0]
		}
	}
	if f.noGPUOK {
		env.gpuMissing = statusWarn
	}
	if env.dockerfile == "" {
		env.dockerfile = defaultDockerfile()
	}
	copts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host != "" {
		copts = append(copts, client.WithHost(host))
	}
	if cl, err := client.NewClientWithOpts(copts...); err != nil {
		env.engineErr = err
		env.engineHost = or(host, os.Getenv("DOCKER_HOST"), client.DefaultDockerHost)
	} else {
		defer cl.Close()
		env.engine, env.engineHost = cl, cl.DaemonHost()
	}

	return writeDoctor(stdout, stderr, f.json, runDoctor(env))
}

// writeDoctor prints the results and returns the exit code: 1 when a check
// FAILed.
func writeDoctor(stdout, stderr io.Writer, asJSON bool, results []checkResult) int {
	if asJSON {
		out := make([]checkResult, len(results))
		for i, r := range results {
			r.Status = strings.ToLower(r.Status)
			out[i] = r
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return adminFail(stderr, "doctor", err)
		}
	} else {
		for _, r := range results {
			fmt.Fprintln(stdout, r.line())
		}
	}
	for _, r := range results {
		if r.Status == statusFail {
			return 1
		}
	}
	return 0
}

// gpuDockerfiles is the Dockerfiles of the configured projects that take
// GPUs (the first one first; "" for a project without one is left out),
// or nil when no project takes GPUs.
func gpuDockerfiles(cfg *config.Config) []string {
	var files []string
	gpus := false
	for _, name := range cfg.ProjectNames() {
		p, ok := cfg.Project(name)
		if !ok || p.GPUs.None() {
			continue
		}
		gpus = true
		if p.Dockerfile != "" {
			files = append(files, p.Dockerfile)
		}
	}
	if gpus && len(files) == 0 {
		return []string{""}
	}
	return files
}

func (r checkResult) line() string {
	s := fmt.Sprintf("%-4s  %s: %s", r.Status, r.Check, termSafe(r.Detail))
	if r.Fix != "" {
		s += "; " + termSafe(r.Fix)
	}
	return s
}

// runDoctor runs every check, in the order an admin fixes them.
func runDoctor(env doctorEnv) []checkResult {
	var res []checkResult
	res = append(res, checkDriver(env))
	nvmlRes, cudaRes := checkNVML(env)
	res = append(res, nvmlRes, cudaRes)
	engineRes, runtimeRes := checkEngine(env)
	return append(res, engineRes, runtimeRes)
}

const fixDriver = "install the NVIDIA driver for this GPU (it provides the kernel module and libnvidia-ml.so.1), or load it with modprobe nvidia"

// checkDriver reads the loaded kernel module's version.
func checkDriver(env doctorEnv) checkResult {
	r := checkResult{Check: "driver"}
	procFile := filepath.Join(env.root, "proc/driver/nvidia/version")
	if b, err := os.ReadFile(procFile); err == nil {
		if v := kernelModuleVersion(string(b)); v != "" {
			r.Status, r.Detail = statusOK, "NVIDIA kernel driver "+v+" is loaded"
			return r
		}
	}
	if b, err := os.ReadFile(filepath.Join(env.root, "sys/module/nvidia/version")); err == nil {
		r.Status, r.Detail = statusOK, "NVIDIA kernel driver "+strings.TrimSpace(string(b))+" is loaded"
		return r
	}
	if _, err := os.Stat(filepath.Join(env.root, "sys/module/nvidia")); err == nil {
		r.Status, r.Detail = statusOK, "NVIDIA kernel driver is loaded (its version is not readable)"
		return r
	}
	r.Status, r.Detail, r.Fix = env.gpuMissing, "the NVIDIA kernel driver is not loaded (no /proc/driver/nvidia/version, no /sys/module/nvidia)", fixDriver
	return r
}

var kernelModuleRE = regexp.MustCompile(`Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)`)

// kernelModuleVersion is the version in /proc/driver/nvidia/version's
// NVRM line, for the proprietary ("NVIDIA UNIX x86_64 Kernel Module
// 550.54.15 ...") and the open module ("NVIDIA UNIX Open Kernel Module for
// x86_64  570.86.15 ..."); "" when there is none.
func kernelModuleVersion(text string) string {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "NVRM version:") {
			if m := kernelModuleRE.FindStringSubmatch(line); m != nil {
				return m[1]
			}
		}
	}
	return ""
}

// checkNVML opens NVML as the gateway does and, when it answers, compares
// its CUDA driver version with the one the image needs.
func checkNVML(env doctorEnv) (nvmlRes, cudaRes checkResult) {
	nvmlRes = checkResult{Check: "nvml"}
	cudaRes = checkResult{Check: "cuda"}
	inv := gpu.Open(gpu.Options{Library: env.nvml, LibraryPath: env.nvmlPath, Logger: slog.New(slog.DiscardHandler)})
	defer inv.Close()
	snap := inv.Snapshot()
	switch {
	case errors.Is(snap.Err, gpu.ErrNoGPUs):
		nvmlRes.Status, nvmlRes.Detail, nvmlRes.Fix = env.gpuMissing, snap.Err.Error(), fixDriver
		if len(snap.Devices) == 0 && inv.Err() == nil {
			// NVML answered, with no GPU: the driver is fine, the
			// machine has no card.
			nvmlRes.Fix = "check that the GPUs are seated and visible (lspci | grep -i nvidia)"
		}
	case snap.Err != nil:
		nvmlRes.Status, nvmlRes.Detail, nvmlRes.Fix = env.gpuMissing, snap.Err.Error(),
			"check that the driver's user-space libraries match the loaded kernel module (nvidia-smi says which); a reboot after a driver upgrade often helps"
	default:
		nvmlRes.Status = statusOK
		nvmlRes.Detail = fmt.Sprintf("NVML works: %d GPU(s)", len(snap.Devices))
		if snap.Driver != "" {
			nvmlRes.Detail += ", driver " + snap.Driver
		}
	}

	need, needErr := requiredCUDA(env.dockerfile)
	if inv.Err() != nil {
		if nvmlRes.Status == statusFail {
			nvmlRes.Fix += ` (a host meant to run without GPUs: --no-gpu-ok, or gpus = "none" for every project)`
		}
		cudaRes.Status, cudaRes.Detail = env.gpuMissing, "cannot tell the driver's CUDA version without NVML"
		return nvmlRes, cudaRes
	}
	have, err := inv.CUDADriverVersion()
	switch {
	case err != nil:
		cudaRes.Status, cudaRes.Detail, cudaRes.Fix = statusWarn, err.Error(), "nvidia-smi shows the driver's CUDA version"
	case needErr != nil:
		cudaRes.Status, cudaRes.Detail = statusWarn, fmt.Sprintf("the driver supports CUDA %s; %v", cudaString(have), needErr)
		cudaRes.Fix = "name the image's Dockerfile with --dockerfile"
	case have < need:
		cudaRes.Status = env.gpuMissing
		cudaRes.Detail = fmt.Sprintf("the driver supports CUDA %s, the image (%s) needs %s", cudaString(have), filepath.Base(env.dockerfile), cudaString(need))
		cudaRes.Fix = fmt.Sprintf("upgrade the NVIDIA driver to one that supports CUDA %s (nvidia-smi shows the CUDA version a driver supports)", cudaString(need))
	default:
		cudaRes.Status = statusOK
		cudaRes.Detail = fmt.Sprintf("the driver supports CUDA %s, the image (%s) needs %s", cudaString(have), filepath.Base(env.dockerfile), cudaString(need))
	}
	return nvmlRes, cudaRes
}

// cudaString is NVML's encoded CUDA version (12090) as people write it
// (12.9).
func cudaString(v int) string {
	return strconv.Itoa(v/1000) + "." + strconv.Itoa(v%1000/10)
}

var cudaBaseRE = regexp.MustCompile(`(?i)^FROM\s+(?:--platform=\S+\s+)?(?:\S+/)?nvidia/cuda:(\d+)\.(\d+)`)

// requiredCUDA reads the CUDA version the image needs from its Dockerfile's
// first nvidia/cuda base image (FROM nvidia/cuda:12.9.1-cudnn-devel-...),
// encoded as NVML does (12090).
func requiredCUDA(dockerfile string) (int, error) {
	if dockerfile == "" {
		return 0, errors.New("the image's Dockerfile is not known, so neither is the CUDA version it needs")
	}
	b, err := os.ReadFile(dockerfile)
	if err != nil {
		return 0, fmt.Errorf("cannot read the image's Dockerfile: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		m := cudaBaseRE.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		major, err1 := strconv.Atoi(m[1])
		minor, err2 := strconv.Atoi(m[2])
		if err1 != nil || err2 != nil || minor > 99 {
			break
		}
		return major*1000 + minor*10, nil
	}
	return 0, fmt.Errorf("%s has no FROM nvidia/cuda:X.Y base image to read the CUDA version from", dockerfile)
}

const fixRuntime = "install the NVIDIA Container Toolkit and run nvidia-ctk runtime configure --runtime=docker"

// checkEngine asks the engine for its info, and in it for the NVIDIA
// runtime or CDI devices.
func checkEngine(env doctorEnv) (engineRes, runtimeRes checkResult) {
	engineRes = checkResult{Check: "engine"}
	runtimeRes = checkResult{Check: "runtime"}
	fixEngine := "start it (systemctl start docker), or point docker.host in the config (or DOCKER_HOST) at it"
	if env.engine == nil {
		engineRes.Status, engineRes.Detail, engineRes.Fix = statusFail, fmt.Sprintf("no Docker client for %s: %v", env.engineHost, env.engineErr), fixEngine
		runtimeRes.Status, runtimeRes.Detail = statusFail, "cannot tell without the engine"
		return engineRes, runtimeRes
	}
	ctx, cancel := context.WithTimeout(context.Background(), doctorTimeout)
	defer cancel()
	info, err := env.engine.Info(ctx)
	if err != nil {
		engineRes.Status, engineRes.Detail, engineRes.Fix = statusFail, fmt.Sprintf("the Docker engine at %s does not answer (%v)", env.engineHost, err), fixEngine
		runtimeRes.Status, runtimeRes.Detail = statusFail, "cannot tell without the engine"
		return engineRes, runtimeRes
	}
	engineRes.Status, engineRes.Detail = statusOK, fmt.Sprintf("Docker engine %s answers at %s", info.ServerVersion, env.engineHost)

	if rt, ok := info.Runtimes["nvidia"]; ok {
		runtimeRes.Status, runtimeRes.Detail = statusOK, "the nvidia runtime is registered with the engine"
		if rt.Path != "" {
			runtimeRes.Detail += " (" + rt.Path + ")"
		}
		return engineRes, runtimeRes
	}
	for _, d := range info.DiscoveredDevices {
		if d.Source == "cdi" && strings.HasPrefix(d.ID, "nvidia.com/gpu=") {
			runtimeRes.Status, runtimeRes.Detail = statusOK, "the engine lists NVIDIA CDI devices ("+d.ID+", ...)"
			return engineRes, runtimeRes
		}
	}
	if spec := nvidiaCDISpec(info.CDISpecDirs); spec != "" {
		runtimeRes.Status, runtimeRes.Detail = statusOK, "the engine reads the NVIDIA CDI spec "+spec
		return engineRes, runtimeRes
	}
	dirs := env.cdiDirs
	if dirs == nil {
		dirs = []string{"/etc/cdi", "/var/run/cdi"}
	}
	if spec := nvidiaCDISpec(dirs); spec != "" && len(info.CDISpecDirs) == 0 {
		runtimeRes.Status = env.gpuMissing
		runtimeRes.Detail = "no nvidia runtime registered with the engine, and the engine does not read the NVIDIA CDI spec " + spec
		runtimeRes.Fix = fixRuntime + ` (or enable CDI in /etc/docker/daemon.json: "features": {"cdi": true})`
		return engineRes, runtimeRes
	}
	lookPath := env.lookPath
	if lookPath == nil {
		lookPath = exec.LookPath
	}
	if hook, err := lookPath("nvidia-container-runtime-hook"); err == nil {
		// The engine's own GPU requests (DeviceRequests with the nvidia
		// driver, as the gateway makes them) run this hook when the engine
		// found it at its start, without a registered runtime.
		runtimeRes.Status = statusWarn
		runtimeRes.Detail = "no nvidia runtime or CDI registered with the engine, but the toolkit's " + hook +
			" is installed: GPU requests work if the engine was started after it was"
		runtimeRes.Fix = "run nvidia-ctk runtime configure --runtime=docker and restart the engine (systemctl restart docker)"
		return engineRes, runtimeRes
	}
	runtimeRes.Status = env.gpuMissing
	runtimeRes.Detail = "no NVIDIA container runtime or CDI devices registered with the engine"
	runtimeRes.Fix = fixRuntime
	return engineRes, runtimeRes
}

// nvidiaCDISpec is the first NVIDIA CDI spec (nvidia*.yaml or .json, as
// nvidia-ctk cdi generate writes) in dirs, or "".
func nvidiaCDISpec(dirs []string) string {
	for _, dir := range dirs {
		for _, pat := range []string{"nvidia*.yaml", "nvidia*.json"} {
			if m, _ := filepath.Glob(filepath.Join(dir, pat)); len(m) > 0 {
				return m[0]
			}
		}
	}
	return ""
}

// or is the first non-empty string.
func or(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
