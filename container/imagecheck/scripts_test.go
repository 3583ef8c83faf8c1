package imagecheck

// Behaviour of the image's scripts on a machine with no GPU, Spack, Torch,
// JAX or sygctl: each runs against small stand-ins and must give the exit
// codes and messages its header promises, never a shell error or a traceback.

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

type result struct {
	out  string // stdout and stderr together
	code int
}

// runScript runs path with args under env (PATH and HOME are set unless env
// sets them) and returns its output and exit code.
func runScript(t *testing.T, env []string, path string, args ...string) result {
	t.Helper()
	return runCmd(t, env, exec.Command(path, args...))
}

func runCmd(t *testing.T, env []string, cmd *exec.Cmd) result {
	t.Helper()
	base := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + t.TempDir(), "LANG=C.UTF-8"}
	cmd.Env = append(base, env...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("run %v: %v", cmd.Args, err)
		}
		code = ee.ExitCode()
	}
	return result{out: buf.String(), code: code}
}

func writeExec(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func abs(t *testing.T, rel string) string {
	t.Helper()
	p, err := filepath.Abs(rel)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// noShellErrors fails on the marks of a script that broke rather than reported.
func noShellErrors(t *testing.T, r result) {
	t.Helper()
	for _, bad := range []string{"Traceback", "unbound variable", "syntax error", "command not found", ": line "} {
		if strings.Contains(r.out, bad) {
			t.Errorf("output has %q:\n%s", bad, r.out)
		}
	}
}

// --- container/launch_container.sh ---------------------------------------

// fakeSygctl records its arguments (one a line), its working directory and
// SYGALDRY_IMAGE, then exits with FAKE_RC; `launch --help` prints FAKE_HELP.
const fakeSygctl = `#!/usr/bin/env bash
if [ "${2:-}" = --help ]; then
	echo "${FAKE_HELP:-}" >&2
	exit 0
fi
printf '%s\n' "$@" >"$FAKE_LOG"
pwd >"$FAKE_LOG.cwd"
printf '%s' "${SYGALDRY_IMAGE:-}" >"$FAKE_LOG.image"
exit "${FAKE_RC:-0}"
`

func TestLaunchContainerWrapper(t *testing.T) {
	repo := t.TempDir()
	script := filepath.Join(repo, "container", "launch_container.sh")
	data, err := os.ReadFile("../launch_container.sh")
	if err != nil {
		t.Fatal(err)
	}
	writeExec(t, script, string(data))
	writeExec(t, filepath.Join(repo, "bin", "sygctl"), fakeSygctl)
	log := filepath.Join(t.TempDir(), "sygctl.log")
	readLog := func() []string {
		b, err := os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	}

	entrypoints := filepath.Join(repo, "container", "entrypoints")
	for name, mode := range map[string]os.FileMode{"default.sh": 0o755, "probe.sh": 0o755, "zephyr-profile.sh": 0o644} {
		if err := os.MkdirAll(entrypoints, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(entrypoints, name), []byte("# "+name+"\necho hi\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	// argv is `launch [--workspace DIR] -- bash -c <entrypoint's text>
	// NAME.sh ARGS...`, as the fake logs it (one line each).
	argv := func(pre []string, entry string, args ...string) []string {
		text := "# " + entry + ".sh\necho hi" // $(cat) drops the last newline
		all := append(append(slices.Clone(pre), "--", "bash", "-c", text, entry+".sh"), args...)
		return strings.Split(strings.Join(all, "\n"), "\n")
	}

	// Arguments pass through as argv, quoting intact, to default.sh; the
	// exit code comes back; sygctl runs from the repository root.
	args := []string{"bash", "-c", `echo "$1"`, "two words", "*", "$HOME", "it's", ""}
	r := runScript(t, []string{"FAKE_LOG=" + log, "FAKE_RC=7", "SYGALDRY_IMAGE=sygaldry/zephyr:test"}, script, args...)
	if r.code != 7 {
		t.Errorf("exit code %d, want sygctl's 7\n%s", r.code, r.out)
	}
	if got, want := readLog(), argv([]string{"launch"}, "default", args...); !slices.Equal(got, want) {
		t.Errorf("sygctl argv = %q, want %q", got, want)
	}
	if cwd, _ := os.ReadFile(log + ".cwd"); strings.TrimSpace(string(cwd)) != repo {
		t.Errorf("sygctl ran in %q, want the repository root %q", cwd, repo)
	}
	if img, _ := os.ReadFile(log + ".image"); string(img) != "sygaldry/zephyr:test" {
		t.Errorf("SYGALDRY_IMAGE not passed through: %q", img)
	}

	// No arguments: default.sh alone (its interactive shell).
	r = runScript(t, []string{"FAKE_LOG=" + log}, script)
	if r.code != 0 || !slices.Equal(readLog(), argv([]string{"launch"}, "default")) {
		t.Errorf("no-argument call: code %d, argv %q", r.code, readLog())
	}

	// --entrypoint NAME ARGS: entrypoints/NAME.sh.
	r = runScript(t, []string{"FAKE_LOG=" + log}, script, "--entrypoint", "probe", "a b")
	if r.code != 0 || !slices.Equal(readLog(), argv([]string{"launch"}, "probe", "a b")) {
		t.Errorf("--entrypoint probe: code %d, argv %q\n%s", r.code, readLog(), r.out)
	}
	// Unknown (or non-executable) names: exit 2 listing the available ones,
	// and sygctl never runs.
	os.Remove(log)
	for _, bad := range [][]string{{"--entrypoint", "nope"}, {"--entrypoint", "zephyr-profile"}, {"--entrypoint"}} {
		r = runScript(t, []string{"FAKE_LOG=" + log}, script, bad...)
		if r.code != 2 || !strings.Contains(r.out, "available: default probe\n") {
			t.Errorf("%q: code %d, output %q", bad, r.code, r.out)
		}
		if _, err := os.Stat(log); err == nil {
			t.Errorf("%q: sygctl ran", bad)
		}
	}

	// Run from inside a git checkout: its top level goes to --workspace, when
	// this sygctl has the flag.
	if _, err := exec.LookPath("git"); err == nil {
		checkout := t.TempDir()
		if r := runCmd(t, nil, exec.Command("git", "init", "-q", checkout)); r.code != 0 {
			t.Fatalf("git init: %s", r.out)
		}
		sub := filepath.Join(checkout, "sub")
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		for help, pre := range map[string][]string{
			"  -workspace DIR": {"launch", "--workspace", checkout},
			"":                 {"launch"},
		} {
			cmd := exec.Command(script, "true")
			cmd.Dir = sub
			r = runCmd(t, []string{"FAKE_LOG=" + log, "FAKE_HELP=" + help}, cmd)
			if got, want := readLog(), argv(pre, "default", "true"); r.code != 0 || !slices.Equal(got, want) {
				t.Errorf("from a checkout (help %q): code %d, argv %q, want %q", help, r.code, got, want)
			}
		}
	}

	// Through a symlink from elsewhere, it still finds the repository.
	link := filepath.Join(t.TempDir(), "launch")
	if err := os.Symlink(script, link); err != nil {
		t.Fatal(err)
	}
	r = runScript(t, []string{"FAKE_LOG=" + log}, link, "true")
	if r.code != 0 || !slices.Equal(readLog(), argv([]string{"launch"}, "default", "true")) {
		t.Errorf("via symlink: code %d, argv %q\n%s", r.code, readLog(), r.out)
	}

	// sygctl not built and not on PATH: a clear error naming `make build`.
	if err := os.Remove(filepath.Join(repo, "bin", "sygctl")); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("sygctl"); err == nil {
		t.Log("a sygctl is on this machine's PATH; checking the error with a bare PATH")
	}
	r = runScript(t, []string{"PATH=/usr/bin:/bin"}, script, "true")
	if r.code != 125 || !strings.Contains(r.out, "make build") {
		t.Errorf("missing sygctl: code %d, output %q; want 125 and a hint to run make build", r.code, r.out)
	}
	noShellErrors(t, r)
}

// --- container/entrypoints -----------------------------------------------

// fakeSpackRoot builds a SPACK_ROOT whose `spack env activate --sh DIR` and
// shell-integration `spack env activate DIR` both export ZEPHYR_TEST_ACTIVE=DIR.
func fakeSpackRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	writeExec(t, filepath.Join(root, "bin", "spack"), `#!/usr/bin/env bash
if [ "$1 $2 $3" = "env activate --sh" ]; then
	printf "export ZEPHYR_TEST_ACTIVE='%s';\n" "$4"
	exit 0
fi
echo "fake spack: unexpected $*" >&2
exit 1
`)
	writeExec(t, filepath.Join(root, "share", "spack", "setup-env.sh"), `
spack() {
	if [ "$1 $2" = "env activate" ]; then
		export ZEPHYR_TEST_ACTIVE="$3"
		return 0
	fi
	return 1
}
`)
	return root
}

// installedEnv makes an environment directory as spack-install leaves it.
func installedEnv(t *testing.T, marker bool) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"spack.yaml", "spack.lock"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("{}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if marker {
		if err := os.WriteFile(filepath.Join(dir, ".zephyr-installed"), []byte("installed\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestSpackEnvActivate(t *testing.T) {
	script := abs(t, "../entrypoints/spack-env-activate")
	spackRoot := fakeSpackRoot(t)
	envDir := installedEnv(t, true)
	env := []string{"SPACK_ROOT=" + spackRoot, "ZEPHYR_SPACK_ENV=" + envDir}

	// Executed with a command: the command runs activated, its code comes back.
	r := runScript(t, env, script, "sh", "-c", `echo "active=$ZEPHYR_TEST_ACTIVE"; exit 4`)
	if r.code != 4 || !strings.Contains(r.out, "active="+envDir) {
		t.Errorf("run mode: code %d, output %q", r.code, r.out)
	}

	// Sourced: activates the calling shell and leaves no helper names behind.
	r = runCmd(t, env, exec.Command("bash", "-c",
		`. "$0" && echo "active=$ZEPHYR_TEST_ACTIVE" && echo "leftover=${_zephyr_env-}$(type -t _zephyr_check)"`, script))
	if r.code != 0 || !strings.Contains(r.out, "active="+envDir) || !strings.Contains(r.out, "leftover=\n") {
		t.Errorf("sourced: code %d, output %q", r.code, r.out)
	}

	// Not installed: a hint, exit 1 when run, return 1 (shell survives) when sourced.
	empty := t.TempDir()
	env = []string{"SPACK_ROOT=" + spackRoot, "ZEPHYR_SPACK_ENV=" + empty}
	r = runScript(t, env, script, "true")
	if r.code != 1 || !strings.Contains(r.out, "spack-install") {
		t.Errorf("not installed, run: code %d, output %q", r.code, r.out)
	}
	r = runCmd(t, env, exec.Command("bash", "-c", `. "$0"; echo "shell survived rc=$?"`, script))
	if !strings.Contains(r.out, "shell survived rc=1") {
		t.Errorf("not installed, sourced: %q", r.out)
	}
	noShellErrors(t, r)
}

func TestDefaultEntrypoint(t *testing.T) {
	script := abs(t, "../entrypoints/default.sh")
	spackRoot := fakeSpackRoot(t)

	envDir := installedEnv(t, true)
	r := runScript(t, []string{"SPACK_ROOT=" + spackRoot, "ZEPHYR_SPACK_ENV=" + envDir},
		script, "sh", "-c", `echo "active=$ZEPHYR_TEST_ACTIVE"`)
	if r.code != 0 || !strings.Contains(r.out, "active="+envDir) {
		t.Errorf("installed: code %d, output %q", r.code, r.out)
	}

	// Concretized but never finished installing: no activation, a hint, the
	// command still runs with its own exit code.
	partial := installedEnv(t, false)
	r = runScript(t, []string{"SPACK_ROOT=" + spackRoot, "ZEPHYR_SPACK_ENV=" + partial},
		script, "sh", "-c", `echo "active=${ZEPHYR_TEST_ACTIVE-none}"; exit 3`)
	if r.code != 3 || !strings.Contains(r.out, "active=none") || !strings.Contains(r.out, "spack-install") {
		t.Errorf("not installed: code %d, output %q", r.code, r.out)
	}
	noShellErrors(t, r)
}

func TestSpackInstallEntrypoint(t *testing.T) {
	script := abs(t, "../entrypoints/spack-install.sh")
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "spack_src.yaml"), []byte("spack: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// build.sh stand-in: records its arguments, writes a lock, fails on demand.
	writeExec(t, filepath.Join(src, "build.sh"), `#!/usr/bin/env bash
printf '%s\n' "$@" >"$FAKE_LOG"
[ -z "${FAKE_FAIL:-}" ] || exit 5
echo '{"_meta": {}}' >"$1/spack.lock"
`)
	envDir := filepath.Join(t.TempDir(), "envs", "zephyr")
	log := filepath.Join(t.TempDir(), "build.log")
	env := []string{"ZEPHYR_ENV_SRC=" + src, "ZEPHYR_SPACK_ENV=" + envDir, "FAKE_LOG=" + log}

	r := runScript(t, env, script, "-j", "2")
	if r.code != 0 {
		t.Fatalf("spack-install: code %d\n%s", r.code, r.out)
	}
	if got, _ := os.ReadFile(log); string(got) != envDir+"\n-j\n2\n" {
		t.Errorf("build.sh argv = %q, want the env dir then the install args", got)
	}
	marker, err := os.ReadFile(filepath.Join(envDir, ".zephyr-installed"))
	if err != nil || !strings.Contains(string(marker), "lock-sha256: ") {
		t.Errorf("install marker: %q, %v", marker, err)
	}

	// A failed build leaves no marker, so shells do not activate a half env.
	r = runScript(t, append(env, "FAKE_FAIL=1"), script)
	if r.code == 0 {
		t.Error("failed build.sh reported success")
	}
	if _, err := os.Stat(filepath.Join(envDir, ".zephyr-installed")); !os.IsNotExist(err) {
		t.Errorf("marker still present after a failed install: %v", err)
	}

	// Run from inside a checkout: its pkg/zephyr is found without ZEPHYR_ENV_SRC.
	if _, err := exec.LookPath("git"); err == nil {
		checkout := t.TempDir()
		if r := runCmd(t, nil, exec.Command("git", "init", "-q", checkout)); r.code != 0 {
			t.Fatalf("git init: %s", r.out)
		}
		zephyr := filepath.Join(checkout, "pkg", "zephyr")
		if err := os.MkdirAll(zephyr, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"build.sh", "spack_src.yaml"} {
			data, _ := os.ReadFile(filepath.Join(src, f))
			writeExec(t, filepath.Join(zephyr, f), string(data))
		}
		sub := filepath.Join(checkout, "pkg")
		cmd := exec.Command(script)
		cmd.Dir = sub
		r = runCmd(t, []string{"ZEPHYR_SPACK_ENV=" + envDir, "FAKE_LOG=" + log}, cmd)
		if r.code != 0 || !strings.Contains(mustRead(t, filepath.Join(envDir, ".zephyr-installed")), "source: "+zephyr) {
			t.Errorf("checkout discovery: code %d\n%s", r.code, r.out)
		}
	}

	// No checkout: a clear error.
	r = runScript(t, []string{"ZEPHYR_ENV_SRC=" + t.TempDir(), "ZEPHYR_SPACK_ENV=" + envDir}, script)
	if r.code != 1 || !strings.Contains(r.out, "ZEPHYR_ENV_SRC") {
		t.Errorf("no checkout: code %d, output %q", r.code, r.out)
	}
	noShellErrors(t, r)
}

// Login shells: PATH repaired, the environment activated when installed and
// the shell is interactive, never for scripts, and ZEPHYR_AUTO_ACTIVATE=0 wins.
func TestProfileSnippet(t *testing.T) {
	profile := abs(t, "../entrypoints/zephyr-profile.sh")
	spackRoot := fakeSpackRoot(t)
	envDir := installedEnv(t, true)
	env := []string{"SPACK_ROOT=" + spackRoot, "ZEPHYR_SPACK_ENV=" + envDir, "PATH=/usr/bin:/bin"}
	show := `. "$0"; echo "active=${ZEPHYR_TEST_ACTIVE-none}"; echo "path=$PATH"`

	r := runCmd(t, env, exec.Command("bash", "--norc", "-i", "-c", show, profile))
	if !strings.Contains(r.out, "active="+envDir+"\n") || !strings.Contains(r.out, "path="+spackRoot+"/bin:") {
		t.Errorf("interactive login: %q", r.out)
	}
	r = runCmd(t, env, exec.Command("sh", "-c", show, profile))
	if !strings.Contains(r.out, "active=none") || r.code != 0 {
		t.Errorf("non-interactive sh: code %d %q", r.code, r.out)
	}
	r = runCmd(t, append(env, "ZEPHYR_AUTO_ACTIVATE=0"), exec.Command("bash", "--norc", "-i", "-c", show, profile))
	if !strings.Contains(r.out, "active=none") {
		t.Errorf("opt-out ignored: %q", r.out)
	}
	r = runCmd(t, []string{"SPACK_ROOT=" + spackRoot, "ZEPHYR_SPACK_ENV=" + t.TempDir()}, exec.Command("bash", "--norc", "-i", "-c", show, profile))
	if !strings.Contains(r.out, "active=none") {
		t.Errorf("activated an uninstalled environment: %q", r.out)
	}
	noShellErrors(t, r)
}

// --- container/diagnose_nvidia.sh ----------------------------------------

func TestNvidiaDiagnostics(t *testing.T) {
	script := abs(t, "../diagnose_nvidia.sh")
	fake := t.TempDir()

	if _, err := exec.LookPath("nvidia-smi"); err != nil {
		r := runScript(t, nil, script)
		if r.code != 1 || !strings.Contains(r.out, "RESULT: FAIL no GPU visible") || !strings.Contains(r.out, "nvidia-smi not found") {
			t.Errorf("no GPU: code %d\n%s", r.code, r.out)
		}
		noShellErrors(t, r)
	}

	// nvidia-smi present but the driver is not reachable.
	writeExec(t, filepath.Join(fake, "nvidia-smi"), "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'\nexit 9\n")
	r := runScript(t, []string{"PATH=" + fake + ":/usr/bin:/bin"}, script)
	if r.code != 1 || !strings.Contains(r.out, "could not talk to the driver") || !strings.Contains(r.out, "NVIDIA-SMI has failed") {
		t.Errorf("driver unreachable: code %d\n%s", r.code, r.out)
	}
	noShellErrors(t, r)

	// Two GPUs.
	writeExec(t, filepath.Join(fake, "nvidia-smi"), `#!/bin/sh
case "$1" in
-L) printf 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa)\nGPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-bbbb)\n' ;;
--query-gpu=*) printf 'index, name\n0, NVIDIA H100 80GB HBM3\n1, NVIDIA H100 80GB HBM3\n' ;;
-q) printf 'Driver Version                            : 575.57.08\nCUDA Version                              : 12.9\nAttached GPUs                             : 2\n    Product Name                          : NVIDIA H100 80GB HBM3\n' ;;
esac
`)
	r = runScript(t, []string{"PATH=" + fake + ":/usr/bin:/bin", "NVIDIA_VISIBLE_DEVICES=all"}, script)
	if r.code != 0 || !strings.Contains(r.out, "RESULT: PASS 2 GPU(s) visible") ||
		!strings.Contains(r.out, "Driver Version") || !strings.Contains(r.out, "CUDA Version") ||
		!strings.Contains(r.out, "NVIDIA_VISIBLE_DEVICES      all") {
		t.Errorf("two GPUs: code %d\n%s", r.code, r.out)
	}
	noShellErrors(t, r)
}

// The cuDNN section: torch missing, and a torch that maps a libcudnn file
// (as the real one does when it loads cuDNN) and reports its version.
func TestDiagnoseNvidiaTorchCudnn(t *testing.T) {
	py := needPython(t)
	script := abs(t, "../diagnose_nvidia.sh")
	pathEnv := "PATH=" + filepath.Dir(py) + ":/usr/bin:/bin"

	r := runScript(t, []string{pathEnv, "PYTHONPATH=" + fakePythonPath(t, "torch-missing")}, script)
	if !strings.Contains(r.out, "== cuDNN loaded by torch ==") || !strings.Contains(r.out, "torch not importable") ||
		!strings.Contains(r.out, "simulated: torch not installed") {
		t.Errorf("torch missing: code %d\n%s", r.code, r.out)
	}
	noShellErrors(t, r)

	lib := filepath.Join(t.TempDir(), "libcudnn.so.9.10.2")
	if err := os.WriteFile(lib, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	mods := t.TempDir()
	writeExec(t, filepath.Join(mods, "torch", "__init__.py"), `
import mmap, os
__version__ = "0.0+fake-cudnn"
_f = open(os.environ["FAKE_CUDNN"], "rb")
_m = mmap.mmap(_f.fileno(), 0, prot=mmap.PROT_READ)
class _Cudnn:
    @staticmethod
    def version(): return 91002
class _Backends:
    cudnn = _Cudnn()
backends = _Backends()
`)
	r = runScript(t, []string{pathEnv, "PYTHONPATH=" + mods, "FAKE_CUDNN=" + lib}, script)
	if !strings.Contains(r.out, "torch.backends.cudnn.version() = 91002") || !strings.Contains(r.out, "loaded: "+lib) {
		t.Errorf("torch with cuDNN: code %d\n%s", r.code, r.out)
	}
	noShellErrors(t, r)
}

// --- container/validation -------------------------------------------------

// Stand-in modules, put first on PYTHONPATH so they shadow any real install.
var fakeModules = map[string]map[string]string{
	"torch-missing": {"torch/__init__.py": "raise ImportError('simulated: torch not installed')\n"},
	"torch-cpu": {"torch/__init__.py": `
__version__ = "0.0+fake-cpu"
class _Version:
    cuda = None
version = _Version()
class _Cuda:
    @staticmethod
    def is_available(): return False
    @staticmethod
    def device_count(): return 0
cuda = _Cuda()
class _Cudnn:
    enabled = True
    @staticmethod
    def is_available(): return False
    @staticmethod
    def version(): return None
class _Backends:
    cudnn = _Cudnn()
backends = _Backends()
`},
	"jax-missing": {"jax/__init__.py": "raise ImportError('simulated: jax not installed')\n", "numpy/__init__.py": ""},
	"jax-cpu": {
		"numpy/__init__.py": "",
		"jax/__init__.py": `
__version__ = "0.0+fake-cpu"
def devices(backend=None):
    if backend == "gpu":
        raise RuntimeError("Unknown backend: 'gpu' requested, but no platforms that are instances of gpu are present.")
    return []
def default_backend(): return "cpu"
`,
		"jax/numpy.py":       "",
		"jaxlib/__init__.py": "__version__ = '0.0+fake'\n",
	},
}

func fakePythonPath(t *testing.T, sets ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, set := range sets {
		for name, body := range fakeModules[set] {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func needPython(t *testing.T) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	return py
}

func TestValidateScriptsWithoutGPU(t *testing.T) {
	py := needPython(t)
	torchPy, jaxPy := abs(t, "../validation/validate_torch.py"), abs(t, "../validation/validate_jax.py")
	cudaSh := abs(t, "../validation/validate_cuda.sh")
	pathEnv := "PATH=" + filepath.Dir(py) + ":/usr/bin:/bin"

	tests := []struct {
		name   string
		script string
		fakes  []string
		code   int
		want   []string
	}{
		{"torch missing", torchPy, []string{"torch-missing"}, 2, []string{"MISSING torch: cannot import torch", "RESULT torch: MISSING"}},
		{"torch without CUDA", torchPy, []string{"torch-cpu"}, 1, []string{
			"FAIL torch: CUDA available", "FAIL torch: device count > 0: 0 device(s)",
			"SKIP torch: matmul on GPU matches CPU: no GPU", "SKIP torch: conv2d through cuDNN matches CPU: no GPU",
			"INFO torch: this torch is a CPU-only build", "RESULT torch: FAIL"}},
		{"jax missing", jaxPy, []string{"jax-missing"}, 2, []string{"MISSING jax: cannot import jax", "RESULT jax: MISSING"}},
		{"jax without GPU", jaxPy, []string{"jax-cpu"}, 1, []string{
			"FAIL jax: gpu devices: RuntimeError: Unknown backend: 'gpu'", "SKIP jax: matmul on GPU matches CPU: no GPU", "RESULT jax: FAIL"}},
		{"both missing", cudaSh, []string{"torch-missing", "jax-missing"}, 2, []string{"SUMMARY: torch MISSING, jax MISSING", "RESULT cuda: MISSING"}},
		{"a failure outranks a missing framework", cudaSh, []string{"torch-cpu", "jax-missing"}, 1, []string{"SUMMARY: torch FAIL, jax MISSING", "RESULT cuda: FAIL"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := []string{pathEnv, "PYTHONPATH=" + fakePythonPath(t, tc.fakes...), "PYTHONDONTWRITEBYTECODE=1"}
			var r result
			if strings.HasSuffix(tc.script, ".py") {
				r = runCmd(t, env, exec.Command(py, tc.script))
			} else {
				r = runScript(t, env, tc.script)
			}
			if r.code != tc.code {
				t.Errorf("exit code %d, want %d\n%s", r.code, tc.code, r.out)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.out, w) {
					t.Errorf("output lacks %q:\n%s", w, r.out)
				}
			}
			noShellErrors(t, r)
		})
	}

	// Whatever this machine really has: a verdict, never a traceback.
	r := runScript(t, []string{pathEnv}, cudaSh)
	if !strings.Contains(r.out, "RESULT cuda: ") {
		t.Errorf("no verdict:\n%s", r.out)
	}
	noShellErrors(t, r)
	t.Logf("validate_cuda.sh on this machine: exit %d", r.code)

	// No Python at all.
	r = runScript(t, []string{"PATH=/nonexistent", "PYTHON=python3"}, "/bin/bash", cudaSh)
	if r.code != 2 || !strings.Contains(r.out, "RESULT cuda: MISSING") {
		t.Errorf("no python: code %d\n%s", r.code, r.out)
	}
}
