package workspace

import (
	"errors"
	"github.com/sygaldry/sygaldry/internal/usererr"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"

	"github.com/sygaldry/sygaldry/config"
)

func baseInput() SpecInput {
	return SpecInput{
		Project: config.Resolved{
			Name: "zephyr",
			Settings: config.Settings{
				Image:    "sygaldry/zephyr:base",
				User:     "kvothe",
				Hostname: "zephyr",
				GPUs:     config.GPUs{Set: true, All: true},
				ShmSize:  "16g",
				Env:      map[string]string{"TZ": "UTC", "A": "1"},
				Mounts:   []config.Mount{{Source: "/data/sets", Target: "/datasets", ReadOnly: true}},
			},
		},
		User:        "alice",
		StorageRoot: "/srv/data",
		LinkDir:     "/var/lib/sygaldry/run/sygaldry-zephyr-alice",
		AgentPath:   "/usr/local/bin/sygaldry-agent",
		AgentKey:    "/var/lib/sygaldry/keys/sygaldry-zephyr-alice.key",
		ImageID:     "sha256:aaaa",
		Labels:      map[string]string{"sygaldry.test": "t1"},
		Host:        HostInfo{CPUs: 8, Memory: 32 << 30},
	}
}

func mustSpec(t *testing.T, in SpecInput) Spec {
	t.Helper()
	s, err := BuildSpec(in)
	if err != nil {
		t.Fatalf("BuildSpec: %v", err)
	}
	return s
}

func TestBuildSpecContract(t *testing.T) {
	s := mustSpec(t, baseInput())
	c, h := s.Config, s.HostConfig

	if s.Name != "sygaldry-zephyr-alice" {
		t.Errorf("name = %q", s.Name)
	}
	wantLabels := map[string]string{
		"sygaldry.managed": "true", "sygaldry.project": "zephyr", "sygaldry.user": "alice",
		"sygaldry.test": "t1", "sygaldry.spec": s.Hash,
	}
	if !reflect.DeepEqual(c.Labels, wantLabels) {
		t.Errorf("labels = %v, want %v", c.Labels, wantLabels)
	}
	if len(s.Hash) != 64 {
		t.Errorf("hash = %q, want sha256 hex", s.Hash)
	}
	if c.Image != "sygaldry/zephyr:base" || c.Hostname != "zephyr" || c.User != "kvothe" {
		t.Errorf("image/hostname/user = %q/%q/%q", c.Image, c.Hostname, c.User)
	}
	if !slices.Equal(c.Entrypoint, []string{"/.sygaldry/bin/sygaldry-agent"}) ||
		!slices.Equal(c.Cmd, []string{"serve", "--listen", "/.sygaldry/run/agent.sock", "--host-key", "/.sygaldry/agent_key"}) {
		t.Errorf("entrypoint/cmd = %q %q", c.Entrypoint, c.Cmd)
	}
	wantEnv := []string{"A=1", "TZ=UTC", "SYGALDRY_PROJECT=zephyr", "SYGALDRY_USER=alice", "HISTFILE=/.sygaldry/user/.bash_history"}
	if !slices.Equal(c.Env, wantEnv) {
		t.Errorf("env = %q, want %q", c.Env, wantEnv)
	}
	wantMounts := []mount.Mount{
		{Type: mount.TypeBind, Source: "/srv/data/zephyr/monorepo_home", Target: "/home/kvothe"},
		{Type: mount.TypeBind, Source: "/srv/data/zephyr/spack_store", Target: "/opt/spack_store"},
		{Type: mount.TypeBind, Source: "/srv/data/zephyr/bazel_cache", Target: "/opt/bazel_cache"},
		{Type: mount.TypeBind, Source: "/srv/data/zephyr/config", Target: "/config"},
		{Type: mount.TypeBind, Source: "/srv/data/zephyr/users/alice", Target: "/.sygaldry/user"},
		{Type: mount.TypeBind, Source: "/srv/data/zephyr/users/alice/home/.vscode-server", Target: "/home/kvothe/.vscode-server"},
		{Type: mount.TypeBind, Source: "/srv/data/zephyr/users/alice/home/.cursor-server", Target: "/home/kvothe/.cursor-server"},
		{Type: mount.TypeBind, Source: "/srv/data/zephyr/users/alice/home/.cache/JetBrains", Target: "/home/kvothe/.cache/JetBrains"},
		{Type: mount.TypeBind, Source: "/srv/data/zephyr/users/alice/home/.local/share/JetBrains", Target: "/home/kvothe/.local/share/JetBrains"},
		{Type: mount.TypeBind, Source: "/usr/local/bin/sygaldry-agent", Target: "/.sygaldry/bin/sygaldry-agent", ReadOnly: true},
		{Type: mount.TypeBind, Source: "/usr/local/bin/sygaldry-agent", Target: "/usr/local/bin/sygaldry", ReadOnly: true},
		{Type: mount.TypeBind, Source: "/var/lib/sygaldry/run/sygaldry-zephyr-alice", Target: "/.sygaldry/run"},
		{Type: mount.TypeBind, Source: "/var/lib/sygaldry/keys/sygaldry-zephyr-alice.key", Target: "/.sygaldry/agent_key", ReadOnly: true},
		{Type: mount.TypeBind, Source: "/data/sets", Target: "/datasets", ReadOnly: true},
	}
	if !reflect.DeepEqual(h.Mounts, wantMounts) {
		t.Errorf("mounts =\n%+v\nwant\n%+v", h.Mounts, wantMounts)
	}
	wantDirs := []string{"/srv/data/zephyr/monorepo_home", "/srv/data/zephyr/spack_store", "/srv/data/zephyr/bazel_cache", "/srv/data/zephyr/config"}
	if !slices.Equal(s.StorageDirs, wantDirs) {
		t.Errorf("storage dirs = %q", s.StorageDirs)
	}
	if s.SocketPath != "/var/lib/sygaldry/run/sygaldry-zephyr-alice/agent.sock" || s.ContainerUser != "kvothe" {
		t.Errorf("socket/user = %q/%q", s.SocketPath, s.ContainerUser)
	}
	if h.ShmSize != 16<<30 {
		t.Errorf("shm = %d, want 16 GiB", h.ShmSize)
	}
	wantUlimits := []*container.Ulimit{{Name: "memlock", Soft: -1, Hard: -1}, {Name: "stack", Soft: 64 << 20, Hard: 64 << 20}}
	if !reflect.DeepEqual(h.Ulimits, wantUlimits) {
		t.Errorf("ulimits = %+v", h.Ulimits)
	}
	if h.Init != nil && *h.Init {
		t.Error("docker --init set; the agent is PID 1")
	}
}

