// Package workspace is the one place that turns a project's configuration into
// a Docker container spec (BuildSpec) and drives that container's lifecycle
// (Manager): find by label, build the image when missing, create, start, wait
// for the agent, recreate when the spec changed and nobody is inside, stop
// when idle. The gateway and `sygctl launch` both go through it, so the local
// launcher and the gateway give the same container.
//
// Every container is isolated (isolation.go): cpus, memory and pids limits
// (updated live by ApplyLimits on reload), a bridge network of its own with
// inter-container traffic off (networks.go; "isolated-no-host" also drops
// traffic to the host, nohost.go; or "none"), no-new-privileges and all
// capabilities dropped but the project's cap_add, and the storage
// directories above its mounts root's only (hostmodes.go).
package workspace

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	units "github.com/docker/go-units"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/link"
)

// Labels on every managed container (the contract in DESIGN.md), plus the
// spec hash that tells whether a container still matches its configuration.
const (
	LabelManaged = "sygaldry.managed"
	LabelProject = "sygaldry.project"
	LabelUser    = "sygaldry.user"
	LabelSpec    = "sygaldry.spec"
	// LabelAgentKey holds the public half of the container's agent host key
	// (authorized_keys format), so a restarted gateway still knows which key
	// proves the container's agent. Set at create; not part of the hash.
	LabelAgentKey = "sygaldry.agent-key"
)

// Paths inside the container (the agent's contract).
const (
	AgentTarget  = "/.sygaldry/bin/sygaldry-agent"
	LinkTarget   = "/.sygaldry/run"
	reservedRoot = "/.sygaldry"
	agentListen  = LinkTarget + "/" + link.SocketName
	// AgentKeyTarget is the agent's private host key, a read-only bind of a
	// file in a root-only host directory that no other container mounts.
	AgentKeyTarget = reservedRoot + "/agent_key"
	// UserDirTarget is where the user's own directory under the project's
	// storage (<storage_root>/<project>/users/<user>) is mounted: outside
	// the shared home, so nothing in the home can point another member's
	// shell at it. HistFile is the shell history kept there.
	UserDirTarget = reservedRoot + "/user"
	HistFile      = UserDirTarget + "/.bash_history"
	// CommandTarget is the agent binary again, under the name it answers
	// to as the user's command (`sygaldry ports`). /usr/local/bin is on the
	// PATH of every shell, login shells included: Debian's and Ubuntu's
	// /etc/profile reset PATH, so a directory the agent added would be
	// lost there.
	CommandTarget = "/usr/local/bin/sygaldry"
	stackLimit    = 64 << 20 // bytes; CUDA/NCCL want a large stack
	maxSocketPath = 107      // sun_path is 108 bytes including the NUL
)

// StorageDirs are the per-project host directories under storage_root and
// where each is mounted; "" stands for the container user's home.
var StorageDirs = []struct{ Name, Target string }{
	{"monorepo_home", ""},
	{"spack_store", "/opt/spack_store"},
	{"bazel_cache", "/opt/bazel_cache"},
	{"config", "/config"},
}

// ErrBadName means a project or user name failed validation; nothing was
// built from it.
var ErrBadName = errors.New("invalid name")

// SpecInput is everything a container spec is made of.
type SpecInput struct {
	Project     config.Resolved     // the project with [defaults] applied; empty settings take config's defaults
	User        string              // the gateway user (alice), not the container user
	StorageRoot string              // host root of the projects' storage; empty: config.DefaultStorageRoot
	LinkDir     string              // host directory mounted at /.sygaldry/run (absolute, required)
	AgentPath   string              // host path of the sygaldry-agent binary (absolute, required)
	AgentKey    string              // host path of the agent's private host key (absolute, required; see AgentKeyPath)
	ImageID     string              // the image's ID ("sha256:..."), so a rebuilt image changes the hash
	DisableGPUs bool                // true: no GPUs whatever the project says (SYGALDRY_GPU=false)
	Ulimits     []*container.Ulimit // nil: DefaultUlimits() (without memlock when no GPU is attached)
	Labels      map[string]string   // extra labels (tests add sygaldry.test=<id>); may not override ours
	Host        HostInfo            // the engine host's size, for limits given as a share of it (isolation.go)
}

