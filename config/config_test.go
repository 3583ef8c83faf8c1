package config

import (
	"crypto/ed25519"
	"crypto/rand"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

func newKey(t *testing.T) (gossh.PublicKey, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := gossh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pk, strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pk)))
}

func TestParseFullExample(t *testing.T) {
	pkA, keyA := newKey(t)
	_, keyB := newKey(t)
	doc := `
[server]
listen = "127.0.0.1:2022"
state_dir = "/tmp/syg-state"
idle_stop = "0"

[docker]
storage_root = "/srv/data"

[defaults]
image = "sygaldry/zephyr:base"
dockerfile = "container/dev_container.dockerfile"
gpus = 2
env = { TZ = "UTC" }

[projects.zephyr]
members = ["alice", "bob"]
env = { FOO = "bar" }

[projects.torch_cuda]
members = ["alice"]
image = "other:1"
gpus = ["GPU-aaaa", "GPU-bbbb"]
mounts = [{ source = "/data/sets", target = "/datasets", readonly = true }]

[projects.cpu]
members = ["bob"]
gpus = "none"

[users.alice]
keys = ["` + keyA + ` alice@laptop"]

[users.bob]
keys = ["` + keyB + `"]
`
	c, err := Parse("gw.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.Listen != "127.0.0.1:2022" || c.Server.AdminSocket != DefaultAdminSocket {
		t.Errorf("server = %+v", c.Server)
	}
	if !c.Server.IdleStop.Set || c.Server.IdleStop.D != 0 {
		t.Errorf("idle_stop = %+v, want set to 0", c.Server.IdleStop)
	}
	if c.Server.LoginGraceTime.D != DefaultLoginGraceTime || c.Server.KeepaliveInterval.D != 30*time.Second {
		t.Errorf("defaults not filled: %+v", c.Server)
	}

	z, ok := c.Project("zephyr")
	if !ok {
		t.Fatal("zephyr missing")
	}
	if z.Image != "sygaldry/zephyr:base" || z.Dockerfile != "container/dev_container.dockerfile" || z.User != "kvothe" {
		t.Errorf("zephyr settings = %+v", z.Settings)
	}
	if z.GPUs.Count != 2 || z.Hostname != "zephyr" || z.ShmSize != "16g" {
		t.Errorf("zephyr gpus/hostname/shm = %v %q %q", z.GPUs, z.Hostname, z.ShmSize)
	}
	if z.Env["TZ"] != "UTC" || z.Env["FOO"] != "bar" {
		t.Errorf("env not merged: %v", z.Env)
	}
	if !z.IsMember("bob") || z.IsMember("carol") {
		t.Error("membership wrong")
	}

	tc, _ := c.Project("torch_cuda")
	if tc.Image != "other:1" || tc.Dockerfile != "" {
		t.Errorf("own image must not inherit the default dockerfile: %+v", tc.Settings)
	}
	if len(tc.GPUs.IDs) != 2 || tc.Hostname != "torch-cuda" || len(tc.Mounts) != 1 || !tc.Mounts[0].ReadOnly {
		t.Errorf("torch_cuda = %+v", tc.Settings)
	}
	if cpu, _ := c.Project("cpu"); !cpu.GPUs.None() {
		t.Errorf("cpu gpus = %v, want none", cpu.GPUs)
	}
	// Defaults must not be mutated by merging.
	if len(c.Defaults.Env) != 1 {
		t.Errorf("defaults env mutated: %v", c.Defaults.Env)
	}

	if u, ok := c.UserByKey(pkA); !ok || u != "alice" {
		t.Errorf("UserByKey = %q %v", u, ok)
	}
	other, _ := newKey(t)
	if _, ok := c.UserByKey(other); ok {
		t.Error("unknown key matched a user")
	}
}

