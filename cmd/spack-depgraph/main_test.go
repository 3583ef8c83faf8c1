package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The command writes exactly what the spacklock golden test pins.
func TestRunWritesGolden(t *testing.T) {
	out := filepath.Join(t.TempDir(), "DEPENDENCY_GRAPH.md")
	err := run([]string{
		"-o", out,
		"-title", "Example: cuda-nccl environment (test fixture, not Zephyr)",
		"-source", "spacklock/testdata/cuda-nccl.v5.spack.lock",
		"../../spacklock/testdata/cuda-nccl.v5.spack.lock",
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../spacklock/testdata/cuda-nccl.DEPENDENCY_GRAPH.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("command output differs from spacklock/testdata/cuda-nccl.DEPENDENCY_GRAPH.md")
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("output mode = %v, %v", fi.Mode(), err)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".DEPENDENCY_GRAPH.md.*"))
	if len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func TestRunErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "spack.lock")
	if err := os.WriteFile(bad, []byte(`{"_meta": {"file-type": "spack-lockfile", "lockfile-version": 2}, "concrete_specs": {}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{nil, "exactly one LOCKFILE"},
		{[]string{"a", "b"}, "exactly one LOCKFILE"},
		{[]string{filepath.Join(t.TempDir(), "missing.lock")}, "no such file"},
		{[]string{bad}, "lockfile-version 2"},
	} {
		err := run(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("run(%q) = %v, want an error mentioning %q", tc.args, err, tc.msg)
		}
	}
}
