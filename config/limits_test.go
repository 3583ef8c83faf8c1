package config

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestIsolationSettingsResolve(t *testing.T) {
	_, key := newKey(t)
	doc := fmt.Sprintf(`
[defaults]
cpus = 4.5
memory = "32g"
pids_limit = 2048
cap_add = ["NET_RAW"]

[projects.zephyr]
members = ["alice"]

[projects.big]
members = ["alice"]
cpus = "50%%"
memory = "unlimited"
pids_limit = "unlimited"
network = "none"
cap_add = ["sys_ptrace", "NET_RAW"]

[projects.small]
members = ["alice"]
cpus = 1
memory = 536870912
pids_limit = 64

[users.alice]
keys = [%q]
`, key)
	c, err := Parse("t.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	z, _ := c.Project("zephyr")
	if z.CPUs.Count != 4.5 || z.Memory.Bytes != 32<<30 || z.PidsLimit.Max != 2048 || z.Network != NetworkIsolated || !slices.Equal(z.CapAdd, []string{"NET_RAW"}) {
		t.Errorf("zephyr inherits: cpus %v memory %v pids %v network %q caps %q", z.CPUs, z.Memory, z.PidsLimit, z.Network, z.CapAdd)
	}
	b, _ := c.Project("big")
	if b.CPUs.Percent != 50 || !b.Memory.Unlimited || !b.PidsLimit.Unlimited || b.Network != NetworkNone || !slices.Equal(b.CapAdd, []string{"NET_RAW", "sys_ptrace"}) {
		t.Errorf("big overrides: cpus %v memory %v pids %v network %q caps %q", b.CPUs, b.Memory, b.PidsLimit, b.Network, b.CapAdd)
	}
	s, _ := c.Project("small")
	if s.CPUs.Count != 1 || s.Memory.Bytes != 512<<20 || s.PidsLimit.Max != 64 {
		t.Errorf("small: cpus %v memory %v pids %v", s.CPUs, s.Memory, s.PidsLimit)
	}
	if c.Defaults.CPUs.Count != 4.5 {
		t.Errorf("a project changed [defaults]: %v", c.Defaults.CPUs)
	}
}

func TestIsolationDefaults(t *testing.T) {
	c, err := Parse("t.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	d := c.Defaults
	if d.CPUs.Percent != DefaultCPUsPercent || d.Memory.Percent != DefaultMemoryPercent || d.PidsLimit.Max != DefaultPidsLimit || d.Network != DefaultNetwork || len(d.CapAdd) != 0 {
		t.Errorf("defaults: cpus %v memory %v pids %v network %q caps %q", d.CPUs, d.Memory, d.PidsLimit, d.Network, d.CapAdd)
	}
}

func TestIsolationErrorsNameFileAndLine(t *testing.T) {
	tests := []struct{ value, want string }{
		{`cpus = 0`, "t.toml:3: defaults.cpus: 0: at least 0.01 CPUs"},
		{`cpus = "lots"`, `t.toml:3: defaults.cpus: "lots": want a number of CPUs`},
		{`cpus = "150%"`, `t.toml:3: defaults.cpus: "150%": a share of the host must be above 0% and at most 100%`},
		{`cpus = -2`, "t.toml:3: defaults.cpus: -2: at least 0.01 CPUs"},
		{`cpus = true`, "t.toml:3: defaults.cpus: want a number of CPUs"},
		{`memory = "0"`, `t.toml:3: defaults.memory: "0": at least 6m`},
		{`memory = "32x"`, `t.toml:3: defaults.memory: "32x": want a size like "32g"`},
		{`memory = "-1g"`, `t.toml:3: defaults.memory: "-1g": want a size`},
		{`memory = "0%"`, `t.toml:3: defaults.memory: "0%": a share of the host must be above 0%`},
		{`memory = "99999999999t"`, `t.toml:3: defaults.memory: "99999999999t": too large`},
		{`pids_limit = 0`, `t.toml:3: defaults.pids_limit: 0: at least 16`},
		{`pids_limit = -1`, `t.toml:3: defaults.pids_limit: -1: at least 16`},
		{`pids_limit = "many"`, `t.toml:3: defaults.pids_limit: "many": want a count`},
		{`network = "bridge"`, `t.toml:3: defaults.network "bridge": want "isolated", "isolated-no-host" or "none"`},
		{`network = "host"`, `t.toml:3: defaults.network "host": want "isolated", "isolated-no-host" or "none"`},
		{`cap_add = ["ALL"]`, `t.toml:3: defaults.cap_add: unknown capability "ALL"`},
		{`cap_add = ["CAP_FLY"]`, `t.toml:3: defaults.cap_add: unknown capability "CAP_FLY"`},
	}
	for _, tt := range tests {
		_, err := Parse("t.toml", []byte("\n[defaults]\n"+tt.value+"\n"))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.value, err, tt.want)
		}
	}
	// In a project table, the project's key and line.
	_, key := newKey(t)
	_, err := Parse("t.toml", []byte(fmt.Sprintf("[projects.zephyr]\nmembers = [\"alice\"]\n\nmemory = \"lots\"\n[users.alice]\nkeys = [%q]\n", key)))
	if err == nil || !strings.Contains(err.Error(), `t.toml:4: projects.zephyr.memory: "lots"`) {
		t.Errorf("project memory: err = %v", err)
	}
}

func TestNetworkPoolSetting(t *testing.T) {
	c, err := Parse("t.toml", []byte("[docker]\nnetwork_pool = \"10.213.0.0/16\"\n"))
	if err != nil || c.Docker.NetworkPool != "10.213.0.0/16" {
		t.Fatalf("parse: %v %+v", err, c)
	}
	for _, tt := range []struct{ value, want string }{
		{"10.213.0.1/16", `t.toml:3: docker.network_pool "10.213.0.1/16": host bits set`},
		{"10.213.0.0/29", `t.toml:3: docker.network_pool "10.213.0.0/29": smaller than one /28`},
		{"fd00::/64", `t.toml:3: docker.network_pool "fd00::/64": want an IPv4 range`},
		{"lots", `t.toml:3: docker.network_pool "lots": want an IPv4 range`},
	} {
		_, err := Parse("t.toml", []byte("\n[docker]\nnetwork_pool = \""+tt.value+"\"\n"))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.value, err, tt.want)
		}
	}
}
