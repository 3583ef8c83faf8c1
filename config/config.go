// Package config reads the gateway's TOML configuration: the server, the
// Docker engine, per-project container settings and the users' keys.
//
// The zero value of every struct works: Load fills the defaults documented on
// each field. Unknown keys and bad values are errors that name file:line, so an
// admin who mistypes "imagee" learns it at start-up rather than from a user.
// The same holds for authorized_keys options on a user's key (keys.go): each
// is implemented with sshd's meaning or refused, never ignored; and
// server.revoked_keys (a KRL or a key list) is read with the file (revoked.go).
package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// Config is the whole gateway configuration.
type Config struct {
	Server     Server              `toml:"server"`
	Docker     Docker              `toml:"docker"`
	Kubernetes Kubernetes          `toml:"kubernetes"` // the Kubernetes backend's (kube.go)
	Defaults   Settings            `toml:"defaults"`   // every project inherits these
	Projects   map[string]*Project `toml:"projects"`   // keyed by project (= SSH login) name
	Users      map[string]*User    `toml:"users"`      // keyed by user name

	// Path is the file the configuration was read from ("" when built in code).
	Path string `toml:"-"`

	indexOnce sync.Once
	keys      map[string][]AuthorizedKey // SHA256 fingerprint -> its lines, in file order
	cas       []gossh.PublicKey          // parsed trusted_user_ca_keys
	revoked   *RevokedKeys               // server.revoked_keys, read by Parse
	loc       *locator                   // key paths to lines, for ErrorAt
}

// UserCAs returns the trusted user CA keys.
func (c *Config) UserCAs() []gossh.PublicKey {
	c.indexOnce.Do(c.index)
	return c.cas
}

// UserByKey returns the user who owns the public key. It does not apply the
// key's options (from=, expiry-time): authentication uses AuthorizedKeys.
func (c *Config) UserByKey(pk gossh.PublicKey) (string, bool) {
	c.indexOnce.Do(c.index)
	lines := c.keys[gossh.FingerprintSHA256(pk)]
	if len(lines) == 0 {
		return "", false
	}
	return lines[0].User, true
}

// AuthorizedKeys returns the configured lines for the public key, in file
// order (one key may appear on several lines of its user, with different
// options, as in an authorized_keys file).
func (c *Config) AuthorizedKeys(pk gossh.PublicKey) []AuthorizedKey {
	c.indexOnce.Do(c.index)
	return c.keys[gossh.FingerprintSHA256(pk)]
}

// index parses the keys once, so authentication does not parse
// authorized_keys lines on every attempt.
func (c *Config) index() {
	for _, k := range c.Server.TrustedUserCAKeys {
		if pk, _, _, _, err := gossh.ParseAuthorizedKey([]byte(k)); err == nil {
			c.cas = append(c.cas, pk)
		}
	}
	c.keys = map[string][]AuthorizedKey{}
	for name, u := range c.Users {
		if u == nil {
			continue
		}
		for _, k := range u.Keys {
			// A line validate refused (bad options) authorizes nothing.
			if ak, err := parseKeyLine(name, k); err == nil {
				fp := gossh.FingerprintSHA256(ak.Key)
				c.keys[fp] = append(c.keys[fp], ak)
			}
		}
	}
}

