package imagecheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --- container/inspect_nvidia_setup.sh (runs on the host) -----------------

// On this host, which has no NVIDIA driver: a clear "no NVIDIA driver",
// exit 1, no throwaway container, no shell errors.
func TestInspectNvidiaSetupNoDriver(t *testing.T) {
	if _, err := os.Stat("/proc/driver/nvidia/version"); err == nil {
		t.Skip("this host has an NVIDIA driver")
	}
	script := abs(t, "../inspect_nvidia_setup.sh")
	for _, sygctl := range []string{"none", ""} { // "": whatever sygctl the script finds
		r := runScript(t, []string{"SYGCTL=" + sygctl}, script)
		if r.code != 1 || !strings.Contains(r.out, "no NVIDIA driver") || !strings.Contains(r.out, "FAIL  driver: not loaded") ||
			!strings.Contains(r.out, "skipping the throwaway-container check") {
			t.Errorf("SYGCTL=%q: code %d\n%s", sygctl, r.code, r.out)
		}
		noShellErrors(t, r)
	}
}

// inspectHost is a fake host: a root with the driver's /proc file, and a
// PATH with stand-ins for nvidia-ctk, docker (recording its calls) and sygctl.
type inspectHost struct {
	root, bin, log string
}

func newInspectHost(t *testing.T, driver string) inspectHost {
	t.Helper()
	h := inspectHost{root: t.TempDir(), bin: t.TempDir()}
	h.log = filepath.Join(h.bin, "docker.log")
	if driver != "" {
		writeExec(t, filepath.Join(h.root, "proc/driver/nvidia/version"),
			"NVRM version: NVIDIA UNIX x86_64 Kernel Module  "+driver+"  Release Build  (dvs-builder@U16-I3-B03-4-3)  Tue May 27 2025\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
	}
	writeExec(t, filepath.Join(h.bin, "nvidia-ctk"), "#!/bin/sh\necho 'NVIDIA Container Toolkit CLI version 1.17.8'\n")
	h.docker(t, `{"io.containerd.runc.v2":{"path":"runc"},"nvidia":{"path":"nvidia-container-runtime"},"runc":{"path":"runc"}}`, "", 2)
	writeExec(t, filepath.Join(h.bin, "sygctl"), "#!/bin/sh\n[ \"$2\" = -h ] && exit 0\necho 'ok    driver: fake doctor'\n")
	return h
}

// docker writes the docker stand-in: docker info answers runtimes and
// cdiDirs, docker run lists gpus GPUs.
func (h inspectHost) docker(t *testing.T, runtimes, cdiDirs string, gpus int) {
	t.Helper()
	list := ""
	for i := range gpus {
		list += "GPU " + string(rune('0'+i)) + ": NVIDIA H100 80GB HBM3 (UUID: GPU-" + string(rune('a'+i)) + ")\\n"
	}
	writeExec(t, filepath.Join(h.bin, "docker"), `#!/bin/sh
echo "$*" >>`+h.log+`
case "$1 $3" in
"info {{json .Runtimes}}") echo '`+runtimes+`' ;;
"info "*) echo '`+cdiDirs+`' ;;
"run "*) printf '`+list+`' ;;
esac
`)
}

func (h inspectHost) run(t *testing.T) result {
	t.Helper()
	r := runScript(t, []string{"INSPECT_NVIDIA_ROOT=" + h.root, "PATH=" + h.bin + ":/usr/bin:/bin", "SYGCTL=" + filepath.Join(h.bin, "sygctl")}, abs(t, "../inspect_nvidia_setup.sh"))
	noShellErrors(t, r)
	return r
}

func (h inspectHost) ranContainer(t *testing.T) bool {
	t.Helper()
	b, _ := os.ReadFile(h.log)
	return strings.Contains(string(b), "run --rm --gpus all nvidia/cuda:12.9.1-base-ubuntu24.04 nvidia-smi -L")
}

func TestInspectNvidiaSetup(t *testing.T) {
	t.Run("all good", func(t *testing.T) {
		h := newInspectHost(t, "575.57.08")
		r := h.run(t)
		for _, want := range []string{"ok    driver: NVIDIA kernel driver 575.57.08 loaded", "ok    driver-version: 575.57.08 >= 575.51.03",
			"ok    toolkit: NVIDIA Container Toolkit", "ok    docker: the nvidia runtime is registered", "fake doctor", "ok    container: 2 GPU(s) visible"} {
			if !strings.Contains(r.out, want) {
				t.Errorf("lacks %q", want)
			}
		}
		if r.code != 0 || !h.ranContainer(t) {
			t.Errorf("code %d\n%s", r.code, r.out)
		}
	})
	t.Run("driver too old", func(t *testing.T) {
		h := newInspectHost(t, "550.54.15")
		r := h.run(t)
		if r.code != 1 || !strings.Contains(r.out, "FAIL  driver-version: 550.54.15 is older than 575.51.03") || h.ranContainer(t) {
			t.Errorf("code %d, container run %v\n%s", r.code, h.ranContainer(t), r.out)
		}
	})
	t.Run("no toolkit", func(t *testing.T) {
		h := newInspectHost(t, "575.57.08")
		os.Remove(filepath.Join(h.bin, "nvidia-ctk"))
		r := h.run(t)
		if r.code != 1 || !strings.Contains(r.out, "FAIL  toolkit: the NVIDIA Container Toolkit is not installed") || h.ranContainer(t) {
			t.Errorf("code %d\n%s", r.code, r.out)
		}
	})
	t.Run("CDI only", func(t *testing.T) {
		h := newInspectHost(t, "575.57.08")
		cdi := t.TempDir()
		writeExec(t, filepath.Join(cdi, "nvidia.yaml"), "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n")
		h.docker(t, `{"runc":{"path":"runc"}}`, cdi, 1)
		r := h.run(t)
		if r.code != 0 || !strings.Contains(r.out, "ok    docker: NVIDIA CDI spec "+cdi+"/nvidia.yaml") || !h.ranContainer(t) {
			t.Errorf("code %d\n%s", r.code, r.out)
		}
	})
	t.Run("not registered", func(t *testing.T) {
		h := newInspectHost(t, "575.57.08")
		h.docker(t, `{"runc":{"path":"runc"}}`, t.TempDir(), 1)
		r := h.run(t)
		if r.code != 1 || !strings.Contains(r.out, "FAIL  docker: Docker has no nvidia runtime and no NVIDIA CDI spec") || h.ranContainer(t) {
			t.Errorf("code %d\n%s", r.code, r.out)
		}
	})
	t.Run("doctor fails", func(t *testing.T) {
		h := newInspectHost(t, "575.57.08")
		writeExec(t, filepath.Join(h.bin, "sygctl"), "#!/bin/sh\n[ \"$2\" = -h ] && exit 0\necho 'FAIL  nvml: fake'\nexit 1\n")
		r := h.run(t)
		if r.code != 1 || !strings.Contains(r.out, "FAIL  nvml: fake") || h.ranContainer(t) {
			t.Errorf("code %d\n%s", r.code, r.out)
		}
	})
	t.Run("no GPU in the container", func(t *testing.T) {
		h := newInspectHost(t, "575.57.08")
		h.docker(t, `{"nvidia":{}}`, "", 0)
		r := h.run(t)
		if r.code != 1 || !strings.Contains(r.out, "FAIL  container: no GPU visible") || !h.ranContainer(t) {
			t.Errorf("code %d\n%s", r.code, r.out)
		}
	})
}