// Spec is a container ready to be created.
type Spec struct {
	Name          string // sygaldry-<project>-<user>
	Hash          string // sha256 of the canonical spec, also in the LabelSpec label
	Image         string // the configured image reference
	ContainerUser string // the user processes run as inside (kvothe)
	StorageDirs   []string
	LinkDir       string
	SocketPath    string // host path of the agent's socket
	Network       string // the container's own network, created before it; "" for none (isolation.go)
	AgentKeyPath  string // host path of the agent's private host key
	Workspace     string // host directory mounted at /workspace; "" for none
	// UserDir is the host directory of the user's own state
	// (<storage_root>/<project>/users/<user>), mounted at UserDirTarget;
	// "" when the project's user_state is []. UserState are the home
	// paths mounted from UserDir/home/PATH (storage_userstate.go).
	UserDir    string
	UserState  []string
	Config     *container.Config
	HostConfig *container.HostConfig
}

// ContainerName is the Docker name of (project, user)'s container. User names
// have no "-", so the name splits one way only.
func ContainerName(project, user string) string {
	return "sygaldry-" + project + "-" + user
}

// LinkDir is the host directory holding the agent socket of container name.
func LinkDir(stateDir, name string) string {
	return filepath.Join(stateDir, "run", name)
}

// AgentKeyPath is the host file holding the private host key of container
// name's agent. Its directory is root's only; the file itself is bind-mounted
// read-only into that one container.
func AgentKeyPath(stateDir, name string) string {
	return filepath.Join(stateDir, "keys", name+".key")
}