// Server configures the SSH front, the admin socket and the gateway's state.
type Server struct {
	// Backend runs the workspaces: BackendDocker (containers on this
	// host, [docker]) or BackendKubernetes (pods, [kubernetes]). Empty:
	// docker.
	Backend string `toml:"backend"`

	Listen        string   `toml:"listen"`         // empty: "0.0.0.0:2222"
	StateDir      string   `toml:"state_dir"`      // empty: /var/lib/sygaldry (host keys, history, link sockets)
	AdminSocket   string   `toml:"admin_socket"`   // empty: /run/sygaldry/admin.sock
	MetricsListen string   `toml:"metrics_listen"` // empty: no metrics endpoint
	IdleStop      Duration `toml:"idle_stop"`      // unset: 2h; "0": never stop idle containers

	// AgentPath is the sygaldry-agent binary bind-mounted into containers.
	// Empty: the file next to the gateway's own executable.
	AgentPath string `toml:"agent_path"`

	// Ciphers offered to clients, most preferred first. Empty: AES-GCM only,
	// because Go's chacha20-poly1305 has no assembly on amd64 and OpenSSH
	// clients would otherwise pick it (see DESIGN.md).
	Ciphers []string `toml:"ciphers"`

	// AcceptEnv lists the environment variables a client may send, as sshd's
	// AcceptEnv (a trailing * matches a prefix). Empty: LANG, LC_*, TZ, COLORTERM.
	AcceptEnv []string `toml:"accept_env"`

	// LogCommands records exec commands (cut to 1 KiB) in the gateway's log,
	// the live session list and the session history. Commands often carry
	// tokens: false keeps them out of all three. Unset: true.
	LogCommands *bool `toml:"log_commands"`

	// TrustedUserCAKeys are CA public keys (authorized_keys format). A user
	// certificate signed by one of them authenticates as its first principal
	// that names a [users.NAME]. Empty: certificates are not accepted.
	TrustedUserCAKeys []string `toml:"trusted_user_ca_keys"`

	// RevokedKeys is an OpenSSH KRL (`ssh-keygen -k`) or a file of public
	// keys, one per line, as sshd's RevokedKeys: a listed key, a
	// certificate it revokes (by key, serial or key ID) and any certificate
	// signed by a listed CA are refused. Re-read on reload; an unreadable or
	// malformed file is a config error. Empty: nothing is revoked.
	RevokedKeys string `toml:"revoked_keys"`

	LoginGraceTime    Duration `toml:"login_grace_time"`    // unset: 60s to authenticate, like sshd's LoginGraceTime
	MaxAuthTries      int      `toml:"max_auth_tries"`      // 0: 6, as sshd
	MaxStartups       Startups `toml:"max_startups"`        // unset: 64 handshakes at once, more wait; or sshd's "start:rate:full" (see Startups)
	KeepaliveInterval Duration `toml:"keepalive_interval"`  // unset: 30s; "0": no server keepalives
	KeepaliveCountMax int      `toml:"keepalive_count_max"` // 0: 3 unanswered keepalives close the connection

	// IdleDisconnect ends a connection after this long without channel
	// traffic (data on any of its channels, a channel opened); keepalives
	// do not count. Its open sessions are told why first. Unset or "0":
	// never.
	IdleDisconnect Duration `toml:"idle_disconnect"`

	// Before login and per connection (issue 6; see Startups).
	MaxStartupsQueue     int      `toml:"max_startups_queue"`      // 0: 512 connections may wait for a handshake slot
	PerSourceMaxStartups int      `toml:"per_source_max_startups"` // 0: 10 handshakes at once per source address; more wait
	KexTimeout           Duration `toml:"kex_timeout"`             // unset: 15s (at most login_grace_time) from a slot to the first auth request
	MaxSessions          int      `toml:"max_sessions"`            // 0: 10 open sessions per connection, as sshd's MaxSessions
	MaxForwards          int      `toml:"max_forwards"`            // 0: 100 open forwards (channels and -R listeners) per connection

	// MaxGPUsPerUser caps the GPUs one user's live containers hold
	// together, across projects. 0: no cap.
	MaxGPUsPerUser int `toml:"max_gpus_per_user"`
}

// Docker locates the engine and the projects' host storage.
type Docker struct {
	Host        string `toml:"host"`         // empty: DOCKER_HOST, else the local socket
	StorageRoot string `toml:"storage_root"` // empty: /mnt/data_infra/zephyr_container_infra

	// NetworkPool is an IPv4 range the containers' own networks take a /28
	// each from (limits.go); empty: the engine's address pools.
	NetworkPool string `toml:"network_pool"`
}