func TestBuildSpecDefaults(t *testing.T) {
	// A zero Settings takes config's defaults.
	in := baseInput()
	in.Project.Settings = config.Settings{}
	in.Project.Name = "torch_cuda"
	in.StorageRoot = ""
	s := mustSpec(t, in)
	if s.Config.Image != config.DefaultImage || s.Config.User != config.DefaultUser || s.Config.Hostname != "torch-cuda" {
		t.Errorf("defaults: image %q user %q hostname %q", s.Config.Image, s.Config.User, s.Config.Hostname)
	}
	if s.HostConfig.ShmSize != 16<<30 {
		t.Errorf("default shm = %d", s.HostConfig.ShmSize)
	}
	if got := s.HostConfig.Mounts[0].Source; got != config.DefaultStorageRoot+"/torch_cuda/monorepo_home" {
		t.Errorf("default storage root: %q", got)
	}
	if d := s.HostConfig.DeviceRequests; len(d) != 1 || d[0].Count != config.DefaultGPUs {
		t.Errorf("unset gpus = %+v, want %d (config's default)", d, config.DefaultGPUs)
	}
}

func TestBuildSpecGPUs(t *testing.T) {
	caps := [][]string{{"gpu"}}
	tests := []struct {
		name    string
		gpus    config.GPUs
		disable bool
		want    []container.DeviceRequest
	}{
		{"none", config.GPUs{Set: true}, false, nil},
		{"all", config.GPUs{Set: true, All: true}, false, []container.DeviceRequest{{Driver: "nvidia", Count: -1, Capabilities: caps}}},
		{"count", config.GPUs{Set: true, Count: 2}, false, []container.DeviceRequest{{Driver: "nvidia", Count: 2, Capabilities: caps}}},
		{"list", config.GPUs{Set: true, IDs: []string{"GPU-a", "GPU-b"}}, false, []container.DeviceRequest{{Driver: "nvidia", DeviceIDs: []string{"GPU-a", "GPU-b"}, Capabilities: caps}}},
		{"indices", config.GPUs{Set: true, Indices: []int{3, 0}, IDs: []string{"GPU-a"}}, false, []container.DeviceRequest{{Driver: "nvidia", DeviceIDs: []string{"3", "0", "GPU-a"}, Capabilities: caps}}},
		{"all but disabled", config.GPUs{Set: true, All: true}, true, nil},
		{"list but disabled", config.GPUs{Set: true, IDs: []string{"GPU-a"}}, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := baseInput()
			in.Project.GPUs = tt.gpus
			in.DisableGPUs = tt.disable
			hc := mustSpec(t, in).HostConfig
			if !reflect.DeepEqual(hc.DeviceRequests, tt.want) {
				t.Errorf("device requests = %+v, want %+v", hc.DeviceRequests, tt.want)
			}
			// Without GPUs the NVIDIA runtime is told to leave the
			// container alone, whatever the image's environment says.
			env := mustSpec(t, in).Config.Env
			if void := slices.Contains(env, "NVIDIA_VISIBLE_DEVICES=void"); void != (tt.want == nil) {
				t.Errorf("env %q: NVIDIA_VISIBLE_DEVICES=void is %v, want %v", env, void, tt.want == nil)
			}
			// memlock=-1 goes with GPUs only (CUDA pinned memory).
			hasMemlock := slices.ContainsFunc(hc.Ulimits, func(u *container.Ulimit) bool { return u.Name == "memlock" && u.Soft == -1 && u.Hard == -1 })
			if hasMemlock != (tt.want != nil) {
				t.Errorf("ulimits = %+v with device requests %+v", hc.Ulimits, tt.want)
			}
			if !slices.ContainsFunc(hc.Ulimits, func(u *container.Ulimit) bool { return u.Name == "stack" && u.Soft == 64<<20 }) {
				t.Errorf("no 64 MiB stack: %+v", hc.Ulimits)
			}
		})
	}
}

