package config

import (
	"fmt"
	"maps"
	"net"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	toml "github.com/pelletier/go-toml/v2"
	gossh "golang.org/x/crypto/ssh"
)

// Project names become the SSH login name, a directory under storage_root, a
// container name part and a hostname; user names become a container name part
// and a label. Both are kept to a conservative alphabet so none of those can
// escape storage_root ("..", "/") or be ambiguous. User names have no "-" so
// that "sygaldry-<project>-<user>" splits one way only.
var (
	projectNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
	userNameRE    = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)
	envNameRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	shmRE         = regexp.MustCompile(`^[0-9]+[bkmgBKMG]?$`)
	// containerUserRE is a user name inside the image (useradd's rule).
	containerUserRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`)
)

// ValidProjectName reports whether name may be used as a project name.
func ValidProjectName(name string) bool { return projectNameRE.MatchString(name) }

// ValidUserName reports whether name may be used as a user name.
func ValidUserName(name string) bool { return userNameRE.MatchString(name) }

type validationError struct {
	path string // dotted key path, to find the line
	msg  string
}

func (c *Config) validate() []validationError {
	var errs []validationError
	bad := func(path, format string, args ...any) {
		errs = append(errs, validationError{path, fmt.Sprintf(format, args...)})
	}

	s := c.Server
	if _, _, err := net.SplitHostPort(s.Listen); err != nil {
		bad("server.listen", "server.listen %q: want host:port", s.Listen)
	}
	if s.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(s.MetricsListen); err != nil {
			bad("server.metrics_listen", "server.metrics_listen %q: want host:port", s.MetricsListen)
		}
	}
	for _, p := range []struct{ key, v string }{
		{"server.state_dir", s.StateDir}, {"server.admin_socket", s.AdminSocket},
		{"docker.storage_root", c.Docker.StorageRoot},
	} {
		if !path.IsAbs(p.v) {
			bad(p.key, "%s %q: must be an absolute path", p.key, p.v)
		}
	}
	if s.RevokedKeys != "" && !path.IsAbs(s.RevokedKeys) {
		bad("server.revoked_keys", "server.revoked_keys %q: must be an absolute path", s.RevokedKeys)
	}
	if s.AgentPath != "" && !path.IsAbs(s.AgentPath) {
		bad("server.agent_path", "server.agent_path %q: must be an absolute path", s.AgentPath)
	}
	for _, ci := range s.Ciphers {
		if !slices.Contains(supportedCiphers, ci) {
			bad("server.ciphers", "server.ciphers: unsupported cipher %q (supported: %s)", ci, strings.Join(supportedCiphers, ", "))
		}
	}
	for i, k := range s.TrustedUserCAKeys {
		_, _, opts, _, err := gossh.ParseAuthorizedKey([]byte(k))
		if err != nil {
			bad(fmt.Sprintf("server.trusted_user_ca_keys.%d", i), "server.trusted_user_ca_keys[%d]: not a public key line: %v", i, err)
		} else if len(opts) > 0 {
			// sshd's TrustedUserCAKeys takes bare keys; options here would
			// be ignored, and nothing is accepted silently.
			bad(fmt.Sprintf("server.trusted_user_ca_keys.%d", i), "server.trusted_user_ca_keys[%d]: options (%s) are not supported on a CA key", i, strings.Join(opts, ","))
		}
	}
	for _, e := range s.AcceptEnv {
		if !envNameRE.MatchString(strings.TrimSuffix(e, "*")) {
			bad("server.accept_env", "server.accept_env: bad pattern %q", e)
		}
	}
	if s.MaxGPUsPerUser < 0 {
		bad("server.max_gpus_per_user", "server.max_gpus_per_user = %d: must not be negative (0: no cap)", s.MaxGPUsPerUser)
	}
	if s.MaxAuthTries < 0 || s.KeepaliveCountMax < 0 {
		bad("server", "server: max_auth_tries and keepalive_count_max must not be negative")
	}
	errs = append(errs, validateStartups(s)...)

	validateNetworkPool(c.Docker.NetworkPool, bad)
	c.validateKube(bad)
	errs = append(errs, validateSettings("defaults", c.Defaults)...)

	// In name order, so "belongs to both" names the pair the same way each time.
	seen := map[string]string{} // one key, one user: otherwise it identifies nobody
	for _, name := range slices.Sorted(maps.Keys(c.Users)) {
		u, key := c.Users[name], "users."+name
		if !ValidUserName(name) {
			bad(key, "user name %q: use lowercase letters, digits and _ (32 at most, starting with a letter)", name)
		}
		validateIdentity(name, u, bad)
		if u == nil || len(u.Keys) == 0 {
			// With a CA, a user may exist by certificate principal alone.
			if len(s.TrustedUserCAKeys) == 0 {
				bad(key, "user %q has no keys (and no trusted_user_ca_keys are configured)", name)
			}
			continue
		}
		for i, k := range u.Keys {
			ak, err := parseKeyLine(name, k)
			if err != nil {
				bad(fmt.Sprintf("%s.keys.%d", key, i), "users.%s.keys[%d]: %v", name, i, err)
				continue
			}
			fp := gossh.FingerprintSHA256(ak.Key)
			if other, dup := seen[fp]; dup && other != name {
				bad(key+".keys", "key %s belongs to both %q and %q", fp, other, name)
			}
			seen[fp] = name
		}
	}

	for name, p := range c.Projects {
		key := "projects." + name
		if !ValidProjectName(name) {
			bad(key, "project name %q: use lowercase letters, digits, - and _ (32 at most, starting with a letter)", name)
			continue
		}
		if p == nil {
			continue
		}
		for _, m := range p.Members {
			if _, ok := c.Users[m]; !ok {
				bad(key+".members", "projects.%s.members: no [users.%s] table", name, m)
			}
		}
		errs = append(errs, validateSettings(key, p.Settings)...)
	}
	slices.SortFunc(errs, func(a, b validationError) int { return strings.Compare(a.path+a.msg, b.path+b.msg) })
	return errs
}

func validateSettings(key string, s Settings) []validationError {
	var errs []validationError
	bad := func(path, format string, args ...any) {
		errs = append(errs, validationError{path, fmt.Sprintf(format, args...)})
	}
	if s.User != "" && !containerUserRE.MatchString(s.User) {
		bad(key+".user", "%s.user %q: not a valid user name", key, s.User)
	}
	if s.ShmSize != "" && !shmRE.MatchString(s.ShmSize) {
		bad(key+".shm_size", "%s.shm_size %q: want a size like \"16g\" or \"512m\"", key, s.ShmSize)
	}
	for k := range s.Env {
		if !envNameRE.MatchString(k) {
			bad(key+".env", "%s.env: bad variable name %q", key, k)
		}
		if k == "NVIDIA_VISIBLE_DEVICES" {
			// The GPU lease decides which GPUs a container sees.
			bad(key+".env", "%s.env: NVIDIA_VISIBLE_DEVICES is set from the GPUs leased to the container; use gpus", key)
		}
	}
	for k := range s.BuildArgs {
		if !envNameRE.MatchString(k) {
			bad(key+".build_args", "%s.build_args: bad build arg name %q", key, k)
		}
	}
	for i, m := range s.Mounts {
		if !path.IsAbs(m.Source) || !path.IsAbs(m.Target) {
			bad(key+".mounts", "%s.mounts[%d]: source and target must be absolute paths", key, i)
		}
	}
	if s.Workspace != "" {
		switch {
		case key == "defaults":
			bad(key+".workspace", "%s.workspace: set the workspace per project ([projects.NAME] workspace)", key)
		case !path.IsAbs(s.Workspace) && strings.Split(path.Clean(s.Workspace), "/")[0] == UsersDir:
			bad(key+".workspace", "%s.workspace %q: %s/ holds each member's private state (user_state); a workspace there would be everybody's", key, s.Workspace, UsersDir)
		case !ValidWorkspace(s.Workspace):
			bad(key+".workspace", "%s.workspace %q: want an absolute host path or a path inside the project's storage directory (no \"..\")", key, s.Workspace)
		}
	}
	if s.GPUs.err != "" {
		bad(key+".gpus", "%s.gpus: %s", key, s.GPUs.err)
	}
	if s.GPUMode != "" && s.GPUMode != GPUExclusive && s.GPUMode != GPUShared {
		bad(key+".gpu_mode", "%s.gpu_mode %q: want %q or %q", key, s.GPUMode, GPUExclusive, GPUShared)
	}
	validateIsolation(key, s, bad)
	validateUserState(key, s, bad)
	validateIDECache(key, s, bad)
	return errs
}

// supportedCiphers are the ciphers x/crypto/ssh implements.
var supportedCiphers = []string{
	"aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
	"aes128-ctr", "aes192-ctr", "aes256-ctr",
}

// GPUs is a project's GPU allocation: all of them, none, a count, or a list
// of GPUs named by index or by UUID (UUIDs are stable across reboots and
// driver reloads; indices are not).
type GPUs struct {
	Set     bool     // the key was present
	All     bool     // "all"
	Count   int      // N > 0; 0 with All false and no list means none
	IDs     []string // "GPU-<uuid>", ... as listed
	Indices []int    // GPU indices (nvidia-smi's), as listed
	err     string   // set when the TOML value had the wrong shape
}

// None reports whether no GPU is attached.
func (g GPUs) None() bool {
	return !g.All && g.Count == 0 && len(g.IDs) == 0 && len(g.Indices) == 0
}

// Listed reports whether the GPUs are named one by one.
func (g GPUs) Listed() bool { return len(g.IDs) > 0 || len(g.Indices) > 0 }

func (g GPUs) String() string {
	switch {
	case g.All:
		return "all"
	case g.Count > 0:
		return strconv.Itoa(g.Count)
	case g.Listed():
		var parts []string
		for _, i := range g.Indices {
			parts = append(parts, strconv.Itoa(i))
		}
		return strings.Join(append(parts, g.IDs...), ",")
	}
	return "none"
}

const gpusShape = "want \"all\", \"none\", a count, or a list of GPU indices or UUIDs (\"GPU-...\")"

// UnmarshalTOML accepts "all", "none", a positive integer or a list of GPU
// indices and UUIDs. A wrong shape is recorded and reported by validate with
// its line.
func (g *GPUs) UnmarshalTOML(raw []byte) error {
	*g = GPUs{Set: true}
	var v struct{ V any }
	if err := toml.Unmarshal(append([]byte("V = "), raw...), &v); err != nil {
		g.err = gpusShape
		return nil
	}
	switch x := v.V.(type) {
	case string:
		switch strings.ToLower(x) {
		case "all":
			g.All = true
		case "none", "":
		default:
			g.err = fmt.Sprintf("%q: %s", x, gpusShape)
		}
	case int64:
		if x < 0 {
			g.err = fmt.Sprintf("%d: a count must not be negative", x)
		}
		g.Count = int(x)
	case []any:
		seen := map[string]bool{}
		for _, e := range x {
			switch id := e.(type) {
			case string:
				if !strings.HasPrefix(id, "GPU-") || len(id) == len("GPU-") {
					g.err = fmt.Sprintf("%q: list entries must be GPU indices or UUIDs (\"GPU-...\")", id)
					return nil
				}
				g.IDs = append(g.IDs, id)
			case int64:
				if id < 0 || id > 1023 {
					g.err = fmt.Sprintf("%d: not a GPU index", id)
					return nil
				}
				g.Indices = append(g.Indices, int(id))
			default:
				g.err = fmt.Sprintf("%v: list entries must be GPU indices or UUIDs (\"GPU-...\")", e)
				return nil
			}
			if k := fmt.Sprint(e); seen[k] {
				g.err = fmt.Sprintf("%v is listed twice", e)
				return nil
			}
			seen[fmt.Sprint(e)] = true
		}
		if len(x) == 0 {
			g.err = "an empty list: write \"none\" for no GPUs"
		}
	default:
		g.err = gpusShape
	}
	return nil
}

// ValidWorkspace reports whether ws is a usable [projects.NAME] workspace: an
// absolute host path, or a relative one that stays inside the project's
// storage directory (no ".." element, not the directory itself, not in
// the per-user UsersDir).
func ValidWorkspace(ws string) bool {
	if strings.ContainsRune(ws, 0) {
		return false
	}
	if path.IsAbs(ws) {
		return !slices.Contains(strings.Split(ws, "/"), "..")
	}
	return filepath.IsLocal(ws) && path.Clean(ws) != "." && !slices.Contains(strings.Split(ws, "/"), "..") &&
		strings.Split(path.Clean(ws), "/")[0] != UsersDir
}