// BuildSpec turns a project, a user and the host layout into a container
// spec. It is pure: it touches neither the disk nor the engine.
func BuildSpec(in SpecInput) (Spec, error) {
	p := in.Project
	// Names first, before any path is built from them (defence in depth:
	// config validation already refused them, but callers may not use it).
	if !config.ValidProjectName(p.Name) {
		return Spec{}, fmt.Errorf("%w: project %q", ErrBadName, p.Name)
	}
	if !config.ValidUserName(in.User) {
		return Spec{}, fmt.Errorf("%w: user %q", ErrBadName, in.User)
	}
	s := p.Settings
	image := or(s.Image, config.DefaultImage)
	cuser := or(s.User, config.DefaultUser)
	if strings.ContainsAny(cuser, "/:") || cuser == "." || cuser == ".." {
		return Spec{}, fmt.Errorf("%w: container user %q", ErrBadName, cuser)
	}
	hostname := or(s.Hostname, strings.ReplaceAll(p.Name, "_", "-"))
	root := or(in.StorageRoot, config.DefaultStorageRoot)
	for _, v := range []struct{ what, p string }{
		{"storage root", root}, {"link dir", in.LinkDir}, {"agent path", in.AgentPath}, {"agent key", in.AgentKey},
	} {
		if !path.IsAbs(v.p) {
			return Spec{}, fmt.Errorf("%s %q: must be an absolute path", v.what, v.p)
		}
	}
	shm, err := units.RAMInBytes(or(s.ShmSize, config.DefaultShmSize))
	if err != nil || shm <= 0 {
		return Spec{}, fmt.Errorf("shm_size %q: want a size like \"16g\"", s.ShmSize)
	}

	name := ContainerName(p.Name, in.User)
	socket := filepath.Join(in.LinkDir, link.SocketName)
	if len(socket) > maxSocketPath {
		return Spec{}, fmt.Errorf("agent socket path %s is %d bytes, longer than a unix socket allows (%d): use a shorter state_dir", socket, len(socket), maxSocketPath)
	}

	labels := map[string]string{}
	for k, v := range in.Labels {
		if k == LabelManaged || k == LabelProject || k == LabelUser || k == LabelSpec || k == LabelAgentKey {
			return Spec{}, fmt.Errorf("extra label %q would override a sygaldry label", k)
		}
		labels[k] = v
	}
	labels[LabelManaged] = "true"
	labels[LabelProject] = p.Name
	labels[LabelUser] = in.User

	// Configured env sorted by name, then ours, which win over a configured
	// variable of the same name.
	userState, err := UserStatePaths(s)
	if err != nil {
		return Spec{}, err
	}
	own := UserEnv(p.Identities[in.User], len(userState) > 0)
	env := make([]string, 0, len(s.Env)+2+len(own))
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		if k == "SYGALDRY_PROJECT" || k == "SYGALDRY_USER" || (k == WorkspaceEnv && s.Workspace != "") || (k == IDECacheEnv && s.IDECache != "") ||
			slices.ContainsFunc(own, func(kv string) bool { return strings.HasPrefix(kv, k+"=") }) {
			continue
		}
		env = append(env, k+"="+s.Env[k])
	}
	env = append(env, "SYGALDRY_PROJECT="+p.Name, "SYGALDRY_USER="+in.User)
	env = append(env, own...)

	projDir := filepath.Join(root, p.Name)
	var workspace string
	var mounts []mount.Mount
	var dirs []string
	for _, d := range StorageDirs {
		src := filepath.Join(projDir, d.Name)
		target := or(d.Target, "/home/"+cuser)
		dirs = append(dirs, src)
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: src, Target: target})
	}
	var userDir string
	if len(userState) > 0 {
		userDir = filepath.Join(projDir, usersDir, in.User)
		mounts = append(mounts, userStateMounts(userDir, "/home/"+cuser, userState)...)
	}
	mounts = append(mounts,
		mount.Mount{Type: mount.TypeBind, Source: in.AgentPath, Target: AgentTarget, ReadOnly: true},
		mount.Mount{Type: mount.TypeBind, Source: in.AgentPath, Target: CommandTarget, ReadOnly: true},
		mount.Mount{Type: mount.TypeBind, Source: in.LinkDir, Target: LinkTarget},
		mount.Mount{Type: mount.TypeBind, Source: in.AgentKey, Target: AgentKeyTarget, ReadOnly: true},
	)
	if s.Workspace != "" {
		src, err := workspaceSource(projDir, s.Workspace)
		if err != nil {
			return Spec{}, err
		}
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: src, Target: WorkspaceTarget})
		env = append(env, WorkspaceEnv+"="+WorkspaceTarget)
		workspace = src
	}
	if s.IDECache != "" {
		// Read-only: one host directory shared by every container.
		if msg := config.CheckIDECache(s.IDECache); msg != "" {
			return Spec{}, fmt.Errorf("ide_cache %q: %s", s.IDECache, msg)
		}
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: s.IDECache, Target: IDECacheTarget, ReadOnly: true})
		env = append(env, IDECacheEnv+"="+IDECacheTarget)
	}
	for i, m := range s.Mounts {
		if !path.IsAbs(m.Source) || !path.IsAbs(m.Target) {
			return Spec{}, fmt.Errorf("mounts[%d]: source and target must be absolute paths", i)
		}
		if t := path.Clean(m.Target); t == reservedRoot || strings.HasPrefix(t, reservedRoot+"/") {
			return Spec{}, fmt.Errorf("mounts[%d]: target %s would hide the sygaldry agent", i, m.Target)
		}
		if t := path.Clean(m.Target); t == CommandTarget || slices.ContainsFunc(mounts, func(o mount.Mount) bool { return o.Target == t }) {
			return Spec{}, fmt.Errorf("mounts[%d]: target %s is already mounted (the home, a storage dir, per-user state, the IDE cache or the sygaldry command)", i, m.Target)
		}
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: path.Clean(m.Source), Target: path.Clean(m.Target), ReadOnly: m.ReadOnly})
	}

	var devices []container.DeviceRequest
	if !in.DisableGPUs {
		devices = gpuRequests(s.GPUs)
	}

	if len(devices) == 0 {
		// No GPU: also not through an engine whose default runtime is
		// nvidia and an image that says NVIDIA_VISIBLE_DEVICES=all (the
		// CUDA images do), which would hand every GPU past the leases.
		// "void" makes the NVIDIA runtime leave the container alone.
		env = append(env, noGPUEnv)
	}

	ulimits := DefaultUlimits()
	if len(devices) == 0 {
		// Unlimited locked memory is for CUDA's pinned buffers and RDMA;
		// without GPUs it is not asked for, so engines that may not raise
		// memlock (rootless, sandboxed, CI) still run CPU-only containers.
		ulimits = slices.DeleteFunc(ulimits, func(u *container.Ulimit) bool { return u.Name == "memlock" })
	}
	if in.Ulimits != nil {
		ulimits = make([]*container.Ulimit, len(in.Ulimits))
		for i, u := range in.Ulimits {
			c := *u
			ulimits[i] = &c
		}
	}

	cfg := &container.Config{
		Image:      image,
		Hostname:   hostname,
		User:       cuser,
		Env:        env,
		Entrypoint: []string{AgentTarget},
		Cmd:        []string{"serve", "--listen", agentListen, "--host-key", AgentKeyTarget},
		Labels:     labels,
	}
	hc := &container.HostConfig{
		Mounts:  mounts,
		ShmSize: shm,
		// The agent is PID 1 and reaps zombies itself, so no docker --init.
		Resources: container.Resources{
			Ulimits:        ulimits,
			DeviceRequests: devices,
		},
	}
	network, err := applyIsolation(hc, s, name, in.Host)
	if err != nil {
		return Spec{}, err
	}
	spec := Spec{
		Network:       network,
		Name:          name,
		Image:         image,
		ContainerUser: cuser,
		StorageDirs:   dirs,
		LinkDir:       in.LinkDir,
		SocketPath:    socket,
		AgentKeyPath:  in.AgentKey,
		Workspace:     workspace,
		UserDir:       userDir,
		UserState:     userState,
		Config:        cfg,
		HostConfig:    hc,
	}
	spec.Hash = specHash(in.ImageID, spec)
	labels[LabelSpec] = spec.Hash
	return spec, nil
}

