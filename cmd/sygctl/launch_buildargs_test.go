package main

import (
	"io"
	"maps"
	"os"
	"path/filepath"
	"testing"
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
	ls, rc := parseLaunch([]string{"--config", cfg, "--agent", agent, "--user", "tester"}, io.Discard)
	if rc >= 0 {
		t.Fatalf("parseLaunch exited %d", rc)
	}
	want := map[string]string{"BAZEL_VERSION": "7.4.1", "PYTHON_VERSION": "3.12", "RUST_VERSION": "1.79.0"}
	if !maps.Equal(ls.project.BuildArgs, want) {
		t.Errorf("build args %v, want %v", ls.project.BuildArgs, want)
	}
}
