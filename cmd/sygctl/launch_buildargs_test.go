package main

import (
	"context"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"

	"github.com/sygaldry/sygaldry/internal/testenv"
)

// TestLaunchBuildArgsFromEnvironment: SYGALDRY_BUILD_ARG_<NAME> sets build
// arg NAME over the config's build_args, without changing the config's.
func TestLaunchBuildArgsFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	agent := filepath.Join(dir, "sygaldry-agent")
	cfg := filepath.Join(dir, "gateway.toml")
	if err := os.WriteFile(agent, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte("[defaults]\nbuild_args = { BAZEL_VERSION = \"6.4.0\", RUST_VERSION = \"1.79.0\" }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SYGALDRY_PROJECT_ID", "zephyr")
	t.Setenv("SYGALDRY_IMAGE", "")
	t.Setenv("SYGALDRY_BUILD_ARG_BAZEL_VERSION", "7.4.1")
	t.Setenv("SYGALDRY_BUILD_ARG_PYTHON_VERSION", "3.12")
	ls, rc := parseLaunch([]string{"--config", cfg, "--agent", agent, "--user", "tester"}, io.Discard, io.Discard)
	if rc >= 0 {
		t.Fatalf("parseLaunch exited %d", rc)
	}
	want := map[string]string{"BAZEL_VERSION": "7.4.1", "PYTHON_VERSION": "3.12", "RUST_VERSION": "1.79.0"}
	if !maps.Equal(ls.project.BuildArgs, want) {
		t.Errorf("build args %v, want %v", ls.project.BuildArgs, want)
	}
}

// TestLaunchBuildsImageOverrideWithBuildArgs: a missing SYGALDRY_IMAGE is
// built from the configured Dockerfile, with SYGALDRY_BUILD_ARG_* over the
// config's build_args.
func TestLaunchBuildsImageOverrideWithBuildArgs(t *testing.T) {
	r := newLaunchRig(t)
	tag := "sygaldry-test/" + testenv.UniqueName("variant") + ":latest"
	t.Cleanup(func() {
		testenv.RemoveLabelled(t, r.cl, r.testID)
		if _, err := r.cl.ImageRemove(context.Background(), tag, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove image %s: %v", tag, err)
		}
	})
	dir := testenv.ShortTempDir(t)
	df := filepath.Join(dir, "dev.dockerfile")
	if err := os.WriteFile(df, []byte("FROM "+r.image+"\nARG BAZEL_VERSION=6.4.0\nARG RUST_VERSION=1.79.0\n"+
		"RUN echo \"bazel=${BAZEL_VERSION} rust=${RUST_VERSION}\" > /etc/build-args\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "gateway.toml")
	doc := "[defaults]\nimage = \"sygaldry/zephyr:base\"\ndockerfile = \"" + df + "\"\n" +
		"build_args = { BAZEL_VERSION = \"6.4.0\", RUST_VERSION = \"1.80.0\" }\n"
	if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := r.cmd("--config", cfg, "cat", "/etc/build-args")
	cmd.Env = append(cmd.Env, "SYGALDRY_IMAGE="+tag, "SYGALDRY_BUILD_ARG_BAZEL_VERSION=7.4.1")
	out, err := cmd.Output()
	if err != nil || string(out) != "bazel=7.4.1 rust=1.80.0\n" {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Errorf("built variant: %v, stdout %q, stderr %s", err, out, stderr)
	}
}