func TestEmptyConfigGetsDefaults(t *testing.T) {
	c, err := Parse("empty.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.Listen != DefaultListen || c.Docker.StorageRoot != DefaultStorageRoot ||
		c.Defaults.Image != DefaultImage || c.Defaults.GPUs.Count != DefaultGPUs || c.Server.IdleStop.D != DefaultIdleStop {
		t.Errorf("defaults: %+v", c)
	}
	if len(c.Server.Ciphers) == 0 || strings.Contains(strings.Join(c.Server.Ciphers, ","), "chacha") {
		t.Errorf("ciphers = %v, want AES-GCM only", c.Server.Ciphers)
	}
}

func TestErrorsNameFileAndLine(t *testing.T) {
	_, key := newKey(t)
	tests := []struct {
		name string
		doc  string
		want []string // substrings of the error
	}{
		{"unknown top key", "[server]\nlisten = \"1.2.3.4:22\"\nlisen = \"x\"\n", []string{"f.toml:3: unknown key \"server.lisen\""}},
		{"unknown project key", "[projects.zephyr]\nmembers = []\n\nimagee = \"x\"\n", []string{"f.toml:4: unknown key \"projects.zephyr.imagee\""}},
		{"unknown table", "[servre]\nlisten = \"x\"\n", []string{"f.toml:", "servre"}},
		{"syntax", "[server]\nlisten = \n", []string{"f.toml:2:"}},
		{"wrong type", "[server]\nmax_auth_tries = \"six\"\n", []string{"f.toml:2:"}},
		{"bad duration", "[server]\n\nidle_stop = \"soon\"\n", []string{"f.toml:3:", "bad duration"}},
		{"escaping project", "[projects.\"../etc\"]\nmembers = []\n", []string{"f.toml:1:", `project name "../etc"`}},
		{"slash project", "[projects.\"a/b\"]\nmembers = []\n", []string{"project name \"a/b\""}},
		{"uppercase project", "[projects.Zephyr]\nmembers = []\n", []string{"project name \"Zephyr\""}},
		{"dash user", "[users.jean-luc]\nkeys = [\"" + key + "\"]\n", []string{"f.toml:1:", `user name "jean-luc"`}},
		{"bad key", "[users.alice]\n\nkeys = [\"ssh-ed25519 AAAAnope\"]\n", []string{"f.toml:3:", "not an authorized_keys line"}},
		{"no keys", "[users.alice]\nkeys = []\n", []string{"f.toml:1:", "has no keys"}},
		{"unknown member", "[projects.zephyr]\nmembers = [\"mallory\"]\n", []string{"f.toml:2:", "no [users.mallory]"}},
		{"bad gpus", "[defaults]\ngpus = \"some\"\n", []string{"f.toml:2:", "defaults.gpus"}},
		{"bad gpu list", "[projects.p]\nmembers = []\ngpus = [0, \"1\"]\n", []string{"f.toml:3:", "GPU indices or UUIDs"}},
		{"relative mount", "[defaults]\nmounts = [{ source = \"data\", target = \"/data\" }]\n", []string{"f.toml:2:", "absolute"}},
		{"bad cipher", "[server]\nciphers = [\"rc4\"]\n", []string{"f.toml:2:", "unsupported cipher"}},
		{"relative state dir", "[server]\nstate_dir = \"state\"\n", []string{"f.toml:2:", "absolute"}},
		{"bad listen", "[server]\nlisten = \"2222\"\n", []string{"f.toml:2:", "host:port"}},
		{"duplicate key", "[users.alice]\nkeys = [\"" + key + "\"]\n[users.bob]\nkeys = [\"" + key + "\"]\n", []string{"belongs to both"}},
		{"bad CA key", "[server]\ntrusted_user_ca_keys = [\"ssh-ed25519 nope\"]\n", []string{"f.toml:2:", "trusted_user_ca_keys[0]"}},
		{"bad env name", "[defaults]\nenv = { \"A-B\" = \"x\" }\n", []string{"f.toml:2:", "bad variable name"}},
		{"escaping workspace", "[projects.p]\nmembers = []\nworkspace = \"monorepo_home/../../q\"\n", []string{"f.toml:3:", "projects.p.workspace"}},
		{"dotdot workspace", "[projects.p]\nmembers = []\nworkspace = \"../other/x\"\n", []string{"f.toml:3:", `(no "..")`}},
		{"storage dir as workspace", "[projects.p]\nmembers = []\nworkspace = \".\"\n", []string{"f.toml:3:", "projects.p.workspace"}},
		{"absolute dotdot workspace", "[projects.p]\nmembers = []\nworkspace = \"/srv/../etc\"\n", []string{"f.toml:3:", "projects.p.workspace"}},
		{"default workspace", "[defaults]\nworkspace = \"/srv/ws\"\n", []string{"f.toml:2:", "per project"}},
		{"bad build arg name", "[projects.p]\nmembers = []\nbuild_args = { \"BAZEL-VERSION\" = \"7\" }\n", []string{"f.toml:3:", "projects.p.build_args", "bad build arg name"}},
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

func TestWorkspace(t *testing.T) {
	c, err := Parse("f.toml", []byte("[projects.a]\nmembers = []\nworkspace = \"monorepo_home/zephyr\"\n[projects.b]\nmembers = []\nworkspace = \"/srv/zephyr\"\n[projects.c]\nmembers = []\n"))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"a": "monorepo_home/zephyr", "b": "/srv/zephyr", "c": ""} {
		if p, _ := c.Project(name); p.Workspace != want {
			t.Errorf("project %s: workspace %q, want %q", name, p.Workspace, want)
		}
	}
}

func TestBuildArgs(t *testing.T) {
	doc := "[defaults]\nbuild_args = { BAZEL_VERSION = \"6.4.0\", RUST_VERSION = \"1.79.0\" }\n" +
		"[projects.a]\nmembers = []\nbuild_args = { BAZEL_VERSION = \"7.4.1\" }\n[projects.b]\nmembers = []\n"
	c, err := Parse("f.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]map[string]string{
		"a": {"BAZEL_VERSION": "7.4.1", "RUST_VERSION": "1.79.0"},
		"b": {"BAZEL_VERSION": "6.4.0", "RUST_VERSION": "1.79.0"},
	} {
		if p, _ := c.Project(name); !maps.Equal(p.BuildArgs, want) {
			t.Errorf("project %s: build_args %v, want %v", name, p.BuildArgs, want)
		}
	}
	if c.Defaults.BuildArgs["BAZEL_VERSION"] != "6.4.0" {
		t.Errorf("a project's build_args changed the defaults: %v", c.Defaults.BuildArgs)
	}
}

func TestCertificateOnlyUsers(t *testing.T) {
	_, ca := newKey(t)
	doc := "[server]\ntrusted_user_ca_keys = [\"" + ca + "\"]\n[users.dave]\n[projects.p]\nmembers = [\"dave\"]\n"
	c, err := Parse("f.toml", []byte(doc))
	if err != nil {
		t.Fatalf("a user known only by certificate principal: %v", err)
	}
	if len(c.UserCAs()) != 1 {
		t.Errorf("UserCAs = %v", c.UserCAs())
	}
}

func TestSeveralUnknownKeysAllReported(t *testing.T) {
	_, err := Parse("f.toml", []byte("[server]\nfoo = 1\nbar = 2\n"))
	if err == nil || !strings.Contains(err.Error(), "f.toml:2:") || !strings.Contains(err.Error(), "f.toml:3:") {
		t.Fatalf("err = %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("err = %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func TestExampleConfigParses(t *testing.T) {
	// The shipped example documents every key; it must stay loadable.
	path := filepath.Join("..", "etc", "gateway.toml")
	if _, err := os.Stat(path); err != nil {
		t.Skip("etc/gateway.toml not present yet")
	}
	if _, err := Load(path); err != nil {
		t.Fatal(err)
	}
}

func TestNames(t *testing.T) {
	for _, n := range []string{"zephyr", "torch_cuda", "a1", "x-y"} {
		if !ValidProjectName(n) {
			t.Errorf("project %q refused", n)
		}
	}
	for _, n := range []string{"", "..", ".", "a/b", "a b", "Zephyr", "1abc", "-a", "a.b", strings.Repeat("a", 33), "ä"} {
		if ValidProjectName(n) {
			t.Errorf("project %q accepted", n)
		}
	}
	if ValidUserName("a-b") || !ValidUserName("alice_2") {
		t.Error("user name rules")
	}
}
