package spacklock

// Tests for pkg/zephyr/build.sh: the real script runs in a temporary copy of
// pkg/zephyr with a `spack` stand-in on PATH that records its arguments.
// Spack itself cannot be installed where these tests run.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// spackStandIn logs each call as its arguments joined by tabs, one call a
// line; `concretize` writes the lock named by STANDIN_LOCK into the -e
// directory, STANDIN_FAIL=<subcommand> makes that subcommand fail, and
// `env activate --sh DIR` prints shell code setting STANDIN_ACTIVE=DIR.
const spackStandIn = `#!/usr/bin/env bash
set -euo pipefail
(IFS=$'\t'; printf '%s\n' "$*") >>"$STANDIN_LOG"
env_dir=""
if [ "${1:-}" = "-e" ]; then
	env_dir=$2
	shift 2
fi
if [ "${STANDIN_FAIL:-}" = "${1:-}" ]; then
	echo "stand-in spack: $1 failed" >&2
	exit 3
fi
if [ "${1:-}" = concretize ]; then
	cp "$STANDIN_LOCK" "$env_dir/spack.lock"
fi
if [ "${1:-} ${2:-} ${3:-}" = "env activate --sh" ]; then
	printf 'export STANDIN_ACTIVE=%q\n' "$4"
fi
`

type buildSh struct {
	t       *testing.T
	src     string // temporary copy of pkg/zephyr
	bin     string // holds the stand-in spack
	log     string
	fixture string // lock the stand-in's concretize writes
}

func newBuildSh(t *testing.T) *buildSh {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not available")
	}
	dir := t.TempDir()
	b := &buildSh{t: t, src: filepath.Join(dir, "zephyr"), bin: filepath.Join(dir, "bin"), log: filepath.Join(dir, "spack-calls.log")}
	for _, d := range []string{b.src, b.bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, "../pkg/zephyr/build.sh", filepath.Join(b.src, "build.sh"), 0o755)
	copyFile(t, "../pkg/zephyr/spack_src.yaml", filepath.Join(b.src, "spack_src.yaml"), 0o644)
	if err := os.WriteFile(filepath.Join(b.bin, "spack"), []byte(spackStandIn), 0o755); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(fixtureLock)
	if err != nil {
		t.Fatal(err)
	}
	b.fixture = abs
	return b
}

// run executes build.sh with args; it returns the recorded spack calls, the
// script's stderr and whether it succeeded.
func (b *buildSh) run(env []string, args ...string) (calls []string, stderr string, ok bool) {
	b.t.Helper()
	os.Remove(b.log)
	cmd := exec.Command(filepath.Join(b.src, "build.sh"), args...)
	// The environment directory defaults to the source copy here, never to
	// the image's /opt/spack_store; env may override it (the last one wins).
	cmd.Env = append([]string{
		"ZEPHYR_SPACK_ENV=" + b.src,
		"PATH=" + b.bin + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME=" + b.t.TempDir(),
		"STANDIN_LOG=" + b.log,
		"STANDIN_LOCK=" + b.fixture,
	}, env...)
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	cmd.Stdout = &errBuf
	err := cmd.Run()
	if err != nil {
		if _, isExit := err.(*exec.ExitError); !isExit {
			b.t.Fatalf("run build.sh: %v", err)
		}
	}
	data, rerr := os.ReadFile(b.log)
	if rerr != nil && !os.IsNotExist(rerr) {
		b.t.Fatal(rerr)
	}
	for _, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		if line != "" {
			calls = append(calls, strings.ReplaceAll(line, "\t", " "))
		}
	}
	return calls, errBuf.String(), err == nil
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, mode); err != nil {
		t.Fatal(err)
	}
}

func sameBytes(t *testing.T, a, b string) bool {
	t.Helper()
	da, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(da, db)
}

func wantCalls(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("spack calls:\n  got  %q\n  want %q", got, want)
	}
}

func TestBuildShWithoutLockConcretizesThenInstalls(t *testing.T) {
	b := newBuildSh(t)
	calls, stderr, ok := b.run(nil)
	if !ok {
		t.Fatalf("build.sh failed:\n%s", stderr)
	}
	wantCalls(t, calls,
		"-e "+b.src+" concretize",
		"-e "+b.src+" install --only-concrete")
	if !sameBytes(t, filepath.Join(b.src, "spack_src.yaml"), filepath.Join(b.src, "spack.yaml")) {
		t.Error("spack.yaml is not a copy of spack_src.yaml")
	}
	// The lock concretize wrote is a real lock (the stand-in copies the fixture).
	lf, err := ParseFile(filepath.Join(b.src, "spack.lock"))
	if err != nil || len(lf.Specs) != 48 {
		t.Errorf("written lock: %v", err)
	}
	if !strings.Contains(stderr, "commit it to pin the environment") {
		t.Errorf("no hint to commit the new lock:\n%s", stderr)
	}
}