// Settings are the container settings a project takes from [defaults] and may
// override in [projects.NAME].
type Settings struct {
	Image      string `toml:"image"`      // empty: sygaldry/zephyr:base
	Dockerfile string `toml:"dockerfile"` // built (context: its directory) when the image is missing; empty: never build
	User       string `toml:"user"`       // container user; empty: kvothe
	Hostname   string `toml:"hostname"`   // empty: the project name
	GPUs       GPUs   `toml:"gpus"`       // "all" | "none" | N | [index or "GPU-<uuid>", ...]; unset: 1 (DefaultGPUs)
	GPUMode    string `toml:"gpu_mode"`   // "exclusive" (a GPU is leased to one container) | "shared"; empty: exclusive
	ShmSize    string `toml:"shm_size"`   // /dev/shm size, e.g. "16g"; empty: 16g

	// Isolation (limits.go): unset limits take the defaults there.
	CPUs      CPUs      `toml:"cpus"`       // 4.5 | "50%" of the host | "unlimited"; unset: 90%
	Memory    Memory    `toml:"memory"`     // "32g" | "80%" of the host | "unlimited"; swap set equal; unset: 80%
	PidsLimit PidsLimit `toml:"pids_limit"` // processes in the container | "unlimited"; unset: 4096
	Network   string    `toml:"network"`    // "isolated" | "isolated-no-host" | "none"; empty: isolated
	CapAdd    []string  `toml:"cap_add"`    // capabilities kept (all others dropped); appended to the defaults' ones

	Env    map[string]string `toml:"env"`    // extra container environment; project keys override defaults
	Mounts []Mount           `toml:"mounts"` // extra bind mounts, appended to the defaults' ones

	// BuildArgs are the Dockerfile's build args (ARG) when the image is
	// built, e.g. BAZEL_VERSION; project keys override defaults. Not part of
	// the spec: they take effect when the image is (re)built.
	BuildArgs map[string]string `toml:"build_args"`

	// UserState lists paths relative to the container user's home that hold
	// one person's state (IDE servers, their caches): each is bind-mounted
	// from <storage_root>/<project>/users/<user>/home/PATH over the shared
	// home, so members of a project do not share them (userstate.go).
	// Unset: DefaultUserState; [] turns it off. A project's list replaces
	// the defaults' one.
	UserState *[]string `toml:"user_state"`

	// Workspace is the project's root, bind-mounted at /workspace, where
	// sessions start: a host path (absolute) or a path inside the project's
	// storage directory (<storage_root>/<project>/...). Per project only:
	// [defaults] may not set it. Empty: no /workspace mount.
	Workspace string `toml:"workspace"`

	// IDECache is a host directory of IDE server archives (VS Code's
	// vscode-server-linux-x64.tar.gz and the like), mounted read-only into
	// every container at /opt/ide-cache with SYGALDRY_IDE_CACHE set, so a
	// bootstrap on a host without internet can unpack from it
	// (idecache.go). In [defaults] only: it is the host's. Empty: no mount.
	IDECache string `toml:"ide_cache"`
}

// Mount is an extra bind mount into the container.
type Mount struct {
	Source   string `toml:"source"`   // host path (absolute)
	Target   string `toml:"target"`   // container path (absolute)
	ReadOnly bool   `toml:"readonly"` // false: read-write
}

// DefaultGPUs is the count of GPUs a project leases when no gpus key says
// otherwise: one, exclusively, so a container never takes every GPU of a
// shared host by accident (it was "all" before leases).
const DefaultGPUs = 1

// GPU modes (gpu_mode).
const (
	GPUExclusive = "exclusive" // a leased GPU belongs to one live container
	GPUShared    = "shared"    // several containers may lease a GPU that no container holds exclusively
)

// Project is one [projects.NAME] table.
type Project struct {
	Members []string `toml:"members"` // users allowed to log in as this project
	Settings

	// Kubernetes overrides a few [kubernetes] keys for this project's pods
	// (KubeOverrides). Nil: none.
	Kubernetes *KubeOverrides `toml:"kubernetes"`
}

// User is one [users.NAME] table.
type User struct {
	// Keys are authorized_keys lines; a user is whoever holds one of them.
	Keys []string `toml:"keys"`

	// Name and Email are the user's git identity, set in their containers
	// as GIT_AUTHOR_* and GIT_COMMITTER_* (userstate.go). Empty: not set,
	// the shared ~/.gitconfig decides.
	Name  string `toml:"name"`
	Email string `toml:"email"`
}

// Defaults for empty fields.
const (
	DefaultListen         = "0.0.0.0:2222"
	DefaultStateDir       = "/var/lib/sygaldry"
	DefaultAdminSocket    = "/run/sygaldry/admin.sock"
	DefaultIdleStop       = 2 * time.Hour
	DefaultStorageRoot    = "/mnt/data_infra/zephyr_container_infra"
	DefaultImage          = "sygaldry/zephyr:base"
	DefaultUser           = "kvothe"
	DefaultShmSize        = "16g"
	DefaultLoginGraceTime = 60 * time.Second
	DefaultMaxAuthTries   = 6
	DefaultKeepalive      = 30 * time.Second
	DefaultKeepaliveMax   = 3
)

// DefaultCiphers are the ciphers offered when none are configured.
var DefaultCiphers = []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}

// DefaultAcceptEnv is the env allowlist when none is configured (sshd's
// Debian default plus TZ and COLORTERM).
var DefaultAcceptEnv = []string{"LANG", "LC_*", "TZ", "COLORTERM"}

