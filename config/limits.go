package config

import (
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	toml "github.com/pelletier/go-toml/v2"
)

// Isolation settings: what one user's container may take from the host and
// reach on it. They live in Settings (inherited from [defaults], overridable
// per project) and container.BuildSpec turns them into the container's
// HostConfig.
//
//   - cpus, memory and pids_limit bound a container so that a fork bomb or a
//     memory hog in it leaves the host, the gateway and the other users'
//     containers working. A change is applied to running containers on
//     reload (the engine's update call) without recreating them.
//   - network: "isolated" gives each container a bridge network of its own
//     with inter-container traffic off; "isolated-no-host" also drops what
//     it sends to the host itself; "none" gives it loopback only.
//   - cap_add: capabilities kept on top of the empty default set (all are
//     dropped, and no-new-privileges is always on).

// Defaults of the isolation settings, chosen for a shared GPU host: one
// container may use most of the machine, never all of it.
const (
	DefaultCPUsPercent   = 90         // of the engine host's CPUs
	DefaultMemoryPercent = 80         // of the engine host's memory; swap is never added on top
	DefaultPidsLimit     = 4096       // processes and threads in one container
	DefaultNetwork       = "isolated" // a bridge of its own, inter-container traffic off
)

// Network modes.
const (
	NetworkIsolated       = "isolated"         // own bridge network, icc off; reaches the internet and the host
	NetworkIsolatedNoHost = "isolated-no-host" // the same, and a firewall rule drops what it sends to the host
	NetworkNone           = "none"             // loopback only: no internet, no host, no other container
)

// Unlimited is how a limit is switched off; it must be spelled out.
const Unlimited = "unlimited"

// CPUs is a container's CPU limit: a count of CPUs (4.5), a share of the
// engine host's CPUs ("50%"), or "unlimited".
type CPUs struct {
	Set       bool    // the key was present
	Unlimited bool    // "unlimited"
	Count     float64 // > 0: that many CPUs
	Percent   float64 // > 0: that share of the host's CPUs
	err       string
}

// Memory is a container's memory limit: a size ("32g"), a share of the
// engine host's memory ("80%"), or "unlimited". Swap is set equal, so the
// limit cannot be escaped into swap.
type Memory struct {
	Set       bool
	Unlimited bool
	Bytes     int64   // > 0: that many bytes
	Percent   float64 // > 0: that share of the host's memory
	err       string
}

// PidsLimit bounds the processes and threads in a container: a positive
// count, or "unlimited".
type PidsLimit struct {
	Set       bool
	Unlimited bool
	Max       int64
	err       string
}

