//go:build cgo

package workspace

import (
	"context"
	"errors"
	"github.com/sygaldry/sygaldry/internal/usererr"
	"io"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/gpu"
)

// A leased spec names exactly the leased UUIDs and records them in labels,
// and its hash is the configuration's: the same lease or another one never
// recreates a container.
func TestWithLeaseSpec(t *testing.T) {
	in := baseInput()
	in.Project.GPUs = config.GPUs{Set: true, Count: 2}
	spec := mustSpec(t, in)
	before := maps.Clone(spec.Config.Labels)
	l := Lease{Container: spec.Name, User: "alice", Project: "zephyr", UUIDs: []string{"GPU-b", "GPU-a"}, Mode: config.GPUShared}
	got := WithLease(spec, l)

	want := []container.DeviceRequest{{Driver: "nvidia", DeviceIDs: []string{"GPU-b", "GPU-a"}, Capabilities: [][]string{{"gpu"}}}}
	if !reflect.DeepEqual(got.HostConfig.DeviceRequests, want) {
		t.Errorf("device requests = %+v, want %+v", got.HostConfig.DeviceRequests, want)
	}
	if got.Config.Labels[LabelGPUs] != "GPU-b,GPU-a" || got.Config.Labels[LabelGPUMode] != config.GPUShared {
		t.Errorf("lease labels = %q %q", got.Config.Labels[LabelGPUs], got.Config.Labels[LabelGPUMode])
	}
	if slices.ContainsFunc(got.Config.Env, func(e string) bool { return strings.HasPrefix(e, "NVIDIA_VISIBLE_DEVICES=") }) {
		t.Errorf("a leased container's env sets NVIDIA_VISIBLE_DEVICES itself: %q", got.Config.Env)
	}
	if got.Hash != spec.Hash || got.Config.Labels[LabelSpec] != spec.Hash {
		t.Errorf("hash changed by a lease: %s -> %s (label %s)", spec.Hash, got.Hash, got.Config.Labels[LabelSpec])
	}
	// The hash of the configuration alone, rebuilt: what a later login
	// compares with the container's label.
	if again := mustSpec(t, in); again.Hash != got.Config.Labels[LabelSpec] {
		t.Errorf("rebuilt hash %s differs from the leased container's %s", again.Hash, got.Config.Labels[LabelSpec])
	}
	if !maps.Equal(spec.Config.Labels, before) || spec.HostConfig.DeviceRequests[0].Count != 2 {
		t.Error("WithLease changed the spec it was given")
	}
	if e := WithLease(spec, Lease{}); !reflect.DeepEqual(e.HostConfig.DeviceRequests, spec.HostConfig.DeviceRequests) {
		t.Errorf("an empty lease changed the requests: %+v", e.HostConfig.DeviceRequests)
	}
}