// WorkspaceTarget is where a project's workspace is mounted; WorkspaceEnv
// names it in the container's environment, and the agent starts sessions
// there when it is set.
const (
	WorkspaceTarget = "/workspace"
	WorkspaceEnv    = "SYGALDRY_WORKSPACE"
)

// workspaceSource is the host path of a project's workspace: an absolute path
// as is, a relative one inside the project's storage directory projDir.
func workspaceSource(projDir, ws string) (string, error) {
	if !config.ValidWorkspace(ws) {
		return "", fmt.Errorf("workspace %q: want an absolute host path or a path inside the project's storage directory", ws)
	}
	if path.IsAbs(ws) {
		return path.Clean(ws), nil
	}
	return filepath.Join(projDir, ws), nil
}

// IDECacheTarget is where [defaults] ide_cache, the host's directory of IDE
// server archives, is mounted read-only; IDECacheEnv names it in the
// container's environment, for bootstraps on hosts without internet.
const (
	IDECacheTarget = "/opt/ide-cache"
	IDECacheEnv    = "SYGALDRY_IDE_CACHE"
)

// checkWorkspace refuses, in one line, a workspace that is not a directory on
// the host: the engine would refuse the mount with a generic error, or
// create an empty root-owned directory in its place.
func checkWorkspace(p config.Resolved, spec Spec) error {
	if spec.Workspace == "" {
		return nil
	}
	if fi, err := os.Stat(spec.Workspace); err != nil || !fi.IsDir() {
		if err == nil {
			err = fmt.Errorf("%s is not a directory", spec.Workspace)
		}
		return userErr(nil, err, "the workspace of project %s (%s) is not a directory on this host; it has to be created, or the project's workspace fixed", p.Name, spec.Workspace)
	}
	return nil
}