var (
	percentRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)%$`)
	sizeRE    = regexp.MustCompile(`^([0-9]+)([bkmgt]?)$`)
)

// Smallest limits the engine accepts (and that still run a shell).
const (
	minMemory = 6 << 20 // the engine refuses less than 6 MiB
	minCPUs   = 0.01
)

// scalar decodes a TOML value (string, integer or float) to a string.
func scalar(raw []byte) (string, bool) {
	var v struct{ V any }
	if err := toml.Unmarshal(append([]byte("V = "), raw...), &v); err != nil {
		return "", false
	}
	switch x := v.V.(type) {
	case string:
		return strings.ToLower(strings.TrimSpace(x)), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	}
	return "", false
}

// parsePercent reads "50%"; ok is false when s is not a percentage.
func parsePercent(s string) (pct float64, ok bool, err string) {
	m := percentRE.FindStringSubmatch(s)
	if m == nil {
		return 0, strings.HasSuffix(s, "%"), fmt.Sprintf("%q: want a percentage like \"80%%\"", s)
	}
	pct, _ = strconv.ParseFloat(m[1], 64)
	if pct <= 0 || pct > 100 {
		return 0, true, fmt.Sprintf("%q: a share of the host must be above 0%% and at most 100%%", s)
	}
	return pct, true, ""
}

// UnmarshalTOML accepts a number, "N%" or "unlimited". A wrong value is
// recorded and reported by validate with its line.
func (c *CPUs) UnmarshalTOML(raw []byte) error {
	*c = CPUs{Set: true}
	s, ok := scalar(raw)
	switch {
	case !ok:
		c.err = "want a number of CPUs (4.5), a share of the host (\"50%\") or \"unlimited\""
	case s == Unlimited:
		c.Unlimited = true
	default:
		if pct, isPct, e := parsePercent(s); isPct {
			c.Percent, c.err = pct, e
			return nil
		}
		n, err := strconv.ParseFloat(s, 64)
		switch {
		case err != nil || math.IsNaN(n) || math.IsInf(n, 0):
			c.err = fmt.Sprintf("%q: want a number of CPUs (4.5), a share of the host (\"50%%\") or \"unlimited\"", s)
		case n < minCPUs:
			c.err = fmt.Sprintf("%s: at least %g CPUs (\"unlimited\" switches the limit off)", s, minCPUs)
		case n > 1e6:
			c.err = fmt.Sprintf("%s: more CPUs than any host has", s)
		default:
			c.Count = n
		}
	}
	return nil
}

func (c CPUs) String() string {
	switch {
	case c.Unlimited:
		return Unlimited
	case c.Percent > 0:
		return strconv.FormatFloat(c.Percent, 'f', -1, 64) + "%"
	}
	return strconv.FormatFloat(c.Count, 'f', -1, 64)
}

// UnmarshalTOML accepts a size ("32g", "512m", bytes), "N%" or "unlimited".
func (m *Memory) UnmarshalTOML(raw []byte) error {
	*m = Memory{Set: true}
	s, ok := scalar(raw)
	switch {
	case !ok:
		m.err = "want a size (\"32g\"), a share of the host (\"80%\") or \"unlimited\""
	case s == Unlimited:
		m.Unlimited = true
	default:
		if pct, isPct, e := parsePercent(s); isPct {
			m.Percent, m.err = pct, e
			return nil
		}
		b, e := parseSize(s)
		switch {
		case e != "":
			m.err = e
		case b < minMemory:
			m.err = fmt.Sprintf("%q: at least 6m (\"unlimited\" switches the limit off)", s)
		default:
			m.Bytes = b
		}
	}
	return nil
}

// parseSize reads "32g", "512m", "1024k" or plain bytes (binary units).
func parseSize(s string) (int64, string) {
	sub := sizeRE.FindStringSubmatch(s)
	if sub == nil {
		return 0, fmt.Sprintf("%q: want a size like \"32g\" or \"512m\", a share of the host (\"80%%\") or \"unlimited\"", s)
	}
	n, err := strconv.ParseInt(sub[1], 10, 64)
	shift := map[string]uint{"": 0, "b": 0, "k": 10, "m": 20, "g": 30, "t": 40}[sub[2]]
	if err != nil || n > math.MaxInt64>>shift {
		return 0, fmt.Sprintf("%q: too large", s)
	}
	return n << shift, ""
}

func (m Memory) String() string {
	switch {
	case m.Unlimited:
		return Unlimited
	case m.Percent > 0:
		return strconv.FormatFloat(m.Percent, 'f', -1, 64) + "%"
	}
	return strconv.FormatInt(m.Bytes, 10)
}

// UnmarshalTOML accepts a positive integer or "unlimited".
func (p *PidsLimit) UnmarshalTOML(raw []byte) error {
	*p = PidsLimit{Set: true}
	s, ok := scalar(raw)
	if s == Unlimited {
		p.Unlimited = true
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	switch {
	case !ok || err != nil:
		p.err = fmt.Sprintf("%q: want a count of processes (4096) or \"unlimited\"", s)
	case n < 16:
		// A shell, the agent and a command need a handful; 0 or a negative
		// number would mean "unlimited" to the engine, which must be said.
		p.err = fmt.Sprintf("%d: at least 16 (\"unlimited\" switches the limit off)", n)
	default:
		p.Max = n
	}
	return nil
}

func (p PidsLimit) String() string {
	if p.Unlimited {
		return Unlimited
	}
	return strconv.FormatInt(p.Max, 10)
}

// Capabilities are the Linux capability names cap_add accepts (capabilities(7)),
// without the CAP_ prefix.
var Capabilities = []string{
	"AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE",
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER",
	"KILL", "LEASE", "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN",
	"NET_BIND_SERVICE", "NET_BROADCAST", "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP",
	"SETUID", "SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT", "SYS_MODULE", "SYS_NICE", "SYS_PACCT",
	"SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "SYSLOG", "WAKE_ALARM",
}

// CapabilityName normalises a cap_add entry ("net_raw", "CAP_NET_RAW") to
// the engine's form ("CAP_NET_RAW"); ok is false for an unknown name.
func CapabilityName(s string) (string, bool) {
	n := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(s)), "CAP_")
	if !slices.Contains(Capabilities, n) {
		return "", false
	}
	return "CAP_" + n, true
}

// validateIsolation checks the isolation settings of one [defaults] or
// [projects.NAME] table.
func validateIsolation(key string, s Settings, bad func(path, format string, args ...any)) {
	if s.CPUs.err != "" {
		bad(key+".cpus", "%s.cpus: %s", key, s.CPUs.err)
	}
	if s.Memory.err != "" {
		bad(key+".memory", "%s.memory: %s", key, s.Memory.err)
	}
	if s.PidsLimit.err != "" {
		bad(key+".pids_limit", "%s.pids_limit: %s", key, s.PidsLimit.err)
	}
	switch s.Network {
	case "", NetworkIsolated, NetworkIsolatedNoHost, NetworkNone:
	default:
		bad(key+".network", "%s.network %q: want %q, %q or %q", key, s.Network, NetworkIsolated, NetworkIsolatedNoHost, NetworkNone)
	}
	for _, c := range s.CapAdd {
		if _, ok := CapabilityName(c); !ok {
			bad(key+".cap_add", "%s.cap_add: unknown capability %q (see capabilities(7); e.g. \"NET_RAW\")", key, c)
		}
	}
}

// fillIsolationDefaults sets the [defaults] isolation settings left empty.
func (d *Settings) fillIsolationDefaults() {
	d.CPUs = d.CPUs.OrDefault()
	d.Memory = d.Memory.OrDefault()
	d.PidsLimit = d.PidsLimit.OrDefault()
	d.Network = or(d.Network, DefaultNetwork)
}

// resolveIsolation applies a project's isolation overrides to s (a copy of
// [defaults]): limits and network replace, cap_add adds.
func (s *Settings) resolveIsolation(o Settings) {
	if o.CPUs.Set {
		s.CPUs = o.CPUs
	}
	if o.Memory.Set {
		s.Memory = o.Memory
	}
	if o.PidsLimit.Set {
		s.PidsLimit = o.PidsLimit
	}
	s.Network = or(o.Network, s.Network)
	caps := slices.Clone(s.CapAdd)
	for _, c := range o.CapAdd {
		if !slices.Contains(caps, c) {
			caps = append(caps, c)
		}
	}
	s.CapAdd = caps
}

// OrDefault is c, or the default (DefaultCPUsPercent of the host) when unset.
func (c CPUs) OrDefault() CPUs {
	if !c.Set {
		return CPUs{Set: true, Percent: DefaultCPUsPercent}
	}
	return c
}

// OrDefault is m, or the default (DefaultMemoryPercent of the host) when unset.
func (m Memory) OrDefault() Memory {
	if !m.Set {
		return Memory{Set: true, Percent: DefaultMemoryPercent}
	}
	return m
}

// OrDefault is p, or the default (DefaultPidsLimit) when unset.
func (p PidsLimit) OrDefault() PidsLimit {
	if !p.Set {
		return PidsLimit{Set: true, Max: DefaultPidsLimit}
	}
	return p
}

// NetworkSubnetBits is the size of the subnet each container's network takes
// from docker.network_pool: /28, 14 addresses, one of them the container's.
const NetworkSubnetBits = 28

// NetworkPool parses docker.network_pool; the zero Prefix means "the
// engine's pools".
func NetworkPool(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, nil
	}
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil || !p.Addr().Is4():
		return netip.Prefix{}, fmt.Errorf("%q: want an IPv4 range like \"10.213.0.0/16\"", s)
	case p != p.Masked():
		return netip.Prefix{}, fmt.Errorf("%q: host bits set (the range starts at %s)", s, p.Masked())
	case p.Bits() > NetworkSubnetBits:
		return netip.Prefix{}, fmt.Errorf("%q: smaller than one /%d", s, NetworkSubnetBits)
	}
	return p, nil
}

func validateNetworkPool(s string, bad func(path, format string, args ...any)) {
	if _, err := NetworkPool(s); err != nil {
		bad("docker.network_pool", "docker.network_pool %v", err)
	}
}
