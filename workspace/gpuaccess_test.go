package workspace

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/container"

	"github.com/sygaldry/sygaldry/internal/gpuprobe"
)

// The Docker-free tier of the GPU access checks (gpuaccess.go): a fake
// engine that lists and inspects a fixed set of containers, and fake probe
// answers.

type fakeInventory []GPU

func (f fakeInventory) GPUs() ([]GPU, error) { return f, nil }

// fakeEngine answers ContainerList with its running containers and
// ContainerInspect with their host configs; any other call panics (the
// embedded nil interface), so a test notices an engine call it did not
// expect.
type fakeEngine struct {
	dockerAPI
	running []container.Summary
	hosts   map[string]*container.HostConfig
}

func (f *fakeEngine) ContainerList(context.Context, container.ListOptions) ([]container.Summary, error) {
	return f.running, nil
}

func (f *fakeEngine) ContainerInspect(_ context.Context, id string) (container.InspectResponse, error) {
	hc, ok := f.hosts[id]
	if !ok {
		return container.InspectResponse{}, errors.New("no such container")
	}
	return container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{ID: id, HostConfig: hc}}, nil
}

func summary(id, project, user string, labels map[string]string) container.Summary {
	l := map[string]string{LabelManaged: "true", LabelProject: project, LabelUser: user}
	for k, v := range labels {
		l[k] = v
	}
	return container.Summary{ID: id, Names: []string{"/" + ContainerName(project, user)}, State: "running", Labels: l}
}