// noGPUEnv is the environment of a container without GPUs; with GPUs the
// engine sets NVIDIA_VISIBLE_DEVICES to the requested devices itself.
const noGPUEnv = "NVIDIA_VISIBLE_DEVICES=void"

// DefaultUlimits are the limits CUDA and NCCL need: unlimited locked memory
// (pinned host buffers, RDMA) and a 64 MiB stack. A container without GPUs
// gets the stack limit only. The engine must be allowed to set them
// (dockerd with LimitMEMLOCK=infinity); otherwise the start fails with
// ErrUlimit.
func DefaultUlimits() []*container.Ulimit {
	return []*container.Ulimit{
		{Name: "memlock", Soft: -1, Hard: -1},
		{Name: "stack", Soft: stackLimit, Hard: stackLimit},
	}
}

// gpuRequests maps a project's GPU allocation to Docker device requests, as
// configured (the engine picks the GPUs of a count). With a lease table the
// manager names the leased GPUs instead (leaseRequests); this shape still
// goes into the spec hash, so a lease never changes it.
func gpuRequests(g config.GPUs) []container.DeviceRequest {
	if !g.Set {
		g.Count = config.DefaultGPUs // config's default when the key is absent
	}
	req := container.DeviceRequest{Driver: "nvidia", Capabilities: [][]string{{"gpu"}}}
	switch {
	case g.All:
		req.Count = -1
	case g.Count > 0:
		req.Count = g.Count
	case g.Listed():
		for _, i := range g.Indices {
			req.DeviceIDs = append(req.DeviceIDs, strconv.Itoa(i))
		}
		req.DeviceIDs = append(req.DeviceIDs, g.IDs...)
	default:
		return nil
	}
	return []container.DeviceRequest{req}
}

// canonicalSpec is what the hash covers. It is our own shape rather than the
// Docker structs, so a client library upgrade that adds fields does not
// change every hash and recreate every container.
type canonicalSpec struct {
	V          int
	ImageID    string
	Image      string
	Name       string
	Hostname   string
	User       string
	Entrypoint []string
	Cmd        []string
	Env        []string
	Labels     map[string]string // without LabelSpec; encoding/json sorts keys
	Mounts     []string
	ShmSize    int64
	Ulimits    []string
	GPUs       []string
	Isolation  string // network, hardening, which limits are on (not their values: those change live)
}

func specHash(imageID string, s Spec) string {
	c := canonicalSpec{
		V: 1, ImageID: imageID, Image: s.Config.Image, Name: s.Name,
		Hostname: s.Config.Hostname, User: s.Config.User,
		Entrypoint: s.Config.Entrypoint, Cmd: s.Config.Cmd, Env: s.Config.Env,
		Labels:    maps.Clone(s.Config.Labels),
		ShmSize:   s.HostConfig.ShmSize,
		Isolation: isolationHash(s.HostConfig),
	}
	delete(c.Labels, LabelSpec)
	for _, m := range s.HostConfig.Mounts {
		c.Mounts = append(c.Mounts, fmt.Sprintf("%s:%s:%s:ro=%t", m.Type, m.Source, m.Target, m.ReadOnly))
	}
	for _, u := range s.HostConfig.Ulimits {
		c.Ulimits = append(c.Ulimits, fmt.Sprintf("%s=%d:%d", u.Name, u.Soft, u.Hard))
	}
	for _, d := range s.HostConfig.DeviceRequests {
		c.GPUs = append(c.GPUs, fmt.Sprintf("%s:%d:%s:%v", d.Driver, d.Count, strings.Join(d.DeviceIDs, ","), d.Capabilities))
	}
	b, err := json.Marshal(c)
	if err != nil {
		panic(err) // plain strings and maps cannot fail to marshal
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
