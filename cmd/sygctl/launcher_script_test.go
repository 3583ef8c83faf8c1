package main

// Tests for container/launch_container.sh with the real engine: a copy of
// the launcher and its entrypoints in a temporary checkout, driving the
// sygctl built for these tests.

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sygaldry/sygaldry/internal/testenv"
)

// launcherScript lays out <dir>/container/{launch_container.sh,entrypoints/}
// from the repository plus a test entrypoint probe.sh, and a sygctl wrapper
// that adds the rig's flags.
func launcherScript(t *testing.T, r *launchRig) (script, sygctl string) {
	t.Helper()
	dir := t.TempDir()
	ep := filepath.Join(dir, "container", "entrypoints")
	if err := os.MkdirAll(ep, 0o755); err != nil {
		t.Fatal(err)
	}
	root := testenv.RepoRoot()
	cp := func(from, to string, mode os.FileMode) {
		data, err := os.ReadFile(filepath.Join(root, from))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, mode); err != nil {
			t.Fatal(err)
		}
	}
	script = filepath.Join(dir, "container", "launch_container.sh")
	cp("container/launch_container.sh", script, 0o755)
	for _, f := range []string{"default.sh", "spack-env-activate", "spack-install.sh"} {
		cp("container/entrypoints/"+f, filepath.Join(ep, f), 0o755)
	}
	cp("container/entrypoints/zephyr-profile.sh", filepath.Join(ep, "zephyr-profile.sh"), 0o644)
	probe := "#!/usr/bin/env bash\nprintf 'probe %s:' \"$0\"; printf ' [%s]' \"$@\"; echo\n"
	if err := os.WriteFile(filepath.Join(ep, "probe.sh"), []byte(probe), 0o755); err != nil {
		t.Fatal(err)
	}
	sygctl = filepath.Join(dir, "sygctl")
	wrapper := "#!/bin/sh\nshift\nexec '" + filepath.Join(r.bin, "sygctl") + "' launch --state-dir '" + r.state +
		"' --user tester --label '" + testenv.TestLabel + "=" + r.testID + "' \"$@\"\n"
	if err := os.WriteFile(sygctl, []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, sygctl
}

func runLauncher(t *testing.T, r *launchRig, sygctl, stdin, script string, args ...string) (string, string, int) {
	t.Helper()
	return runLauncherIn(t, r, t.TempDir(), sygctl, stdin, script, args...) // not a git checkout
}

func runLauncherIn(t *testing.T, r *launchRig, dir, sygctl, stdin, script string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{script}, args...)...)
	cmd.Env = append(r.cmd().Env, "SYGCTL="+sygctl)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run launcher: %v", err)
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

func TestLauncherEntrypoints(t *testing.T) {
	r := newLaunchRig(t)
	script, sygctl := launcherScript(t, r)

	// Unknown names are refused before sygctl runs (there is none here).
	for _, args := range [][]string{{"--entrypoint", "nope"}, {"--entrypoint", "zephyr-profile"}, {"--entrypoint"}, {"--entrypoint", "../default"}} {
		_, stderr, code := runLauncher(t, r, "/nonexistent/sygctl", "", script, args...)
		if code != 2 || !strings.Contains(stderr, "available: default probe spack-install\n") {
			t.Errorf("%q: exit %d, stderr %q", args, code, stderr)
		}
	}

	// --entrypoint NAME ARGS runs entrypoints/NAME.sh with the arguments.
	stdout, stderr, code := runLauncher(t, r, sygctl, "", script, "--entrypoint", "probe", "a b", "$HOME", "")
	if code != 0 || stdout != "probe probe.sh: [a b] [$HOME] []\n" {
		t.Errorf("probe: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	// CMD runs through default.sh (which says the environment is not
	// installed in this image) and keeps its exit code.
	stdout, stderr, code = runLauncher(t, r, sygctl, "", script, "sh", "-c", "echo cmd $0; exit 5", "x y")
	if code != 5 || stdout != "cmd x y\n" || !strings.Contains(stderr, "zephyr: the Spack environment") {
		t.Errorf("command: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	// No arguments: default.sh's interactive shell, here reading stdin.
	stdout, stderr, code = runLauncher(t, r, sygctl, "echo shell $((6*7)); exit 4\n", script)
	if code != 4 || !strings.Contains(stdout, "shell 42\n") {
		t.Errorf("shell: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestLauncherWorkspace: run from inside a git checkout, the launcher mounts
// the checkout's top level at /workspace and the command starts there.
func TestLauncherWorkspace(t *testing.T) {
	r := newLaunchRig(t)
	script, sygctl := launcherScript(t, r)
	checkout := testenv.ShortTempDir(t)
	if out, err := exec.Command("git", "init", "-q", checkout).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(checkout, "WORKSPACE"), []byte("from the checkout\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(checkout, "pkg")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runLauncherIn(t, r, sub, sygctl, "", script, "sh", "-c", "pwd; cat WORKSPACE")
	if code != 0 || stdout != "/workspace\nfrom the checkout\n" {
		t.Errorf("from a checkout: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