func TestBuildSpecShm(t *testing.T) {
	for in, want := range map[string]int64{"16g": 16 << 30, "512m": 512 << 20, "1G": 1 << 30, "65536": 65536} {
		si := baseInput()
		si.Project.ShmSize = in
		if got := mustSpec(t, si).HostConfig.ShmSize; got != want {
			t.Errorf("shm %q = %d, want %d", in, got, want)
		}
	}
}

func TestBuildSpecRefuses(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*SpecInput)
		bad    bool // ErrBadName expected
	}{
		{"project dotdot", func(in *SpecInput) { in.Project.Name = ".." }, true},
		{"project slash", func(in *SpecInput) { in.Project.Name = "a/../../etc" }, true},
		{"project upper", func(in *SpecInput) { in.Project.Name = "Zephyr" }, true},
		{"project empty", func(in *SpecInput) { in.Project.Name = "" }, true},
		{"user dash", func(in *SpecInput) { in.User = "al-ice" }, true},
		{"user slash", func(in *SpecInput) { in.User = "../root" }, true},
		{"user empty", func(in *SpecInput) { in.User = "" }, true},
		{"container user slash", func(in *SpecInput) { in.Project.User = "../etc" }, true},
		{"relative storage root", func(in *SpecInput) { in.StorageRoot = "data" }, false},
		{"relative link dir", func(in *SpecInput) { in.LinkDir = "run/x" }, false},
		{"relative agent key", func(in *SpecInput) { in.AgentKey = "keys/x.key" }, false},
		{"no agent key", func(in *SpecInput) { in.AgentKey = "" }, false},
		{"no agent", func(in *SpecInput) { in.AgentPath = "" }, false},
		{"bad shm", func(in *SpecInput) { in.Project.ShmSize = "lots" }, false},
		{"relative mount", func(in *SpecInput) { in.Project.Mounts = []config.Mount{{Source: "data", Target: "/d"}} }, false},
		{"mount over agent", func(in *SpecInput) { in.Project.Mounts = []config.Mount{{Source: "/x", Target: "/.sygaldry/bin"}} }, false},
		{"label override", func(in *SpecInput) { in.Labels = map[string]string{"sygaldry.user": "bob"} }, false},
		{"socket too long", func(in *SpecInput) { in.LinkDir = "/" + strings.Repeat("x", 100) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := baseInput()
			tt.mutate(&in)
			s, err := BuildSpec(in)
			if err == nil {
				t.Fatalf("BuildSpec accepted it: %+v", s)
			}
			if errors.Is(err, ErrBadName) != tt.bad {
				t.Errorf("err = %v; ErrBadName expected: %v", err, tt.bad)
			}
			if s.Config != nil || s.Name != "" || s.StorageDirs != nil {
				t.Errorf("a refused spec still carries paths: %+v", s)
			}
		})
	}
}

