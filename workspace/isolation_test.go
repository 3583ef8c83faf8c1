package workspace

import (
	"bytes"
	"context"
	"fmt"
	"github.com/sygaldry/sygaldry/internal/usererr"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/sygaldry/sygaldry/config"
)

// limited is r.project() with small explicit limits.
func (r *rig) limited() config.Resolved {
	p := r.project()
	p.CPUs = config.CPUs{Set: true, Count: 1.5}
	p.Memory = config.Memory{Set: true, Bytes: 256 << 20}
	p.PidsLimit = config.PidsLimit{Set: true, Max: 128}
	return p
}

// execRoot runs cmd as root in the container, the way an admin's
// `docker exec -u root` would, and returns its output.
func (r *rig) execRoot(id string, cmd ...string) string {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ex, err := r.cl.ContainerExecCreate(ctx, id, container.ExecOptions{User: "root", Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		r.t.Fatal(err)
	}
	att, err := r.cl.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	defer att.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, att.Reader); err != nil {
		r.t.Fatal(err)
	}
	return out.String()
}

func TestContainerLimitsAndHardening(t *testing.T) {
	r := newRig(t, nil)
	p := r.limited()
	// Pre-existing, readable by all (an admin's mkdir): tightened.
	for _, d := range []string{r.opts.StorageRoot, r.opts.StateDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	inst, _ := r.ensure(p, "alice")

	hc := r.inspect(inst.ID).HostConfig
	if hc.NanoCPUs != 1_500_000_000 || hc.Memory != 256<<20 || hc.MemorySwap != 256<<20 || hc.PidsLimit == nil || *hc.PidsLimit != 128 {
		t.Errorf("engine has cpus %d, memory %d, swap %d, pids %v; want 1.5 CPUs, 256 MiB, swap equal, 128", hc.NanoCPUs, hc.Memory, hc.MemorySwap, hc.PidsLimit)
	}
	if !slices.Equal(hc.SecurityOpt, []string{"no-new-privileges:true"}) || !slices.Equal(hc.CapDrop, []string{"ALL"}) || len(hc.CapAdd) != 0 {
		t.Errorf("security %q, cap drop %q, cap add %q", hc.SecurityOpt, hc.CapDrop, hc.CapAdd)
	}
	for _, m := range r.inspect(inst.ID).Mounts {
		if m.Destination == AgentTarget && m.RW {
			t.Error("the agent binary is mounted read-write")
		}
	}

	// What the kernel says inside: no capabilities at all, no new privileges.
	status := run(t, inst, "grep -E '^(CapEff|CapPrm|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status")
	for _, want := range []string{"CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1"} {
		if !strings.Contains(status, want) {
			t.Errorf("/proc/self/status lacks %q:\n%s", want, status)
		}
	}
	// A setuid-root binary (made by root, as an image could ship one) does
	// not make the container user root.
	r.execRoot(inst.ID, "sh", "-c", "cp /usr/bin/python3 /tmp/pysuid && chmod 4755 /tmp/pysuid")
	if ls := run(t, inst, "stat -c '%a %U' /tmp/pysuid"); ls != "4755 root\n" {
		t.Fatalf("setuid copy: %q", ls)
	}
	if euid := run(t, inst, "/tmp/pysuid -c 'import os; print(os.geteuid())'"); euid != "1000\n" {
		t.Errorf("setuid-root binary ran with euid %q, want 1000", strings.TrimSpace(euid))
	}

	// The seed's workflows write where they always did, as kvothe.
	out := run(t, inst, "id -un; mkdir -p /opt/spack_store/opt /opt/bazel_cache/disk ~/src && touch /opt/spack_store/opt/pkg /opt/bazel_cache/disk/blob ~/src/main.cc && echo wrote")
	if out != "kvothe\nwrote\n" {
		t.Errorf("workflow writes: %q", out)
	}

	// Above the per-project mounts, nothing is readable by other host accounts.
	for _, d := range []string{r.opts.StorageRoot, filepath.Join(r.opts.StorageRoot, p.Name), r.opts.StateDir, filepath.Join(r.opts.StateDir, "run")} {
		uid, _, mode := owner(t, d)
		if uid != 0 || mode.Perm() != 0o700 {
			t.Errorf("%s: owner %d mode %v, want root 0700", d, uid, mode.Perm())
		}
	}
}

// Limits change on a running container without recreating it: on reload
// (ApplyLimits), and when Ensure finds a container with older limits.
func TestLimitsUpdateLive(t *testing.T) {
	r := newRig(t, nil)
	p := r.limited()
	inst, _ := r.ensure(p, "alice")
	m := r.m

	cfg := &config.Config{Projects: map[string]*config.Project{p.Name: {Members: []string{"alice"}, Settings: p.Settings}}}
	cfg.Projects[p.Name].Memory = config.Memory{Set: true, Bytes: 384 << 20}
	cfg.Projects[p.Name].PidsLimit = config.PidsLimit{Set: true, Max: 200}
	cfg.Projects[p.Name].CPUs = config.CPUs{Set: true, Count: 0.5}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.ApplyLimits(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	ci := r.inspect(inst.ID)
	hc := ci.HostConfig
	if !ci.State.Running || hc.Memory != 384<<20 || hc.MemorySwap != 384<<20 || *hc.PidsLimit != 200 || hc.NanoCPUs != 500_000_000 {
		t.Errorf("after ApplyLimits: running %t, memory %d swap %d pids %d cpus %d", ci.State.Running, hc.Memory, hc.MemorySwap, *hc.PidsLimit, hc.NanoCPUs)
	}
	// The kernel has it too (cgroup v1 or v2).
	if lim := run(t, inst, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"); lim != "402653184\n" {
		t.Errorf("cgroup memory limit %q, want 402653184", lim)
	}

	// Ensure with the older limits (a restarted gateway): updated again,
	// the same container, nothing told the user.
	inst2, progress := r.ensure(p, "alice")
	if inst2.ID != inst.ID || progress != "" {
		t.Errorf("Ensure after a limits change: id %s (was %s), progress %q", inst2.ID, inst.ID, progress)
	}
	if hc := r.inspect(inst.ID).HostConfig; hc.Memory != 256<<20 || *hc.PidsLimit != 128 {
		t.Errorf("Ensure left memory %d, pids %d", hc.Memory, *hc.PidsLimit)
	}
}

// Each container has a network of its own, inter-container traffic off,
// removed with the container; network = "none" leaves loopback only.
func TestContainerNetworks(t *testing.T) {
	r := newRig(t, nil)
	p := r.project()
	inst, _ := r.ensure(p, "alice")
	ctx := context.Background()

	nw, err := r.cl.NetworkInspect(ctx, inst.Name, network.InspectOptions{})
	if err != nil {
		t.Fatalf("the container's network: %v", err)
	}
	if nw.Driver != "bridge" || nw.Options[iccOption] != "false" || nw.Labels[LabelManaged] != "true" || nw.Labels[LabelProject] != p.Name || nw.Labels[LabelUser] != "alice" {
		t.Errorf("network %s: driver %s options %v labels %v", nw.Name, nw.Driver, nw.Options, nw.Labels)
	}
	if mode := r.inspect(inst.ID).HostConfig.NetworkMode; string(mode) != inst.Name {
		t.Errorf("network mode %q", mode)
	}

	// Switch to "none": recreated (nobody inside), old network gone.
	p.Network = config.NetworkNone
	inst2, _ := r.ensure(p, "alice")
	if inst2.ID == inst.ID {
		t.Fatal("network change did not recreate the container")
	}
	if _, err := r.cl.NetworkInspect(ctx, inst.Name, network.InspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("old network still there after recreation: %v", err)
	}
	if out := run(t, inst2, "ls /sys/class/net"); out != "lo\n" {
		t.Errorf("network none: interfaces %q", out)
	}
}

// A network of the container's name that sygaldry did not make, or one that
// lets containers talk, is not used.
func TestForeignNetworkRefused(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		labels func(p config.Resolved) map[string]string
		want   string
	}{
		{"foreign", func(config.Resolved) map[string]string { return map[string]string{"sygaldry.test": r.testID} }, "not made by sygaldry"},
		{"icc on", func(p config.Resolved) map[string]string {
			return map[string]string{"sygaldry.test": r.testID, LabelManaged: "true", LabelProject: p.Name, LabelUser: "alice"}
		}, "does not isolate its container"},
	} {
		p := r.project()
		name := ContainerName(p.Name, "alice")
		if _, err := r.cl.NetworkCreate(ctx, name, network.CreateOptions{Driver: "bridge", Labels: tt.labels(p)}); err != nil {
			t.Fatal(err)
		}
		_, err := r.m.Ensure(ctx, p, "alice", nil)
		if err == nil || !strings.Contains(usererr.Message(err), tt.want) {
			t.Errorf("%s: Ensure = %v, want %q", tt.name, err, tt.want)
		}
		if len(r.containers(p.Name, "alice")) != 0 {
			t.Errorf("%s: a container was made", tt.name)
		}
	}
}

// With docker.network_pool, each network takes the next free /28 of it, and
// a full pool is refused with a clear line rather than spilling elsewhere.
func TestNetworkPool(t *testing.T) {
	pool := netip.MustParsePrefix("10.213.77.0/27") // two /28s
	r := newRig(t, func(o *Options) { o.NetworkPool = pool })
	p := r.project()
	ctx := context.Background()
	seen := map[string]bool{}
	for _, user := range []string{"alice", "bob"} {
		inst, _ := r.ensure(p, user)
		nw, err := r.cl.NetworkInspect(ctx, inst.Name, network.InspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(nw.IPAM.Config) != 1 {
			t.Fatalf("%s: IPAM %+v", user, nw.IPAM.Config)
		}
		sub := netip.MustParsePrefix(nw.IPAM.Config[0].Subnet)
		if sub.Bits() != 28 || !pool.Contains(sub.Addr()) || seen[sub.String()] {
			t.Errorf("%s: subnet %s, want a new /28 of %s", user, sub, pool)
		}
		seen[sub.String()] = true
		ip := r.inspect(inst.ID).NetworkSettings.Networks[inst.Name].IPAddress
		if a, err := netip.ParseAddr(ip); err != nil || !sub.Contains(a) {
			t.Errorf("%s: container address %q outside %s", user, ip, sub)
		}
	}
	_, err := r.m.Ensure(ctx, p, "carol", nil)
	if err == nil || !strings.Contains(usererr.Message(err), "no address range is left") {
		t.Errorf("third network in a pool of two: %v", err)
	}
}

// network = "isolated-no-host" drops what the container sends to the host
// (here: a listener of this test on all host addresses, reached through the
// bridge gateway), and switching it off and on takes effect on the running
// container, through Ensure and through ApplyLimits (reload).
func TestNetworkNoHost(t *testing.T) {
	if _, err := exec.LookPath("iptables"); err != nil || os.Geteuid() != 0 {
		t.Skip("needs iptables and root, as the gateway has")
	}
	r := newRig(t, nil)
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("host\n"))
			c.Close()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port

	p := r.project()
	p.Network = config.NetworkIsolatedNoHost
	inst, _ := r.ensure(p, "alice")
	ctx := context.Background()
	nw, err := r.cl.NetworkInspect(ctx, inst.Name, network.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bridge := bridgeOf(nw)
	t.Cleanup(func() { deleteRule(context.Background(), []string{hostChain, "-i", bridge, "-j", "DROP"}) })
	gw := nw.IPAM.Config[0].Gateway
	probe := fmt.Sprintf(`python3 -c "
import socket
try:
    s = socket.create_connection(('%s', %d), timeout=3); print(s.recv(16).decode().strip())
except OSError: print('unreachable')"`, gw, port)
	if out := run(t, inst, probe); out != "unreachable\n" {
		t.Errorf("isolated-no-host: the host at %s answered %q", gw, out)
	}

	p.Network = config.NetworkIsolated
	inst2, _ := r.ensure(p, "alice")
	if inst2.ID != inst.ID {
		t.Errorf("switching the host block recreated the container")
	}
	if out := run(t, inst, probe); out != "host\n" {
		t.Errorf("isolated: the host at %s: %q, want its answer", gw, out)
	}

	cfg := &config.Config{Projects: map[string]*config.Project{p.Name: {Members: []string{"alice"}, Settings: p.Settings}}}
	cfg.Projects[p.Name].Network = config.NetworkIsolatedNoHost
	if err := r.m.ApplyLimits(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if out := run(t, inst, probe); out != "unreachable\n" {
		t.Errorf("after a reload to isolated-no-host: %q", out)
	}
}