func TestBuildShWithLockInstallsWithoutConcretizing(t *testing.T) {
	b := newBuildSh(t)
	copyFile(t, fixtureLock, filepath.Join(b.src, "spack.lock"), 0o644)
	calls, stderr, ok := b.run(nil)
	if !ok {
		t.Fatalf("build.sh failed:\n%s", stderr)
	}
	wantCalls(t, calls, "-e "+b.src+" install --only-concrete")
	if !sameBytes(t, fixtureLock, filepath.Join(b.src, "spack.lock")) {
		t.Error("build.sh changed the committed spack.lock")
	}
	if !sameBytes(t, filepath.Join(b.src, "spack_src.yaml"), filepath.Join(b.src, "spack.yaml")) {
		t.Error("spack.yaml missing was not created from spack_src.yaml")
	}
}

func TestBuildShCopiesManifestOnlyWhenNeeded(t *testing.T) {
	b := newBuildSh(t)
	copyFile(t, fixtureLock, filepath.Join(b.src, "spack.lock"), 0o644)
	manifest := filepath.Join(b.src, "spack.yaml")

	// Identical: left alone (same mtime), so Spack sees no manifest change.
	copyFile(t, filepath.Join(b.src, "spack_src.yaml"), manifest, 0o644)
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(manifest, old, old); err != nil {
		t.Fatal(err)
	}
	if _, stderr, ok := b.run(nil); !ok {
		t.Fatalf("build.sh failed:\n%s", stderr)
	}
	if fi, err := os.Stat(manifest); err != nil || !fi.ModTime().Equal(old) {
		t.Errorf("identical spack.yaml was rewritten (mtime %v)", fi.ModTime())
	}

	// Different: replaced, and since a lock exists the user is told it wins.
	if err := os.WriteFile(manifest, []byte("spack:\n  specs: [zlib]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	calls, stderr, ok := b.run(nil)
	if !ok {
		t.Fatalf("build.sh failed:\n%s", stderr)
	}
	if !sameBytes(t, filepath.Join(b.src, "spack_src.yaml"), manifest) {
		t.Error("stale spack.yaml was not replaced")
	}
	if !strings.Contains(stderr, "spack.yaml updated") || !strings.Contains(stderr, "the install follows the lock") {
		t.Errorf("no note about the replaced manifest and the kept lock:\n%s", stderr)
	}
	wantCalls(t, calls, "-e "+b.src+" install --only-concrete")
}

func TestBuildShSeparateEnvDirUsesCommittedLock(t *testing.T) {
	b := newBuildSh(t)
	copyFile(t, fixtureLock, filepath.Join(b.src, "spack.lock"), 0o644)
	envDir := filepath.Join(t.TempDir(), "envs", "zephyr") // created by build.sh
	calls, stderr, ok := b.run(nil, envDir, "-j", "4")
	if !ok {
		t.Fatalf("build.sh failed:\n%s", stderr)
	}
	wantCalls(t, calls, "-e "+envDir+" install --only-concrete -j 4")
	if !sameBytes(t, fixtureLock, filepath.Join(envDir, "spack.lock")) {
		t.Error("committed lock not copied into the environment directory")
	}
	if !sameBytes(t, filepath.Join(b.src, "spack_src.yaml"), filepath.Join(envDir, "spack.yaml")) {
		t.Error("spack.yaml not written into the environment directory")
	}
}

func TestBuildShSeparateEnvDirWithoutLock(t *testing.T) {
	b := newBuildSh(t)
	envDir := t.TempDir()
	calls, stderr, ok := b.run(nil, envDir)
	if !ok {
		t.Fatalf("build.sh failed:\n%s", stderr)
	}
	wantCalls(t, calls, "-e "+envDir+" concretize", "-e "+envDir+" install --only-concrete")
	// The new lock comes back to the source directory, to be committed.
	if !sameBytes(t, fixtureLock, filepath.Join(b.src, "spack.lock")) {
		t.Error("new lock not copied back to the source directory")
	}

	// Rerun: the environment's own lock (same manifest) is reused.
	os.Remove(filepath.Join(b.src, "spack.lock"))
	calls, stderr, ok = b.run(nil, envDir)
	if !ok {
		t.Fatalf("rerun failed:\n%s", stderr)
	}
	wantCalls(t, calls, "-e "+envDir+" install --only-concrete")

	// The manifest changes and no lock is committed: the stale lock is dropped.
	if err := os.WriteFile(filepath.Join(envDir, "spack.yaml"), []byte("spack:\n  specs: [zlib]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	calls, stderr, ok = b.run(nil, envDir)
	if !ok {
		t.Fatalf("third run failed:\n%s", stderr)
	}
	wantCalls(t, calls, "-e "+envDir+" concretize", "-e "+envDir+" install --only-concrete")
}

func TestBuildShFailures(t *testing.T) {
	b := newBuildSh(t)
	calls, stderr, ok := b.run([]string{"SPACK=no-such-spack-binary"})
	if ok || len(calls) != 0 || !strings.Contains(stderr, "'no-such-spack-binary' not found") {
		t.Errorf("missing spack: ok=%v calls=%q stderr=%s", ok, calls, stderr)
	}

	calls, stderr, ok = b.run([]string{"STANDIN_FAIL=concretize"})
	if ok || len(calls) != 1 {
		t.Errorf("failed concretize: ok=%v calls=%q stderr=%s", ok, calls, stderr)
	}

	copyFile(t, fixtureLock, filepath.Join(b.src, "spack.lock"), 0o644)
	_, stderr, ok = b.run([]string{"STANDIN_FAIL=install"})
	if ok || strings.Contains(stderr, "installed the environment") {
		t.Errorf("failed install reported success: ok=%v stderr=%s", ok, stderr)
	}
}

// TestBuildShAndActivationAgree: `./build.sh` with no arguments installs in
// the environment directory the activation scripts read (ZEPHYR_SPACK_ENV,
// else the store's envs/zephyr), marks it installed, and then default.sh and
// spack-env-activate activate exactly that environment.
func TestBuildShAndActivationAgree(t *testing.T) {
	b := newBuildSh(t)
	copyFile(t, fixtureLock, filepath.Join(b.src, "spack.lock"), 0o644)
	envDir := filepath.Join(t.TempDir(), "spack_store", "envs", "zephyr")
	env := []string{"ZEPHYR_SPACK_ENV=" + envDir}
	marker := filepath.Join(envDir, ".zephyr-installed")

	// A failed install leaves no marker.
	if _, _, ok := b.run(append(env, "STANDIN_FAIL=install")); ok {
		t.Fatal("failed install succeeded")
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("a failed install left the installed marker")
	}

	calls, stderr, ok := b.run(env)
	if !ok {
		t.Fatalf("build.sh failed:\n%s", stderr)
	}
	wantCalls(t, calls, "-e "+envDir+" install --only-concrete")
	if data, err := os.ReadFile(marker); err != nil || !strings.Contains(string(data), "lock-sha256: ") {
		t.Fatalf("no installed marker after build.sh: %v %q", err, data)
	}
	if _, err := os.Stat(filepath.Join(b.src, "spack.yaml")); err == nil {
		t.Error("build.sh without ENV_DIR wrote spack.yaml into the source directory")
	}

	// Activation: SPACK_ROOT holds the stand-in as bin/spack.
	spackRoot := filepath.Dir(b.bin)
	for _, script := range []string{"default.sh", "spack-env-activate"} {
		cmd := exec.Command("bash", filepath.Join("..", "container", "entrypoints", script), "sh", "-c", `printf '%s' "$STANDIN_ACTIVE"`)
		cmd.Env = append(os.Environ(), "SPACK_ROOT="+spackRoot, "STANDIN_LOG="+b.log, "ZEPHYR_SPACK_ENV="+envDir, "STANDIN_ACTIVE=")
		out, err := cmd.Output()
		if err != nil || string(out) != envDir {
			t.Errorf("%s activated %q, want %q (%v)", script, out, envDir, err)
		}
	}
}

// TestEnvDirDefaultsAgree: every script that builds, installs or activates the
// Zephyr environment has the same default directory, on the persistent store.
func TestEnvDirDefaultsAgree(t *testing.T) {
	const want = "${ZEPHYR_SPACK_ENV:-/opt/spack_store/envs/zephyr}"
	for _, f := range []string{
		"../pkg/zephyr/build.sh",
		"../container/entrypoints/spack-install.sh",
		"../container/entrypoints/spack-env-activate",
		"../container/entrypoints/default.sh",
		"../container/entrypoints/zephyr-profile.sh",
	} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), want) {
			t.Errorf("%s does not default the environment directory to %s", f, want)
		}
	}
}
