package workspace

import (
	"context"
	"github.com/sygaldry/sygaldry/internal/usererr"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"

	"github.com/sygaldry/sygaldry/internal/testenv"
)

// A workspace that is not a directory is refused in one line, before the
// container is made and again when a stopped one is started; once it exists
// it is mounted at /workspace.
func TestEnsureWorkspace(t *testing.T) {
	r := newRig(t, nil)
	p := r.project()
	p.Workspace = "monorepo_home/zephyr"
	ws := filepath.Join(r.opts.StorageRoot, p.Name, "monorepo_home", "zephyr")
	want := "the workspace of project " + p.Name + " (" + ws + ") is not a directory on this host"

	_, err := r.m.Ensure(context.Background(), p, "alice", &testenv.SyncBuffer{})
	if err == nil || !strings.HasPrefix(usererr.Message(err), want) {
		t.Fatalf("missing workspace: %v, message %q", err, usererr.Message(err))
	}
	if n := len(r.containers(p.Name, "alice")); n != 0 {
		t.Errorf("%d containers made for a missing workspace", n)
	}

	if err := os.MkdirAll(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	inst, _ := r.ensure(p, "alice")
	wantMount := container.MountPoint{Type: mount.TypeBind, Source: ws, Destination: "/workspace", RW: true}
	ci := r.inspect(inst.ID)
	if !slices.ContainsFunc(ci.Mounts, func(m container.MountPoint) bool {
		return m.Type == wantMount.Type && m.Source == wantMount.Source && m.Destination == wantMount.Destination && m.RW
	}) {
		t.Errorf("mounts %+v lack %+v", ci.Mounts, wantMount)
	}
	if !slices.Contains(ci.Config.Env, "SYGALDRY_WORKSPACE=/workspace") {
		t.Errorf("env %q lacks SYGALDRY_WORKSPACE=/workspace", ci.Config.Env)
	}

	timeout := 1
	if err := r.cl.ContainerStop(context.Background(), inst.ID, container.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(ws); err != nil {
		t.Fatal(err)
	}
	_, err = r.m.Ensure(context.Background(), p, "alice", &testenv.SyncBuffer{})
	if err == nil || !strings.HasPrefix(usererr.Message(err), want) {
		t.Fatalf("workspace removed while stopped: %v, message %q", err, usererr.Message(err))
	}
}
