//go:build cgo

package workspace

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/internal/testenv"
)

// nvidiaNodes makes /dev/nvidia0 and /dev/nvidiactl look-alikes (character
// devices 195:0 and 195:255, mode 0666) on the host and returns the
// mounts that put them at those paths in a container. A bind-mounted node
// is not in the container's device cgroup, so every open or access of it
// inside fails with EPERM: exactly what a container sees of its real
// NVIDIA devices once a host daemon-reload reset its device cgroup.
func nvidiaNodes(t *testing.T) []config.Mount {
	t.Helper()
	dir := testenv.ShortTempDir(t)
	var mounts []config.Mount
	for _, n := range []struct {
		name  string
		minor int
	}{{"nvidia0", 0}, {"nvidiactl", 255}} {
		p := filepath.Join(dir, n.name)
		if err := syscall.Mknod(p, syscall.S_IFCHR|0o666, 195<<8|n.minor); err != nil {
			t.Skipf("cannot make a device node here: %v", err)
		}
		if err := syscall.Chmod(p, 0o666); err != nil { // past the umask
			t.Fatal(err)
		}
		mounts = append(mounts, config.Mount{Source: p, Target: "/dev/" + n.name})
	}
	return mounts
}

// A running container whose NVIDIA devices its device cgroup denies (the
// "Failed to initialize NVML: Unknown Error" case) is found at the next
// login by asking its agent: while a connection holds it, it is kept and
// its interactive logins get the notice, `sygctl gpus` (GPUHolders) marks
// it; the next login with nobody inside recreates it. A container whose
// agent finds no denied device is kept.
func TestEnsureNVMLLost(t *testing.T) {
	nodes := nvidiaNodes(t)
	s := mockMachine(t, 1, nil, nil)
	r := newRig(t, func(o *Options) { o.GPUs = mockGPUs(t, s) })
	// The mock's GPUs cannot be attached on this host, so the containers
	// carry the lease label that one made with GPU 0 would, and their
	// project asks the engine for none.
	r.opts.Labels[LabelGPUs] = uuidOf(s, 0)
	r.opts.Labels[LabelGPUMode] = config.GPUShared // alice's and bob's both hold it
	m, err := NewManager(r.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	r.m = m
	p := r.project()
	p.Mounts = nodes
	name := ContainerName(p.Name, "alice")

	first, _ := r.ensure(p, "alice")
	if n := m.LoginNotice(name); n != "" {
		t.Fatalf("a new container has a notice: %q", n)
	}
	// The agent itself, in the container: both devices denied.
	f := findOne(t, m, p.Name, "alice")
	start := time.Now()
	rep, err := m.probeGPUs(context.Background(), f)
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	first10 := time.Now()
	for range 10 {
		if _, err := m.probeGPUs(context.Background(), f); err != nil {
			t.Fatalf("probe: %v", err)
		}
	}
	t.Logf("a GPU probe (inspect, link dial, request) took %v, then %v on average over 10", first10.Sub(start), time.Since(first10)/10)
	if got := rep.Denied(); !slices.Equal(got, []string{"/dev/nvidia0", "/dev/nvidiactl"}) {
		t.Fatalf("the agent found %+v, want both devices denied", rep)
	}

	// Somebody is inside: kept, with the notice and the admin's mark.
	m.Acquire(name)
	again, progress := r.ensure(p, "alice")
	if again.ID != first.ID {
		t.Fatalf("recreated (%s -> %s) while in use", first.ID[:12], again.ID[:12])
	}
	if m.LoginNotice(name) != NVMLLostNotice {
		t.Errorf("notice %q, want NVMLLostNotice", m.LoginNotice(name))
	}
	if strings.Contains(progress, "recreating") {
		t.Errorf("progress while in use: %q", progress)
	}
	hs := m.GPUHolders(context.Background())
	if len(hs) != 1 || hs[0].Container != name || !hs[0].NVMLLost || !slices.Equal(hs[0].UUIDs, []string{uuidOf(s, 0)}) {
		t.Errorf("holders %+v, want %s marked", hs, name)
	}

	// Nobody inside: the next login makes it anew.
	m.Release(name)
	fresh, progress := r.ensure(p, "alice")
	if fresh.ID == first.ID {
		t.Fatal("not recreated with nobody inside")
	}
	if !strings.Contains(progress, "Container "+name+" lost access to its GPUs; recreating it ...") {
		t.Errorf("progress %q", progress)
	}
	if n := m.LoginNotice(name); n != "" {
		t.Errorf("the new container has the old one's notice: %q", n)
	}

	// Bob's container has no NVIDIA devices: nothing is denied, it stays.
	q := p
	q.Mounts = nil
	bob, _ := r.ensure(q, "bob")
	if again, _ := r.ensure(q, "bob"); again.ID != bob.ID || m.LoginNotice(bob.Name) != "" {
		t.Errorf("a container with no denied device: %s -> %s, notice %q", bob.ID[:12], again.ID[:12], m.LoginNotice(bob.Name))
	}
	if rep, err := m.probeGPUs(context.Background(), findOne(t, m, q.Name, "bob")); err != nil || len(rep.Devices) != 0 || rep.Lost() {
		t.Errorf("bob's probe: %+v, %v", rep, err)
	}
}

// findOne is the container of (project, user) as the manager finds it.
func findOne(t *testing.T, m *Manager, project, user string) *found {
	t.Helper()
	f, err := m.find(context.Background(), project, user)
	if err != nil || f == nil {
		t.Fatalf("find %s/%s: %v", project, user, err)
	}
	return f
}
