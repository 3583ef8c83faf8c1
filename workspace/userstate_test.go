package workspace

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/mount"

	"github.com/sygaldry/sygaldry/config"
)

func envOf(s Spec) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Config.Env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func TestBuildSpecUserState(t *testing.T) {
	in := baseInput()
	s := mustSpec(t, in)
	if s.UserDir != "/srv/data/zephyr/users/alice" || !slices.Equal(s.UserState, config.DefaultUserState) {
		t.Errorf("user dir %q, state %q", s.UserDir, s.UserState)
	}
	if got := envOf(s)["HISTFILE"]; got != "/.sygaldry/user/.bash_history" {
		t.Errorf("HISTFILE = %q", got)
	}

	// Another list, per project.
	in.Project.UserState = &[]string{".ipython", ".local/share/jupyter"}
	s = mustSpec(t, in)
	var got []mount.Mount
	for _, m := range s.HostConfig.Mounts {
		if strings.HasPrefix(m.Source, "/srv/data/zephyr/users/") {
			got = append(got, m)
		}
	}
	want := []mount.Mount{
		{Type: mount.TypeBind, Source: "/srv/data/zephyr/users/alice", Target: "/.sygaldry/user"},
		{Type: mount.TypeBind, Source: "/srv/data/zephyr/users/alice/home/.ipython", Target: "/home/kvothe/.ipython"},
		{Type: mount.TypeBind, Source: "/srv/data/zephyr/users/alice/home/.local/share/jupyter", Target: "/home/kvothe/.local/share/jupyter"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("mounts = %+v\nwant %+v", got, want)
	}
	// Bob's are his.
	in.User = "bob"
	if s := mustSpec(t, in); s.UserDir != "/srv/data/zephyr/users/bob" || s.HostConfig.Mounts[5].Source != "/srv/data/zephyr/users/bob/home/.ipython" {
		t.Errorf("bob: %q %+v", s.UserDir, s.HostConfig.Mounts[5])
	}

	// [] turns it off: no user dir, no mounts, no HISTFILE.
	in = baseInput()
	in.Project.UserState = &[]string{}
	s = mustSpec(t, in)
	if s.UserDir != "" || len(s.UserState) != 0 {
		t.Errorf("off: user dir %q, state %q", s.UserDir, s.UserState)
	}
	for _, m := range s.HostConfig.Mounts {
		if strings.Contains(m.Source, "/users/") || m.Target == UserDirTarget {
			t.Errorf("off: mount %+v", m)
		}
	}
	if _, ok := envOf(s)["HISTFILE"]; ok {
		t.Error("off: HISTFILE set")
	}
	if h := s.Hash; h == mustSpec(t, baseInput()).Hash {
		t.Error("user_state [] has the default's hash")
	}
}

func TestBuildSpecUserStateBad(t *testing.T) {
	for _, list := range [][]string{{"../x"}, {"/etc"}, {""}, {"a", "a"}, {".cache", ".cache/x"}, {"."}} {
		in := baseInput()
		in.Project.UserState = &list
		if _, err := BuildSpec(in); err == nil {
			t.Errorf("user_state %q accepted", list)
		}
	}
	// A workspace in users/ would put one member's state in everybody's /workspace.
	in := baseInput()
	in.Project.Workspace = "users/bob"
	if _, err := BuildSpec(in); err == nil {
		t.Error("workspace users/bob accepted")
	}
	for _, target := range []string{"/home/kvothe/.vscode-server", "/usr/local/bin/sygaldry", "/home/kvothe", "/opt/spack_store/"} {
		in := baseInput()
		in.Project.Mounts = append(in.Project.Mounts, config.Mount{Source: "/data/x", Target: target})
		if _, err := BuildSpec(in); err == nil || !strings.Contains(err.Error(), "is already mounted") {
			t.Errorf("a mount onto %s: %v", target, err)
		}
	}
}

func TestBuildSpecGitIdentity(t *testing.T) {
	in := baseInput()
	in.Project.Env = map[string]string{"GIT_AUTHOR_NAME": "Shared", "GIT_COMMITTER_EMAIL": "shared@example.com", "HISTFILE": "/tmp/h"}
	in.Project.Identities = map[string]config.Identity{
		"alice": {Name: "Alice Liddell", Email: "alice@example.com"},
		"bob":   {Email: "bob@example.com"},
	}
	env := envOf(mustSpec(t, in))
	for k, v := range map[string]string{
		"GIT_AUTHOR_NAME": "Alice Liddell", "GIT_COMMITTER_NAME": "Alice Liddell",
		"GIT_AUTHOR_EMAIL": "alice@example.com", "GIT_COMMITTER_EMAIL": "alice@example.com",
		"HISTFILE": HistFile,
	} {
		if env[k] != v {
			t.Errorf("alice: %s = %q, want %q", k, env[k], v)
		}
	}
	if n := len(mustSpec(t, in).Config.Env); n != len(env) {
		t.Errorf("a variable is set twice: %q", mustSpec(t, in).Config.Env)
	}
	// Bob has only an email: the project's name stays.
	in.User = "bob"
	env = envOf(mustSpec(t, in))
	if env["GIT_AUTHOR_EMAIL"] != "bob@example.com" || env["GIT_COMMITTER_EMAIL"] != "bob@example.com" || env["GIT_AUTHOR_NAME"] != "Shared" {
		t.Errorf("bob: %v", env)
	}
	if _, ok := env["GIT_COMMITTER_NAME"]; ok {
		t.Errorf("bob: GIT_COMMITTER_NAME set without a name: %v", env)
	}
	// Carol has none: the project's env as configured.
	in.User = "carol"
	env = envOf(mustSpec(t, in))
	if env["GIT_AUTHOR_NAME"] != "Shared" || env["GIT_COMMITTER_EMAIL"] != "shared@example.com" {
		t.Errorf("carol: %v", env)
	}
	// An identity is part of the spec: a new email recreates the container.
	in.User = "alice"
	a := mustSpec(t, in).Hash
	in.Project.Identities["alice"] = config.Identity{Name: "Alice Liddell", Email: "alice@new.example.com"}
	if mustSpec(t, in).Hash == a {
		t.Error("a changed email kept the hash")
	}
}

// userStateRig is a spec for alice on a temporary storage root, with
// user_state .vscode-server and .cache/JetBrains.
func userStateRig(t *testing.T) (Spec, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	root := t.TempDir()
	in := baseInput()
	in.StorageRoot = root
	in.LinkDir = filepath.Join(root, "state", "run", "sygaldry-zephyr-alice")
	in.Project.UserState = &[]string{".vscode-server", ".cache/JetBrains"}
	return mustSpec(t, in), filepath.Join(root, "zephyr")
}

func ownerOf(t *testing.T, p string) int {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := ownerUID(fi)
	return uid
}

func TestUserDirsPreparedAndOwned(t *testing.T) {
	spec, proj := userStateRig(t)
	home := filepath.Join(proj, "monorepo_home")
	// The admin's ~/.cache with data: it keeps its owner.
	if err := os.MkdirAll(filepath.Join(home, ".cache"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".cache", "data"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// create, then start: the sources exist after the first, their owner
	// and the mountpoints come with the second.
	if _, err := prepareHostDirs(spec); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"users/alice/home/.vscode-server", "users/alice/home/.cache/JetBrains"} {
		if fi, err := os.Stat(filepath.Join(proj, p)); err != nil || !fi.IsDir() {
			t.Errorf("mount source %s: %v", p, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(home, ".vscode-server")); err == nil {
		t.Error("a mountpoint made before the uid was known")
	}
	hd, err := prepareHostDirs(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := hd.own(1000, 1000); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(proj, "users"))
	if err != nil || fi.Mode().Perm() != 0o700 || ownerOf(t, filepath.Join(proj, "users")) != 0 {
		t.Errorf("users/: %v %v", fi.Mode(), err)
	}
	if fi, _ := os.Stat(spec.UserDir); fi.Mode().Perm() != 0o700 {
		t.Errorf("users/alice mode %v", fi.Mode())
	}
	for _, p := range []string{
		"users/alice", "users/alice/home", "users/alice/home/.vscode-server", "users/alice/home/.cache", "users/alice/home/.cache/JetBrains",
		"monorepo_home/.vscode-server", "monorepo_home/.cache/JetBrains",
	} {
		if uid := ownerOf(t, filepath.Join(proj, p)); uid != 1000 {
			t.Errorf("%s owned by %d, want 1000", p, uid)
		}
	}
	if uid := ownerOf(t, filepath.Join(home, ".cache")); uid != 0 {
		t.Errorf("the admin's ~/.cache was chowned to %d", uid)
	}

	// Docker made an empty mountpoint as root: it is handed over; one with
	// data stays as it is.
	for _, p := range []string{".vscode-server", ".cache/JetBrains"} {
		if err := os.Lchown(filepath.Join(home, p), 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(home, ".cache/JetBrains/old"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if hd, err = prepareHostDirs(spec); err == nil {
		err = hd.own(1000, 1000)
	}
	if err != nil {
		t.Fatal(err)
	}
	if ownerOf(t, filepath.Join(home, ".vscode-server")) != 1000 || ownerOf(t, filepath.Join(home, ".cache/JetBrains")) != 0 {
		t.Errorf("root-owned mountpoints: empty %d (want 1000), with data %d (want 0)",
			ownerOf(t, filepath.Join(home, ".vscode-server")), ownerOf(t, filepath.Join(home, ".cache/JetBrains")))
	}
}

// TestUserDirsRefuseSymlinks: the home and the user's directory are written
// from containers; a symlink there must not make the gateway create or
// chown anything outside.
func TestUserDirsRefuseSymlinks(t *testing.T) {
	for _, tc := range []struct{ name, link string }{
		{"in the home", "monorepo_home/.cache"},
		{"leaf in the home", "monorepo_home/.vscode-server"},
		{"in the user dir", "users/alice/home/.cache"},
		{"user dir itself", "users/alice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, proj := userStateRig(t)
			outside := t.TempDir()
			if err := os.MkdirAll(filepath.Dir(filepath.Join(proj, tc.link)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(proj, tc.link)); err != nil {
				t.Fatal(err)
			}
			hd, err := prepareHostDirs(spec)
			if err == nil {
				err = hd.own(1000, 1000)
			}
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), "symlink") && !strings.Contains(err.Error(), "not a directory") {
				t.Errorf("error = %v", err)
			}
			ents, _ := os.ReadDir(outside)
			if len(ents) != 0 || ownerOf(t, outside) != 0 {
				t.Errorf("outside the storage: %d entries made, owner %d", len(ents), ownerOf(t, outside))
			}
		})
	}
}

func TestUserDirsOff(t *testing.T) {
	spec, proj := userStateRig(t)
	spec.UserDir, spec.UserState = "", nil
	hd, err := prepareHostDirs(spec)
	if err == nil {
		err = hd.own(1000, 1000)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(proj, "users")); err == nil {
		t.Error("users/ made with user_state off")
	}
}

// TestUserDirsEngineMadeMountpoints: the engine made the mountpoints as
// root (it does when it mounts a stopped container's filesystem to copy
// from it); directories that hold nothing but them are handed over.
func TestUserDirsEngineMadeMountpoints(t *testing.T) {
	spec, proj := userStateRig(t)
	home := filepath.Join(proj, "monorepo_home")
	for _, p := range []string{".cache/JetBrains", ".vscode-server"} {
		if err := os.MkdirAll(filepath.Join(home, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	hd, err := prepareHostDirs(spec)
	if err == nil {
		err = hd.own(1000, 1000)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{".cache", ".cache/JetBrains", ".vscode-server"} {
		if uid := ownerOf(t, filepath.Join(home, p)); uid != 1000 {
			t.Errorf("%s owned by %d, want 1000", p, uid)
		}
	}
}