// fillDefaults sets every empty field to its documented default.
func (c *Config) fillDefaults() {
	s := &c.Server
	s.Listen = or(s.Listen, DefaultListen)
	s.StateDir = or(s.StateDir, DefaultStateDir)
	s.AdminSocket = or(s.AdminSocket, DefaultAdminSocket)
	if !s.IdleStop.Set {
		s.IdleStop = Duration{DefaultIdleStop, true}
	}
	if len(s.Ciphers) == 0 {
		s.Ciphers = slices.Clone(DefaultCiphers)
	}
	if len(s.AcceptEnv) == 0 {
		s.AcceptEnv = slices.Clone(DefaultAcceptEnv)
	}
	if !s.LoginGraceTime.Set || s.LoginGraceTime.D == 0 {
		s.LoginGraceTime = Duration{DefaultLoginGraceTime, true}
	}
	if s.MaxAuthTries == 0 {
		s.MaxAuthTries = DefaultMaxAuthTries
	}
	s.fillStartupDefaults()
	if !s.KeepaliveInterval.Set {
		s.KeepaliveInterval = Duration{DefaultKeepalive, true}
	}
	if s.KeepaliveCountMax == 0 {
		s.KeepaliveCountMax = DefaultKeepaliveMax
	}
	c.Docker.StorageRoot = or(c.Docker.StorageRoot, DefaultStorageRoot)
	d := &c.Defaults
	d.Image = or(d.Image, DefaultImage)
	d.User = or(d.User, DefaultUser)
	d.ShmSize = or(d.ShmSize, DefaultShmSize)
	d.fillIsolationDefaults()
	if !d.GPUs.Set {
		d.GPUs = GPUs{Set: true, Count: DefaultGPUs}
	}
	if d.UserState == nil {
		us := slices.Clone(DefaultUserState)
		d.UserState = &us
	}
	d.GPUMode = or(d.GPUMode, GPUExclusive)
	c.fillKubeDefaults()
	if c.Projects == nil {
		c.Projects = map[string]*Project{}
	}
	if c.Users == nil {
		c.Users = map[string]*User{}
	}
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Resolved is a project's settings after [defaults] were applied.
type Resolved struct {
	Name    string
	Members []string
	Settings

	// Identities are the git identities of the members that have one.
	Identities map[string]Identity

	// Kube is [kubernetes] with the project's overrides applied (used by
	// the Kubernetes backend only).
	Kube KubeSettings
}

// Project returns the named project with [defaults] applied, or false when no
// such project is configured.
func (c *Config) Project(name string) (Resolved, bool) {
	p, ok := c.Projects[name]
	if !ok || p == nil {
		return Resolved{}, false
	}
	d := c.Defaults
	r := Resolved{Name: name, Members: slices.Clone(p.Members), Settings: d}
	s := &r.Settings
	o := p.Settings
	if o.Image != "" {
		s.Image = o.Image
		// A project that names its own image without a Dockerfile must not
		// inherit the default Dockerfile: it would build the wrong image.
		s.Dockerfile = o.Dockerfile
	}
	if o.Dockerfile != "" {
		s.Dockerfile = o.Dockerfile
	}
	s.User = or(o.User, s.User)
	s.Hostname = or(o.Hostname, s.Hostname)
	if s.Hostname == "" {
		s.Hostname = strings.ReplaceAll(name, "_", "-")
	}
	if o.GPUs.Set {
		s.GPUs = o.GPUs
	}
	s.GPUMode = or(o.GPUMode, or(s.GPUMode, GPUExclusive))
	s.ShmSize = or(o.ShmSize, s.ShmSize)
	s.resolveIsolation(o)
	s.Env = maps.Clone(d.Env)
	if s.Env == nil && len(o.Env) > 0 {
		s.Env = map[string]string{}
	}
	maps.Copy(s.Env, o.Env)
	s.BuildArgs = maps.Clone(d.BuildArgs)
	if s.BuildArgs == nil && len(o.BuildArgs) > 0 {
		s.BuildArgs = map[string]string{}
	}
	maps.Copy(s.BuildArgs, o.BuildArgs)
	s.Mounts = append(slices.Clone(d.Mounts), o.Mounts...)
	s.Workspace = o.Workspace
	s.UserState = resolveUserState(d.UserState, o.UserState)
	r.Identities = c.identities(r.Members)
	r.Kube = resolveKube(c.Kubernetes, p.Kubernetes)
	return r, true
}

// IsMember reports whether user may log in to project.
func (r Resolved) IsMember(user string) bool {
	return slices.Contains(r.Members, user)
}

// ProjectNames returns the configured project names, sorted.
func (c *Config) ProjectNames() []string {
	return slices.Sorted(maps.Keys(c.Projects))
}

// Duration is a TOML string such as "90s" or "2h"; "0" is zero.
type Duration struct {
	D   time.Duration
	Set bool // the key was present
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "0" {
		*d = Duration{0, true}
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("bad duration %q (want e.g. \"90s\", \"2h\", or \"0\")", s)
	}
	if v < 0 {
		return fmt.Errorf("bad duration %q: negative", s)
	}
	*d = Duration{v, true}
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.D.String()), nil }
