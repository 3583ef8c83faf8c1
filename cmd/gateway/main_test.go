package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The admin's view of a bad config: exit 2 and file:line, before anything
// is started.
func TestBadConfigNamesFileAndLine(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "sygaldry-gateway")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "gw.toml")
	os.WriteFile(cfg, []byte("[server]\nlisten = \"127.0.0.1:0\"\n\n[projects.zephyr]\nmembers = []\nimagee = \"x\"\n"), 0o644)
	out, err := exec.Command(bin, "--config", cfg).CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v, want 2\n%s", err, out)
	}
	if !strings.Contains(string(out), cfg+":6: unknown key \"projects.zephyr.imagee\"") {
		t.Errorf("output %q lacks file:line", out)
	}

	good := filepath.Join(dir, "ok.toml")
	os.WriteFile(good, []byte("[server]\nlisten = \"127.0.0.1:0\"\n"), 0o644)
	if out, err := exec.Command(bin, "--check", "--config", good).CombinedOutput(); err != nil || !strings.Contains(string(out), "ok") {
		t.Errorf("--check of a good config: %v %s", err, out)
	}
	if out, err := exec.Command(bin, "--config", filepath.Join(dir, "missing.toml")).CombinedOutput(); err == nil || !strings.Contains(string(out), "missing.toml") {
		t.Errorf("missing config: %v %s", err, out)
	}
}
