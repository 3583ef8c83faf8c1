package gateway_test

import (
	"context"
	"github.com/sygaldry/sygaldry/admin/api"
	"github.com/sygaldry/sygaldry/internal/bind"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/admin"
	"github.com/sygaldry/sygaldry/admin/client"
	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
	"github.com/sygaldry/sygaldry/workspace"
)

// oneGPU is a host with the one healthy GPU of that UUID, for the lease
// table and for the admin API's inventory.
type oneGPU string

func (g oneGPU) GPUs() ([]workspace.GPU, error) {
	return []workspace.GPU{{UUID: string(g), Index: 0, Healthy: true}}, nil
}

type oneGPUReport string

func (g oneGPUReport) GPUs(context.Context) api.GPUReport {
	return api.GPUReport{Available: true, GPUs: []api.GPUInfo{{Index: 0, UUID: string(g), Health: "healthy"}}}
}

// GET /v1/gpus names a GPU's holder from the container manager's lease
// table: a running container carrying a lease label, read back by a
// restarted manager as the gateway does at start, idle since then, and in
// use while a connection holds it.
func TestAdminGPUsNamesLeaseHolder(t *testing.T) {
	const uuid = "GPU-7e57a11c-0000-4000-8000-000000000001"
	var mopts workspace.Options
	w := newWorld(t, withManager(func(o *workspace.Options) {
		// As a container made with this GPU would carry it.
		o.Labels[workspace.LabelGPUs] = uuid
		o.Labels[workspace.LabelGPUMode] = config.GPUShared
		mopts = *o
	}))
	ctx := ctxT(t, 2*time.Minute)
	if r := sshtest.Run(t, w.client(w.alice).SSH(ctx, "true"), nil); r.Code != 0 {
		t.Fatalf("ssh: %s", r)
	}

	mopts.GPUs = oneGPU(uuid)
	m2, err := workspace.NewManager(mopts)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if err := m2.RestoreLeases(ctx); err != nil {
		t.Fatal(err)
	}

	sock := testenv.ShortTempDir(t) + "/admin.sock"
	l, err := admin.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &admin.Server{GPUs: oneGPUReport(uuid), Leases: bind.AdminGPULeases(m2)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	cl := client.New(sock)

	holder := func() api.GPUHolder {
		t.Helper()
		rep, err := cl.GPUs(ctx)
		if err != nil || len(rep.GPUs) != 1 || len(rep.GPUs[0].Holders) != 1 {
			t.Fatalf("%+v %v", rep, err)
		}
		return rep.GPUs[0].Holders[0]
	}
	name := "sygaldry-" + w.project + "-alice"
	h := holder()
	if h.Container != name || h.User != "alice" || h.Project != w.project || h.Mode != config.GPUShared || h.InUse || h.IdleSeconds == nil || *h.IdleSeconds > 60 {
		t.Errorf("idle holder = %+v", h)
	}
	m2.Acquire(name)
	if h := holder(); !h.InUse || h.IdleSeconds != nil {
		t.Errorf("holder in use = %+v", h)
	}
	m2.Release(name)
}