// noNVML is the inventory of a host without the NVIDIA library: the real
// gpu.Open, pointed at a library that does not exist.
func noNVML(t *testing.T) GPUInventory {
	inv := gpu.Open(gpu.Options{LibraryPath: "/nonexistent/libnvidia-ml.so.1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { inv.Close() })
	return NVMLInventory(inv)
}

// On a host without GPUs, a project asking for some is refused with one
// clear line and nothing is created; gpus = "none" and SYGALDRY_GPU=false
// work.
func TestEnsureNoHostGPUs(t *testing.T) {
	r := newRig(t, func(o *Options) { o.GPUs = noNVML(t) })
	p := r.project()
	for _, tt := range []struct {
		gpus config.GPUs
		word string
	}{{config.GPUs{Set: true, Count: 1}, "1"}, {config.GPUs{}, "1"}, {config.GPUs{Set: true, All: true}, `"all"`}} {
		p.GPUs = tt.gpus
		_, err := r.m.Ensure(context.Background(), p, "alice", io.Discard)
		if !errors.Is(err, ErrNoHostGPUs) {
			t.Fatalf("gpus = %s: err = %v, want ErrNoHostGPUs", tt.word, err)
		}
		want := "project " + p.Name + " asks for GPUs (gpus = " + tt.word + `) but this host has no NVIDIA GPUs; the administrator should set gpus = "none" for it`
		if msg := usererr.Message(err); msg != want {
			t.Errorf("message = %q\nwant      %q", msg, want)
		}
		if cs := r.containers(p.Name, "alice"); len(cs) != 0 {
			t.Errorf("a refused lease left %d containers", len(cs))
		}
	}
	p.GPUs = config.GPUs{Set: true}
	inst, _ := r.ensure(p, "alice")
	ci := r.inspect(inst.ID)
	if dr := ci.HostConfig.DeviceRequests; len(dr) != 0 || !slices.Contains(ci.Config.Env, "NVIDIA_VISIBLE_DEVICES=void") {
		t.Errorf("gpus = none: device requests %+v, env %q", dr, ci.Config.Env)
	}

	r2 := newRig(t, func(o *Options) { o.GPUs = noNVML(t); o.DisableGPUs = true })
	p2 := r2.project()
	p2.GPUs = config.GPUs{Set: true, Count: 1}
	inst, _ = r2.ensure(p2, "alice")
	if dr := r2.inspect(inst.ID).HostConfig.DeviceRequests; len(dr) != 0 || len(r2.m.leases.Leases()) != 0 {
		t.Errorf("GPUs disabled: device requests %+v, leases %v", dr, r2.m.leases.Leases())
	}
}

// A login whose GPUs are all held by a running container is refused with the
// holder named, and nothing is created; once the holder stopped behind the
// manager's back, its lease is dropped and the next login gets the GPUs.
func TestEnsureGPUsBusy(t *testing.T) {
	s := mockMachine(t, 2, nil, nil)
	r := newRig(t, func(o *Options) { o.GPUs = mockGPUs(t, s) })
	holder := r.project()
	hinst, _ := r.ensure(holder, "bob")
	r.m.leases.Restore(Lease{Container: hinst.Name, User: "bob", Project: holder.Name, UUIDs: []string{uuidOf(s, 0), uuidOf(s, 1)}, Mode: config.GPUExclusive})

	r.m.Acquire(hinst.Name)
	if ls := r.m.GPULeases(); len(ls) != 1 || ls[0].Container != hinst.Name || ls[0].Idle != "in use" || !ls[0].InUse || !ls[0].IdleSince.IsZero() || len(ls[0].UUIDs) != 2 {
		t.Errorf("GPULeases = %+v", ls)
	}
	r.m.Release(hinst.Name)
	if ls := r.m.GPULeases(); len(ls) != 1 || ls[0].InUse || ls[0].IdleSince.IsZero() || time.Since(ls[0].IdleSince) > time.Minute {
		t.Errorf("GPULeases after the last connection = %+v", ls)
	}

	p := r.project()
	p.GPUs = config.GPUs{Set: true, Count: 1}
	_, err := r.m.Ensure(context.Background(), p, "alice", io.Discard)
	if !errors.Is(err, ErrGPUsBusy) {
		t.Fatalf("err = %v, want ErrGPUsBusy", err)
	}
	want := "2 of 2 GPUs are leased: " + hinst.Name + " (idle <1m); project " + p.Name + " needs 1"
	if msg := usererr.Message(err); msg != want {
		t.Errorf("message = %q\nwant      %q", msg, want)
	}
	if cs := r.containers(p.Name, "alice"); len(cs) != 0 {
		t.Errorf("a refused lease left %d containers", len(cs))
	}

	timeout := 1
	if err := r.cl.ContainerStop(context.Background(), hinst.ID, container.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	_, err = r.m.Ensure(context.Background(), p, "alice", io.Discard)
	if errors.Is(err, ErrGPUsBusy) {
		t.Fatalf("the stopped holder's lease was kept: %v", err)
	}
	if _, held := r.m.leases.Held(hinst.Name); held {
		t.Error("the stopped holder still holds its GPUs")
	}
	// The mock's GPUs are not on this host: the engine cannot attach them,
	// and the lease goes back with the failed start.
	if err == nil {
		t.Fatal("a container with mock GPUs started")
	}
	if _, held := r.m.leases.Held(ContainerName(p.Name, "alice")); held {
		t.Errorf("a container that did not start keeps its lease (err %v)", err)
	}
	// The engine made the container before failing to start it: it asks
	// for exactly the leased GPU, recorded on its labels.
	cs := r.containers(p.Name, "alice")
	if len(cs) != 1 {
		t.Fatalf("%d containers after the failed start (err %v)", len(cs), err)
	}
	ci := r.inspect(cs[0].ID)
	dr := ci.HostConfig.DeviceRequests
	if len(dr) != 1 || dr[0].Count != 0 || !slices.Equal(dr[0].DeviceIDs, []string{uuidOf(s, 0)}) {
		t.Errorf("device requests %+v, want exactly %s", dr, uuidOf(s, 0))
	}
	if ci.Config.Labels[LabelGPUs] != uuidOf(s, 0) || ci.Config.Labels[LabelGPUMode] != config.GPUExclusive {
		t.Errorf("lease labels %q %q", ci.Config.Labels[LabelGPUs], ci.Config.Labels[LabelGPUMode])
	}
}

// An idle stop gives the container's GPUs back.
func TestIdleStopReleasesGPUs(t *testing.T) {
	s := mockMachine(t, 1, nil, nil)
	r := newRig(t, func(o *Options) { o.GPUs = mockGPUs(t, s); o.IdleStop = time.Second })
	inst, _ := r.ensure(r.project(), "alice")
	r.m.leases.Restore(Lease{Container: inst.Name, User: "alice", UUIDs: []string{uuidOf(s, 0)}, Mode: config.GPUExclusive})
	deadline := time.Now().Add(30 * time.Second)
	for r.inspect(inst.ID).State.Running && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if r.inspect(inst.ID).State.Running {
		t.Fatal("not stopped when idle")
	}
	for time.Now().Before(deadline) {
		if _, held := r.m.leases.Held(inst.Name); !held {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Error("an idle-stopped container keeps its GPUs")
}

// A restarted gateway reads the leases back from the running containers'
// labels.
func TestRestoreLeasesFromLabels(t *testing.T) {
	s := mockMachine(t, 2, nil, nil)
	r := newRig(t, nil)
	// A container carrying a lease label, as one made with GPUs would.
	r.opts.Labels[LabelGPUs] = uuidOf(s, 1)
	r.opts.Labels[LabelGPUMode] = config.GPUShared
	m, err := NewManager(r.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	p := r.project()
	if _, err := m.Ensure(context.Background(), p, "alice", io.Discard); err != nil {
		t.Fatal(err)
	}

	opts := r.opts
	opts.GPUs = mockGPUs(t, s)
	m2, err := NewManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if err := m2.RestoreLeases(context.Background()); err != nil {
		t.Fatal(err)
	}
	name := ContainerName(p.Name, "alice")
	l, held := m2.leases.Held(name)
	if !held || l.User != "alice" || l.Project != p.Name || l.Mode != config.GPUShared || !slices.Equal(l.UUIDs, []string{uuidOf(s, 1)}) {
		t.Fatalf("restored lease %+v (held %v)", l, held)
	}
	gs := readGPUs(t, opts.GPUs)
	_, err = m2.leases.Grant(req("other", "bob", count(2), ""), gs)
	if msg := usererr.Message(err); !strings.Contains(msg, "1 of 2 GPUs are leased: "+name) {
		t.Errorf("refusal %q does not name the restored holder", msg)
	}
}

// A stopped container leases the GPUs on its label again; when one of them
// is taken meanwhile, it is made anew with a new lease. (The mock's GPUs
// are not on this host, so every start fails after the create: the
// containers stay stopped, which is the state under test.)
func TestStoppedContainerReleases(t *testing.T) {
	s := mockMachine(t, 2, nil, nil)
	r := newRig(t, func(o *Options) { o.GPUs = mockGPUs(t, s) })
	p := r.project()
	p.GPUs = config.GPUs{Set: true, Count: 1}
	name := ContainerName(p.Name, "alice")
	made := func() container.InspectResponse {
		t.Helper()
		if _, err := r.m.Ensure(context.Background(), p, "alice", io.Discard); err == nil {
			t.Fatal("a container with mock GPUs started")
		}
		if _, held := r.m.leases.Held(name); held {
			t.Error("a container that did not start keeps its lease")
		}
		cs := r.containers(p.Name, "alice")
		if len(cs) != 1 {
			t.Fatalf("%d containers", len(cs))
		}
		return r.inspect(cs[0].ID)
	}
	first := made()
	if got := first.Config.Labels[LabelGPUs]; got != uuidOf(s, 0) {
		t.Fatalf("first lease %q, want GPU 0", got)
	}
	// Nothing else holds GPU 0: the same container is started again.
	if again := made(); again.ID != first.ID {
		t.Errorf("recreated (%s -> %s) although its GPU was free", first.ID[:12], again.ID[:12])
	}

	// GPU 0 goes to a running container: the stopped one is made anew
	// with GPU 1.
	holder := r.project()
	hinst, _ := r.ensure(holder, "bob")
	r.m.leases.Restore(Lease{Container: hinst.Name, User: "bob", Project: holder.Name, UUIDs: []string{uuidOf(s, 0)}, Mode: config.GPUExclusive})
	next := made()
	if next.ID == first.ID {
		t.Fatal("kept although its GPU is leased to another container")
	}
	dr := next.HostConfig.DeviceRequests
	if next.Config.Labels[LabelGPUs] != uuidOf(s, 1) || len(dr) != 1 || !slices.Equal(dr[0].DeviceIDs, []string{uuidOf(s, 1)}) {
		t.Errorf("new lease %q, requests %+v; want GPU 1", next.Config.Labels[LabelGPUs], dr)
	}
	if l, _ := r.m.leases.Held(hinst.Name); !slices.Equal(l.UUIDs, []string{uuidOf(s, 0)}) {
		t.Errorf("the holder's lease changed: %v", l.UUIDs)
	}
}