func TestBuildSpecHash(t *testing.T) {
	base := mustSpec(t, baseInput()).Hash
	if again := mustSpec(t, baseInput()).Hash; again != base {
		t.Fatalf("hash not stable: %s vs %s", base, again)
	}
	// Same env built in another order, labels in another map: same hash.
	in := baseInput()
	in.Project.Env = map[string]string{"A": "1"}
	in.Project.Env["TZ"] = "UTC"
	in.Labels = map[string]string{}
	in.Labels["sygaldry.test"] = "t1"
	if h := mustSpec(t, in).Hash; h != base {
		t.Errorf("hash depends on map construction order")
	}
	// Settings that do not reach the container do not change it.
	in = baseInput()
	in.Project.Dockerfile = "other.dockerfile"
	in.Project.Members = []string{"bob"}
	if h := mustSpec(t, in).Hash; h != base {
		t.Errorf("dockerfile/members changed the hash")
	}

	changes := map[string]func(*SpecInput){
		"image id":  func(in *SpecInput) { in.ImageID = "sha256:bbbb" },
		"image":     func(in *SpecInput) { in.Project.Image = "other:1" },
		"env value": func(in *SpecInput) { in.Project.Env["TZ"] = "CET" },
		"env added": func(in *SpecInput) { in.Project.Env["B"] = "2" },
		"mount added": func(in *SpecInput) {
			in.Project.Mounts = append(in.Project.Mounts, config.Mount{Source: "/a", Target: "/b"})
		},
		"mount ro":     func(in *SpecInput) { in.Project.Mounts[0].ReadOnly = false },
		"storage root": func(in *SpecInput) { in.StorageRoot = "/srv/other" },
		"link dir":     func(in *SpecInput) { in.LinkDir = "/run/x/sygaldry-zephyr-alice" },
		"agent key":    func(in *SpecInput) { in.AgentKey = "/run/keys/sygaldry-zephyr-alice.key" },
		"gpus":         func(in *SpecInput) { in.Project.GPUs = config.GPUs{Set: true, Count: 1} },
		"gpu disabled": func(in *SpecInput) { in.DisableGPUs = true },
		"shm":          func(in *SpecInput) { in.Project.ShmSize = "8g" },
		"user":         func(in *SpecInput) { in.Project.User = "root" },
		"hostname":     func(in *SpecInput) { in.Project.Hostname = "other" },
		"extra label":  func(in *SpecInput) { in.Labels["x"] = "y" },
		"ulimits":      func(in *SpecInput) { in.Ulimits = []*container.Ulimit{{Name: "memlock", Soft: 65536, Hard: 65536}} },
	}
	seen := map[string]string{base: "base"}
	for name, mutate := range changes {
		in := baseInput()
		mutate(&in)
		h := mustSpec(t, in).Hash
		if other, dup := seen[h]; dup {
			t.Errorf("%s: hash equals that of %s", name, other)
		}
		seen[h] = name
	}
}

// baseHash is baseInput's spec hash. A setting added to the spec must leave
// it alone for projects that do not use it, or every running container would
// be recreated on upgrade. Changed on purpose by per-user state (on by
// default: the users/<user> mounts, HISTFILE) and the sygaldry command mount.
const baseHash = "5f663ef5c12a8969de1535e214153acf353756c3a6f435f335f5def7957a8294"

func TestBuildSpecHashUnchangedByUnsetSettings(t *testing.T) {
	if h := mustSpec(t, baseInput()).Hash; h != baseHash {
		t.Errorf("hash of a project without the new settings = %s, want %s", h, baseHash)
	}
}

