package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/internal/testenv"
)

// The daemon on a host without NVIDIA's library (SYGALDRY_NVML_LIBRARY
// points at nothing, so this holds on a GPU host too): it starts, says so
// in one log line, `sygctl gpus` answers "no NVIDIA GPUs on this host" with
// exit 0, and it stops cleanly. Needs no Docker: nothing here starts a
// container.
func TestDaemonWithoutGPUs(t *testing.T) {
	dir := testenv.ShortTempDir(t)
	bin := testenv.Binary(t, "./cmd/gateway", "sygaldry-gateway")
	sygctl := testenv.Binary(t, "./cmd/sygctl", "sygctl")
	agent := filepath.Join(dir, "sygaldry-agent") // only looked at, never run here
	if err := os.WriteFile(agent, []byte("#!/bin/false\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	port, metricsPort := freePort(t), freePort(t)
	sock := filepath.Join(dir, "admin.sock")
	cfgPath := filepath.Join(dir, "gateway.toml")
	cfg := fmt.Sprintf(`[server]
listen = "127.0.0.1:%d"
state_dir = %q
admin_socket = %q
metrics_listen = "127.0.0.1:%d"
agent_path = %q
[docker]
storage_root = %q
`, port, filepath.Join(dir, "state"), sock, metricsPort, agent, filepath.Join(dir, "storage"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	gw, logs, exited := startDaemon(t, bin, cfgPath, port, nvmlLibraryEnv+"="+filepath.Join(dir, "no-such", "libnvidia-ml.so.1"))

	out, err := exec.Command(sygctl, "--socket", sock, "gpus").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "no NVIDIA GPUs on this host") || strings.Count(string(out), "\n") != 1 {
		t.Errorf("sygctl gpus: %v\n%s", err, out)
	}
	out, err = exec.Command(sygctl, "--socket", sock, "gpus", "--json").Output()
	var rep struct {
		Available *bool             `json:"available"`
		Message   string            `json:"message"`
		GPUs      []json.RawMessage `json:"gpus"`
	}
	if err != nil || json.Unmarshal(out, &rep) != nil || rep.Available == nil || *rep.Available || rep.GPUs == nil ||
		!strings.HasPrefix(rep.Message, "no NVIDIA GPUs on this host") {
		t.Errorf("sygctl gpus --json: %v\n%s", err, out)
	}
	if n := strings.Count(logs.String(), "running without GPUs"); n != 1 || !strings.Contains(logs.String(), "no NVIDIA GPUs on this host") {
		t.Errorf("want one log line saying the gateway runs without GPUs, got %d", n)
	}

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "sygaldry_gpus 0\n") {
		t.Errorf("metrics lack sygaldry_gpus 0:\n%s", body)
	}

	gw.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("gateway exit after SIGTERM: %v", err)
		}
		exited <- err
	case <-time.After(30 * time.Second):
		t.Error("gateway did not stop after SIGTERM")
	}
}
