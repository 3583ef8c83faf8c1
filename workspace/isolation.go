package workspace

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/container"

	"github.com/sygaldry/sygaldry/config"
)

// Isolation: what one user's container may take from the host and reach.
//
//   - Limits (cpus, memory with swap set equal, pids_limit) keep a fork bomb
//     or a memory hog inside its own cgroup. They are not part of the spec
//     hash: a changed limit is applied to the running container with the
//     engine's update call (ApplyLimits, and Ensure for a kept container)
//     instead of recreating it. Only switching a limit on or off is in the
//     hash, because the engine cannot lift a limit with an update.
//   - Network "isolated": a bridge network of the container's own (named
//     like the container, inter-container traffic off, its bridge named
//     syg-HASH so one DOCKER-USER rule keeps all of ours apart: apart.go),
//     so no container reaches another one; it still reaches the internet and the host's own
//     addresses (the bridge gateway included). "isolated-no-host": the same
//     plus a firewall rule dropping what it sends to the host (nohost.go).
//     "none": loopback only. Port forwards work in all three, as the agent
//     dials from inside the container.
//   - no-new-privileges, and every capability dropped but the project's
//     cap_add: processes run as the container user, so setuid binaries and
//     file capabilities are what would raise privileges, and both are off.

// HostInfo is the engine host's size, for limits given as a share of it.
type HostInfo struct {
	CPUs   int   // logical CPUs
	Memory int64 // bytes
}

// Limits are a container's resource limits as the engine takes them; 0
// means unlimited.
type Limits struct {
	NanoCPUs int64
	Memory   int64 // also the memory+swap limit: no swap on top
	Pids     int64
}

// LimitsFor resolves a project's limits (unset ones take config's defaults)
// against the host's size.
func LimitsFor(s config.Settings, host HostInfo) (Limits, error) {
	var l Limits
	cpus, mem, pids := s.CPUs.OrDefault(), s.Memory.OrDefault(), s.PidsLimit.OrDefault()
	switch {
	case cpus.Unlimited:
	case cpus.Percent > 0:
		if host.CPUs <= 0 {
			return l, fmt.Errorf("cpus %s: the engine did not report the host's CPU count", cpus)
		}
		l.NanoCPUs = int64(math.Round(float64(host.CPUs) * cpus.Percent / 100 * 1e9))
	default:
		l.NanoCPUs = int64(math.Round(cpus.Count * 1e9))
	}
	if l.NanoCPUs < 0 || (!cpus.Unlimited && l.NanoCPUs < 1e7) {
		return l, fmt.Errorf("cpus %s: less than 0.01 CPU", cpus)
	}
	switch {
	case mem.Unlimited:
	case mem.Percent > 0:
		if host.Memory <= 0 {
			return l, fmt.Errorf("memory %s: the engine did not report the host's memory", mem)
		}
		l.Memory = int64(float64(host.Memory) * mem.Percent / 100)
	default:
		l.Memory = mem.Bytes
	}
	if !mem.Unlimited && l.Memory < 6<<20 {
		return l, fmt.Errorf("memory %s: less than the engine's minimum of 6 MiB", mem)
	}
	if !pids.Unlimited {
		if pids.Max <= 0 {
			return l, fmt.Errorf("pids_limit %s: must be positive", pids)
		}
		l.Pids = pids.Max
	}
	return l, nil
}

// set writes the limits into a create's resources.
func (l Limits) set(r *container.Resources) {
	r.NanoCPUs = l.NanoCPUs
	r.Memory = l.Memory
	r.MemorySwap = l.Memory // equal: no swap beyond the memory limit
	if l.Pids > 0 {
		r.PidsLimit = &l.Pids
	}
}

// hashKey is the part of the limits the spec hash covers: which ones are
// on. Values change live; switching a limit off needs a new container.
func (l Limits) hashKey() string {
	return fmt.Sprintf("cpus=%t,memory=%t,pids=%t", l.NanoCPUs > 0, l.Memory > 0, l.Pids > 0)
}

// matches reports whether a container's resources already carry l.
func (l Limits) matches(r container.Resources) bool {
	pids := int64(0)
	if r.PidsLimit != nil && *r.PidsLimit > 0 {
		pids = *r.PidsLimit
	}
	return r.NanoCPUs == l.NanoCPUs && r.Memory == l.Memory && pids == l.Pids &&
		(l.Memory == 0 || r.MemorySwap == l.Memory)
}

// update is the engine update that changes a container's limits to l. Zero
// fields mean "no change" to the engine, which is why a limit switched off
// is handled by recreation (hashKey), not here.
func (l Limits) update() container.UpdateConfig {
	var u container.UpdateConfig
	u.NanoCPUs = l.NanoCPUs
	u.Memory = l.Memory
	u.MemorySwap = l.Memory
	if l.Pids > 0 {
		u.PidsLimit = &l.Pids
	}
	return u
}

// SecurityOpts are the security options of every managed container.
var SecurityOpts = []string{"no-new-privileges:true"}

// capAdd normalises a project's cap_add to the engine's names, sorted.
func capAdd(s config.Settings) ([]string, error) {
	var out []string
	for _, c := range s.CapAdd {
		n, ok := config.CapabilityName(c)
		if !ok {
			return nil, fmt.Errorf("cap_add: unknown capability %q", c)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// applyIsolation sets the limits, network and hardening of a spec's host
// config; name is the container's (and its network's) name.
func applyIsolation(hc *container.HostConfig, s config.Settings, name string, host HostInfo) (network string, err error) {
	lim, err := LimitsFor(s, host)
	if err != nil {
		return "", err
	}
	lim.set(&hc.Resources)
	caps, err := capAdd(s)
	if err != nil {
		return "", err
	}
	hc.CapDrop = []string{"ALL"}
	hc.CapAdd = caps
	hc.SecurityOpt = slices.Clone(SecurityOpts)
	switch mode := or(s.Network, config.DefaultNetwork); mode {
	case config.NetworkIsolated, config.NetworkIsolatedNoHost:
		// The same network; the host block is a firewall rule (nohost.go),
		// switched live.
		hc.NetworkMode = container.NetworkMode(name)
		network = name
	case config.NetworkNone:
		hc.NetworkMode = "none"
	default:
		return "", fmt.Errorf("network %q: want %q, %q or %q", mode, config.NetworkIsolated, config.NetworkIsolatedNoHost, config.NetworkNone)
	}
	return network, nil
}

// isolationHash is what the spec hash covers of applyIsolation's work.
func isolationHash(hc *container.HostConfig) string {
	l := Limits{NanoCPUs: hc.NanoCPUs, Memory: hc.Memory}
	if hc.PidsLimit != nil {
		l.Pids = *hc.PidsLimit
	}
	return strings.Join([]string{
		"net=" + string(hc.NetworkMode),
		"sec=" + strings.Join(hc.SecurityOpt, ","),
		"drop=" + strings.Join(hc.CapDrop, ","),
		"add=" + strings.Join(hc.CapAdd, ","),
		l.hashKey(),
	}, ";")
}