func TestBuildSpecWorkspace(t *testing.T) {
	for _, tt := range []struct{ ws, src string }{
		{"monorepo_home/zephyr", "/srv/data/zephyr/monorepo_home/zephyr"},
		{"/home/alice/src/zephyr/", "/home/alice/src/zephyr"},
	} {
		in := baseInput()
		in.Project.Env["SYGALDRY_WORKSPACE"] = "/elsewhere"
		in.Project.Workspace = tt.ws
		s := mustSpec(t, in)
		want := mount.Mount{Type: mount.TypeBind, Source: tt.src, Target: "/workspace"}
		if !slices.Contains(s.HostConfig.Mounts, want) {
			t.Errorf("workspace %q: mounts %+v lack %+v", tt.ws, s.HostConfig.Mounts, want)
		}
		var got []string
		for _, e := range s.Config.Env {
			if strings.HasPrefix(e, "SYGALDRY_WORKSPACE=") {
				got = append(got, e)
			}
		}
		if !slices.Equal(got, []string{"SYGALDRY_WORKSPACE=/workspace"}) {
			t.Errorf("workspace %q: env has %q, want SYGALDRY_WORKSPACE=/workspace once", tt.ws, got)
		}
		if s.Hash == baseHash {
			t.Errorf("workspace %q did not change the hash", tt.ws)
		}
	}
	in := baseInput()
	in.Project.Workspace = "monorepo_home/a"
	a := mustSpec(t, in).Hash
	in.Project.Workspace = "monorepo_home/b"
	if mustSpec(t, in).Hash == a {
		t.Error("another workspace gave the same hash")
	}
	for _, ws := range []string{"../other", "a/../../b", "."} {
		in.Project.Workspace = ws
		if _, err := BuildSpec(in); err == nil {
			t.Errorf("workspace %q: no error", ws)
		}
	}
	// Without a workspace: no /workspace mount, no variable.
	s := mustSpec(t, baseInput())
	for _, m := range s.HostConfig.Mounts {
		if m.Target == "/workspace" {
			t.Errorf("mount %+v without a workspace", m)
		}
	}
	for _, e := range s.Config.Env {
		if strings.HasPrefix(e, "SYGALDRY_WORKSPACE=") {
			t.Errorf("env %q without a workspace", e)
		}
	}
}

func TestBuildSpecEnvOverride(t *testing.T) {
	in := baseInput()
	in.Project.Env = map[string]string{"SYGALDRY_USER": "mallory", "SYGALDRY_PROJECT": "x"}
	env := mustSpec(t, in).Config.Env
	if !slices.Equal(env, []string{"SYGALDRY_PROJECT=zephyr", "SYGALDRY_USER=alice", "HISTFILE=/.sygaldry/user/.bash_history"}) {
		t.Errorf("env = %q: configured SYGALDRY_* must not win", env)
	}
}

func TestBuildSpecDoesNotAlias(t *testing.T) {
	in := baseInput()
	in.Ulimits = []*container.Ulimit{{Name: "stack", Soft: 1, Hard: 1}}
	in.Project.GPUs = config.GPUs{Set: true, IDs: []string{"GPU-a"}}
	s := mustSpec(t, in)
	s.HostConfig.Ulimits[0].Soft = 99
	s.HostConfig.DeviceRequests[0].DeviceIDs[0] = "GPU-z"
	if in.Ulimits[0].Soft != 1 || in.Project.GPUs.IDs[0] != "GPU-a" {
		t.Error("the spec shares memory with its input")
	}
}

func TestParsePasswd(t *testing.T) {
	data := []byte("root:x:0:0:root:/root:/bin/bash\nkvothe:x:1000:1001::/home/kvothe:/bin/bash\nbad:x:zz:1::/:/bin/sh\n")
	if uid, gid, err := parsePasswd(data, "kvothe"); err != nil || uid != 1000 || gid != 1001 {
		t.Errorf("kvothe = %d:%d %v", uid, gid, err)
	}
	if _, _, err := parsePasswd(data, "nobody"); !errors.Is(err, ErrUserMissing) {
		t.Errorf("missing user: %v", err)
	}
	if _, _, err := parsePasswd(data, "bad"); err == nil {
		t.Error("bad uid accepted")
	}
	if _, _, err := parsePasswd(data, "kvoth"); err == nil {
		t.Error("prefix matched")
	}
}

func TestUserMessage(t *testing.T) {
	e := userErr(ErrImageMissing, errors.New("inner detail"), "image %s is missing", "x")
	if got := usererr.Message(e); got != "image x is missing" {
		t.Errorf("UserMessage = %q", got)
	}
	if !errors.Is(e, ErrImageMissing) || !strings.Contains(e.Error(), "inner detail") {
		t.Errorf("Error() = %q; Is ErrImageMissing: %v", e.Error(), errors.Is(e, ErrImageMissing))
	}
	if got := usererr.Message(errors.New("dial unix /x: connection refused")); got != "" {
		t.Errorf("a Go error has a user's text: %q", got)
	}
}
