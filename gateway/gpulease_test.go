//go:build cgo

package gateway_test

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/gpu"
	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/workspace"
)

// On a host without NVIDIA GPUs (the NVML library cannot be loaded), a
// project that asks for a GPU is refused through the real OpenSSH client
// with one line saying what the administrator should do, and no container is
// made; a project with gpus = "none" on the same gateway works.
func TestGPUProjectOnHostWithoutGPUs(t *testing.T) {
	inv := gpu.Open(gpu.Options{LibraryPath: "/nonexistent/libnvidia-ml.so.1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { inv.Close() })
	w := newWorld(t,
		withProjectTOML("gpus = 1"),
		withManager(func(o *workspace.Options) { o.GPUs = workspace.NVMLInventory(inv) }))
	ctx := ctxT(t, 2*time.Minute)

	r := sshtest.Run(t, w.client(w.alice).SSH(ctx, "true"), nil)
	want := "project " + w.project + ` asks for GPUs (gpus = 1) but this host has no NVIDIA GPUs; the administrator should set gpus = "none" for it`
	if r.Code == 0 || !strings.Contains(r.Stderr, want) {
		t.Errorf("ssh: %s\nwant the line %q", r, want)
	}
	if n := strings.Count(r.Stderr, "NVIDIA"); n != 1 {
		t.Errorf("the refusal is said %d times: %q", n, r.Stderr)
	}
	if cs := w.containers(ctx, "alice"); len(cs) != 0 {
		t.Errorf("a refused login left %d containers", len(cs))
	}

	// [defaults] has gpus = "none": carol's project needs no GPU.
	if r := sshtest.Run(t, w.client(w.carol, "other").SSH(ctx, "id -un"), nil); r.Code != 0 || r.Stdout != "kvothe\n" {
		t.Errorf("gpus = none project: %s", r)
	}
}