func fakeManager(t *testing.T, api dockerAPI, gpus fakeInventory, probe gpuProber) *Manager {
	t.Helper()
	m, err := newManager(api, nil, Options{AgentPath: "/nonexistent/sygaldry-agent", GPUs: gpus, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	m.probe = probe
	t.Cleanup(func() { m.Close() })
	return m
}

func report(states ...gpuprobe.State) gpuprobe.Report {
	var r gpuprobe.Report
	for i, s := range states {
		r.Devices = append(r.Devices, gpuprobe.Device{Path: "/dev/nvidia" + string(rune('0'+i)), State: s})
	}
	return r
}

// Why a container would be recreated once nobody is inside: a changed
// configuration first, then lost GPUs, then (running, for a project that
// leases) no lease label; otherwise it stays.
func TestStaleReason(t *testing.T) {
	leased := map[string]string{LabelGPUs: "GPU-a"}
	for _, tt := range []struct {
		name          string
		cur           *found
		leasing, lost bool
		want          *staleness
	}{
		{"none", nil, true, false, nil},
		{"current", &found{state: "running", hash: "h", labels: leased}, true, false, nil},
		{"config changed", &found{state: "running", hash: "old", labels: leased}, true, true, &staleConfig},
		{"stopped, config changed", &found{state: "exited", hash: "old"}, false, false, &staleConfig},
		{"lost GPUs", &found{state: "running", hash: "h", labels: leased}, true, true, &staleNVML},
		{"lost GPUs, project no longer leases", &found{state: "running", hash: "h", labels: leased}, false, true, &staleNVML},
		{"made before leases", &found{state: "running", hash: "h"}, true, false, &stalePreLease},
		{"made before leases, project leases none", &found{state: "running", hash: "h"}, false, false, nil},
		{"stopped, made before leases (the lease path remakes it)", &found{state: "exited", hash: "h"}, true, false, nil},
	} {
		if got := staleReason(tt.cur, "h", tt.leasing, tt.lost); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	if got := staleNVML.recreating("sygaldry-zephyr-alice"); got != "Container sygaldry-zephyr-alice lost access to its GPUs; recreating it ..." {
		t.Errorf("progress line %q", got)
	}
	if got := staleConfig.recreating("sygaldry-zephyr-alice"); got != "The configuration of sygaldry-zephyr-alice changed; recreating it ..." {
		t.Errorf("progress line %q", got)
	}
}

// What a probe says is kept per container: a denied device makes it lost
// (login notice, GPULeases), a failed probe changes nothing, an answer
// with every device open clears it, and so does the container being
// stopped (its lease released) or being another container of that name.
func TestGPUAccessRecorded(t *testing.T) {
	var answer gpuprobe.Report
	var probeErr error
	m := fakeManager(t, &fakeEngine{}, fakeInventory{{UUID: "GPU-a", Healthy: true}}, func(context.Context, *found) (gpuprobe.Report, error) {
		return answer, probeErr
	})
	name := ContainerName("zephyr", "alice")
	m.leases.Restore(Lease{Container: name, User: "alice", Project: "zephyr", UUIDs: []string{"GPU-a"}, Mode: "exclusive"})
	c := &found{id: "c1", name: name, state: "running"}
	lost := func() bool {
		ls := m.GPULeases()
		return len(ls) == 1 && ls[0].NVMLLost
	}

	answer = report(gpuprobe.OK, gpuprobe.OK)
	if m.checkGPUAccess(context.Background(), m.log, c) || m.LoginNotice(name) != "" || lost() {
		t.Fatal("lost with every device open")
	}
	answer = report(gpuprobe.OK, gpuprobe.Failed) // a node that went away is not the cgroup
	if m.checkGPUAccess(context.Background(), m.log, c) {
		t.Fatal("lost without a denied device")
	}
	answer = report(gpuprobe.OK, gpuprobe.Denied)
	if !m.checkGPUAccess(context.Background(), m.log, c) || m.LoginNotice(name) != NVMLLostNotice || !lost() {
		t.Fatalf("a denied device: notice %q, leases %+v", m.LoginNotice(name), m.GPULeases())
	}
	probeErr = errors.New("agent gone")
	answer = report(gpuprobe.OK)
	if !m.checkGPUAccess(context.Background(), m.log, c) || !lost() {
		t.Fatal("a failed probe forgot the loss")
	}
	probeErr = nil
	if m.gpuAccessLost(name, "c2") {
		t.Error("another container of that name counts as lost")
	}
	if m.checkGPUAccess(context.Background(), m.log, c) || m.LoginNotice(name) != "" || lost() {
		t.Fatal("still lost after a probe with every device open")
	}
	answer = report(gpuprobe.Denied)
	m.checkGPUAccess(context.Background(), m.log, c)
	m.releaseGPUs(name) // stopped when idle
	if m.LoginNotice(name) != "" {
		t.Error("a stopped container is still lost")
	}
}

// The admin's view probes every running container holding a lease and
// lists, as holders of unknown lease, the running containers made before
// leases that ask the engine for GPUs: a count or "all" may be any GPU, a
// list names its own; a container asking for none is no holder.
func TestGPUHolders(t *testing.T) {
	inv := fakeInventory{{UUID: "GPU-a", Index: 0, Healthy: true}, {UUID: "GPU-b", Index: 1, Healthy: true}}
	eng := &fakeEngine{
		running: []container.Summary{
			summary("c-lost", "zephyr", "alice", map[string]string{LabelGPUs: "GPU-a", LabelGPUMode: "exclusive"}),
			summary("c-fine", "mist", "carol", map[string]string{LabelGPUs: "GPU-b", LabelGPUMode: "shared"}),
			summary("c-all", "zephyr", "old", nil),
			summary("c-listed", "mist", "old", nil),
			summary("c-cpu", "zephyr", "cpu", nil),
		},
		hosts: map[string]*container.HostConfig{
			"c-all":    {Resources: container.Resources{DeviceRequests: []container.DeviceRequest{{Driver: "nvidia", Count: -1}}}},
			"c-listed": {Resources: container.Resources{DeviceRequests: []container.DeviceRequest{{Driver: "nvidia", DeviceIDs: []string{"1"}}}}},
			"c-cpu":    {},
		},
	}
	var mu sync.Mutex
	var probed []string
	m := fakeManager(t, eng, inv, func(_ context.Context, f *found) (gpuprobe.Report, error) {
		mu.Lock()
		probed = append(probed, f.id)
		mu.Unlock()
		if f.id == "c-lost" {
			return report(gpuprobe.Denied), nil
		}
		return report(gpuprobe.OK), nil
	})
	hs := m.GPUHolders(context.Background())
	slices.Sort(probed)
	if !slices.Equal(probed, []string{"c-fine", "c-lost"}) {
		t.Errorf("probed %v, want the two leased containers", probed)
	}
	if len(hs) != 4 {
		t.Fatalf("holders %+v", hs)
	}
	if h := hs[0]; h.Container != "sygaldry-mist-carol" || h.Mode != "shared" || h.NVMLLost {
		t.Errorf("leased holder %+v", h)
	}
	if h := hs[1]; h.Container != "sygaldry-zephyr-alice" || h.Mode != "exclusive" || !h.NVMLLost || m.LoginNotice(h.Container) != NVMLLostNotice {
		t.Errorf("lost holder %+v", h)
	}
	if h := hs[2]; h.Container != "sygaldry-mist-old" || h.Mode != ModeUnknown || !slices.Equal(h.UUIDs, []string{"GPU-b"}) {
		t.Errorf("listed holder %+v", h)
	}
	if h := hs[3]; h.Container != "sygaldry-zephyr-old" || h.Mode != ModeUnknown || !slices.Equal(h.UUIDs, []string{"GPU-a", "GPU-b"}) || h.User != "old" || h.Project != "zephyr" {
		t.Errorf("all holder %+v", h)
	}
	if _, held := m.leases.Held("sygaldry-zephyr-old"); held {
		t.Error("a holder of unknown lease entered the lease table")
	}
}
