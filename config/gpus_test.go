package config

import (
	"slices"
	"strings"
	"testing"
)

func TestGPUsValues(t *testing.T) {
	tests := []struct {
		val  string
		want GPUs
	}{
		{`"all"`, GPUs{Set: true, All: true}},
		{`"none"`, GPUs{Set: true}},
		{`3`, GPUs{Set: true, Count: 3}},
		{`[0, 2]`, GPUs{Set: true, Indices: []int{0, 2}}},
		{`["GPU-a", 1]`, GPUs{Set: true, IDs: []string{"GPU-a"}, Indices: []int{1}}},
	}
	for _, tt := range tests {
		c, err := Parse("f.toml", []byte("[defaults]\ngpus = "+tt.val+"\n"))
		if err != nil {
			t.Errorf("gpus = %s: %v", tt.val, err)
			continue
		}
		g := c.Defaults.GPUs
		if g.Set != tt.want.Set || g.All != tt.want.All || g.Count != tt.want.Count ||
			!slices.Equal(g.IDs, tt.want.IDs) || !slices.Equal(g.Indices, tt.want.Indices) {
			t.Errorf("gpus = %s: %+v, want %+v", tt.val, g, tt.want)
		}
	}
}

func TestGPUSettingsErrors(t *testing.T) {
	tests := []struct {
		name, doc string
		want      []string
	}{
		{"duplicate index", "[defaults]\n\ngpus = [1, 1]\n", []string{"f.toml:3:", "defaults.gpus", "listed twice"}},
		{"duplicate uuid", "[projects.p]\nmembers = []\ngpus = [\"GPU-a\", \"GPU-a\"]\n", []string{"f.toml:3:", "projects.p.gpus", "listed twice"}},
		{"negative index", "[defaults]\ngpus = [-1]\n", []string{"f.toml:2:", "not a GPU index"}},
		{"bare uuid prefix", "[defaults]\ngpus = [\"GPU-\"]\n", []string{"f.toml:2:", "GPU indices or UUIDs"}},
		{"empty list", "[defaults]\ngpus = []\n", []string{"f.toml:2:", "\"none\""}},
		{"negative count", "[defaults]\ngpus = -2\n", []string{"f.toml:2:", "negative"}},
		{"bad mode", "[projects.p]\nmembers = []\n\ngpu_mode = \"polite\"\n", []string{"f.toml:4:", "projects.p.gpu_mode", "exclusive"}},
		{"visible devices in env", "[projects.p]\nmembers = []\nenv = { NVIDIA_VISIBLE_DEVICES = \"all\" }\n", []string{"f.toml:3:", "projects.p.env", "use gpus"}},
		{"negative cap", "[server]\nlisten = \"1.2.3.4:22\"\nmax_gpus_per_user = -1\n", []string{"f.toml:3:", "max_gpus_per_user"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.toml", []byte(tt.doc))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestGPUModeResolution(t *testing.T) {
	c, err := Parse("f.toml", []byte(`
[server]
max_gpus_per_user = 4
[defaults]
gpu_mode = "shared"
[projects.a]
members = []
[projects.b]
members = []
gpu_mode = "exclusive"
gpus = "all"
`))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := c.Project("a")
	b, _ := c.Project("b")
	if a.GPUMode != GPUShared || a.GPUs.Count != DefaultGPUs || b.GPUMode != GPUExclusive || !b.GPUs.All {
		t.Errorf("a: %s %v; b: %s %v", a.GPUMode, a.GPUs, b.GPUMode, b.GPUs)
	}
	if c.Server.MaxGPUsPerUser != 4 {
		t.Errorf("max_gpus_per_user = %d", c.Server.MaxGPUsPerUser)
	}
	e, err := Parse("e.toml", []byte("[projects.a]\nmembers = []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := e.Project("a"); p.GPUMode != GPUExclusive || p.GPUs.Count != 1 || e.Server.MaxGPUsPerUser != 0 {
		t.Errorf("defaults: mode %q gpus %v cap %d", p.GPUMode, p.GPUs, e.Server.MaxGPUsPerUser)
	}
}
