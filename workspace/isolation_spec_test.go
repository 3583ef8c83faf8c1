package workspace

import (
	"slices"
	"strings"
	"testing"

	"github.com/sygaldry/sygaldry/config"
)

func TestBuildSpecIsolationDefaults(t *testing.T) {
	s := mustSpec(t, baseInput()) // host: 8 CPUs, 32 GiB; project sets no limits
	h := s.HostConfig
	if h.NanoCPUs != 7_200_000_000 {
		t.Errorf("NanoCPUs = %d, want 90%% of 8 CPUs", h.NanoCPUs)
	}
	wantMem := int64(32<<30) * 8 / 10
	if h.Memory != wantMem || h.MemorySwap != wantMem {
		t.Errorf("memory/swap = %d/%d, want %d for both (no swap on top)", h.Memory, h.MemorySwap, wantMem)
	}
	if h.PidsLimit == nil || *h.PidsLimit != config.DefaultPidsLimit {
		t.Errorf("pids limit = %v, want %d", h.PidsLimit, config.DefaultPidsLimit)
	}
	if string(h.NetworkMode) != s.Name || s.Network != s.Name {
		t.Errorf("network mode %q, spec network %q: want the container's own network %q", h.NetworkMode, s.Network, s.Name)
	}
	if !slices.Equal(h.SecurityOpt, []string{"no-new-privileges:true"}) {
		t.Errorf("security opts = %q", h.SecurityOpt)
	}
	if !slices.Equal(h.CapDrop, []string{"ALL"}) || len(h.CapAdd) != 0 {
		t.Errorf("caps drop %q add %q, want ALL and none", h.CapDrop, h.CapAdd)
	}
	for _, m := range h.Mounts {
		if m.Target == AgentTarget && !m.ReadOnly {
			t.Error("agent binary mounted read-write")
		}
	}
}

func TestBuildSpecIsolationSettings(t *testing.T) {
	in := baseInput()
	st := &in.Project.Settings
	st.CPUs = config.CPUs{Set: true, Count: 4.5}
	st.Memory = config.Memory{Set: true, Bytes: 2 << 30}
	st.PidsLimit = config.PidsLimit{Set: true, Max: 300}
	st.Network = "none"
	st.CapAdd = []string{"net_raw", "CAP_SYS_PTRACE", "NET_RAW"}
	s := mustSpec(t, in)
	h := s.HostConfig
	if h.NanoCPUs != 4_500_000_000 || h.Memory != 2<<30 || h.MemorySwap != 2<<30 || *h.PidsLimit != 300 {
		t.Errorf("limits = %d cpus, %d/%d mem, %d pids", h.NanoCPUs, h.Memory, h.MemorySwap, *h.PidsLimit)
	}
	if h.NetworkMode != "none" || s.Network != "" {
		t.Errorf("network mode %q, spec network %q", h.NetworkMode, s.Network)
	}
	if !slices.Equal(h.CapAdd, []string{"CAP_NET_RAW", "CAP_SYS_PTRACE"}) {
		t.Errorf("cap add = %q", h.CapAdd)
	}

	st.CPUs = config.CPUs{Set: true, Unlimited: true}
	st.Memory = config.Memory{Set: true, Unlimited: true}
	st.PidsLimit = config.PidsLimit{Set: true, Unlimited: true}
	h = mustSpec(t, in).HostConfig
	if h.NanoCPUs != 0 || h.Memory != 0 || h.MemorySwap != 0 || h.PidsLimit != nil {
		t.Errorf("unlimited: %d cpus, %d/%d mem, %v pids", h.NanoCPUs, h.Memory, h.MemorySwap, h.PidsLimit)
	}

	// A share of the host needs the host's size.
	in = baseInput()
	in.Host = HostInfo{}
	if _, err := BuildSpec(in); err == nil || !strings.Contains(err.Error(), "host's CPU count") {
		t.Errorf("no host info: err = %v", err)
	}
	in = baseInput()
	in.Project.Settings.CapAdd = []string{"ALL"}
	if _, err := BuildSpec(in); err == nil || !strings.Contains(err.Error(), "unknown capability") {
		t.Errorf("cap_add ALL: err = %v", err)
	}
}

// Limit values change live (ContainerUpdate), so they stay out of the hash;
// network, hardening and switching a limit on or off need a new container.
func TestSpecHashIsolation(t *testing.T) {
	base := mustSpec(t, baseInput()).Hash
	same := func(name string, mut func(*SpecInput), want bool) {
		t.Helper()
		in := baseInput()
		mut(&in)
		if got := mustSpec(t, in).Hash == base; got != want {
			t.Errorf("%s: hash unchanged = %t, want %t", name, got, want)
		}
	}
	same("memory value", func(in *SpecInput) { in.Project.Settings.Memory = config.Memory{Set: true, Bytes: 1 << 30} }, true)
	same("cpus value", func(in *SpecInput) { in.Project.Settings.CPUs = config.CPUs{Set: true, Count: 2} }, true)
	same("pids value", func(in *SpecInput) { in.Project.Settings.PidsLimit = config.PidsLimit{Set: true, Max: 100} }, true)
	same("host size", func(in *SpecInput) { in.Host.Memory *= 2 }, true)
	same("memory off", func(in *SpecInput) { in.Project.Settings.Memory = config.Memory{Set: true, Unlimited: true} }, false)
	same("network none", func(in *SpecInput) { in.Project.Settings.Network = "none" }, false)
	same("cap_add", func(in *SpecInput) { in.Project.Settings.CapAdd = []string{"NET_RAW"} }, false)
}
