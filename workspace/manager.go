package workspace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/internal/idle"
	"github.com/sygaldry/sygaldry/internal/keylock"
	"github.com/sygaldry/sygaldry/link"
)

// Options configure a Manager. The zero value works: NewManager fills the
// defaults documented on each field.
type Options struct {
	Client *client.Client // nil: NewManager connects to Host and Close closes that client
	Host   string         // engine address when Client is nil; empty: DOCKER_HOST, else the local socket

	StorageRoot string        // empty: config.DefaultStorageRoot
	StateDir    string        // link dirs go under <StateDir>/run; empty: config.DefaultStateDir
	AgentPath   string        // host sygaldry-agent binary; empty: next to this executable
	IdleStop    time.Duration // stop a container this long after its last Release; 0: never

	// ReadyTimeout bounds the wait for the agent socket after a start (and
	// for an already running container). 0: 30s.
	ReadyTimeout time.Duration

	// DisableGPUs attaches no GPUs whatever the projects say (SYGALDRY_GPU=false).
	DisableGPUs bool

	// GPUs is the host's GPU inventory. With it, a container leases the
	// GPUs its project asks for (gpulease.go) and its DeviceRequests name
	// exactly those; a host without GPUs refuses a project that asks for
	// some. nil: no leases, the configured request goes to the engine as
	// it is (sygctl launch, which cannot see the gateway's leases).
	GPUs GPUInventory
	// MaxGPUsPerUser caps the GPUs one user's containers lease together
	// (max_gpus_per_user); 0: no cap. Used with GPUs only.
	MaxGPUsPerUser int

	// NetworkPool is the IPv4 range the containers' own networks take a /28
	// each from (networks.go); the zero value: the engine's address pools.
	NetworkPool netip.Prefix

	// Ulimits replace DefaultUlimits (nil: the defaults, see SpecInput), for
	// engines that may not raise memlock; GPU containers then may not suit
	// CUDA/NCCL.
	Ulimits []*container.Ulimit

	// KeepRunning: a running container whose spec changed is used as it is,
	// never recreated. sygctl launch sets it: it cannot see the gateway's
	// use counts, so it cannot know that nobody is inside.
	KeepRunning bool

	// Labels are added to every container (tests: sygaldry.test=<id>); they
	// are part of the spec hash.
	Labels map[string]string

	// DockerfileDir is the base of relative dockerfile paths; empty: the
	// working directory.
	DockerfileDir string

	// Projects resolves a project name for List's spec check; nil: List
	// reports SpecUnknown.
	Projects func(name string) (config.Resolved, bool)

	Logger *slog.Logger // nil: slog.Default()
}

// OptionsFromConfig takes the manager's settings from a gateway config.
func OptionsFromConfig(c *config.Config) Options {
	return Options{
		Host:        c.Docker.Host,
		StorageRoot: c.Docker.StorageRoot,
		StateDir:    c.Server.StateDir,
		AgentPath:   c.Server.AgentPath,
		IdleStop:    c.Server.IdleStop.D,
		NetworkPool: networkPool(c.Docker.NetworkPool),
		Projects:    c.Project,

		MaxGPUsPerUser: c.Server.MaxGPUsPerUser,
	}
}

// Default timings.
const (
	DefaultReadyTimeout = 30 * time.Second
	stopTimeoutSeconds  = 10               // SIGTERM, then SIGKILL, as `docker stop`
	cleanupTimeout      = 60 * time.Second // cleanup on a context that was not cancelled
)

// Instance is a running container whose agent answers.
type Instance struct {
	ID         string
	Name       string // sygaldry-<project>-<user>
	LinkDir    string // host directory mounted at /.sygaldry/run
	SocketPath string // host path of the agent socket, for link.Dial
	// Peer proves the container's agent to link.Dial: its pid namespace,
	// cgroup and pinned host key.
	Peer link.Peer
}

// Manager drives the lifecycle of the managed containers. It is safe for
// concurrent use; Close stops its idle timers and waits for its work.
type Manager struct {
	opts   Options
	api    dockerAPI
	closer io.Closer // the client NewManager opened; nil when given one
	log    *slog.Logger
	locks  keylock.Set // per container name and per image

	hostMu sync.Mutex
	host   HostInfo   // the engine host's size, once asked (networks.go)
	netMu  sync.Mutex // one network subnet allocation at a time (networks.go)
	// open are the networks known to carry no host block (nohost.go), so
	// a login to an unblocked container runs no iptables. Under netMu.
	open map[string]bool
	// apart is set once the rule that keeps our bridges apart (apart.go)
	// was seen in place; apartWarned once its absence was logged. Under
	// netMu.
	apart, apartWarned bool

	// leases are the GPUs leased to containers (gpulease.go); nil without
	// an inventory. restored: they were read back from the engine once.
	leases   *LeaseTable
	restored atomic.Bool
	// probe asks a running container's agent for its GPU devices
	// (gpuaccess.go); nil: the real probe over the link.
	probe gpuProber

	mu sync.Mutex
	// uses are the connections inside each container, its idle timer and
	// since when it is idle (for refusal lines and sygctl containers).
	uses    idle.Uses
	gpuLost map[string]gpuLost // running containers whose last GPU probe was denied (gpuaccess.go)
	closed  bool
	wg      sync.WaitGroup // Ensure calls and idle stops in flight
}

// NewManager returns a Manager; it connects to the engine lazily.
func NewManager(opts Options) (*Manager, error) {
	var api dockerAPI
	var closer io.Closer
	if opts.Client != nil {
		api = opts.Client
	} else {
		copts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
		if opts.Host != "" {
			copts = append(copts, client.WithHost(opts.Host))
		}
		cl, err := client.NewClientWithOpts(copts...)
		if err != nil {
			return nil, fmt.Errorf("docker client: %w", err)
		}
		api, closer = cl, cl
	}
	return newManager(api, closer, opts)
}

// DefaultAgentPath is where the agent binary is when nothing says
// otherwise: sygaldry-agent next to the running executable (make build puts
// all three binaries in bin/).
func DefaultAgentPath() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find sygaldry-agent: %w", err)
	}
	return filepath.Join(filepath.Dir(exe), "sygaldry-agent"), nil
}

func newManager(api dockerAPI, closer io.Closer, opts Options) (*Manager, error) {
	opts.StorageRoot = or(opts.StorageRoot, config.DefaultStorageRoot)
	opts.StateDir = or(opts.StateDir, config.DefaultStateDir)
	if opts.AgentPath == "" {
		p, err := DefaultAgentPath()
		if err != nil {
			return nil, err
		}
		opts.AgentPath = p
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = DefaultReadyTimeout
	}
	for _, p := range []string{opts.StorageRoot, opts.StateDir, opts.AgentPath} {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("container manager: %q is not an absolute path", p)
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	m := &Manager{
		opts:    opts,
		api:     api,
		closer:  closer,
		log:     log.With("component", "container"),
		gpuLost: map[string]gpuLost{},
	}
	if opts.GPUs != nil {
		m.leases = NewLeaseTable(opts.MaxGPUsPerUser, m.idleWord)
	}
	return m, nil
}

// Close stops the idle timers, waits for Ensure calls and idle stops in
// flight, and closes the engine client it opened. Containers keep running.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	m.uses.StopAll()
	m.mu.Unlock()
	m.wg.Wait()
	if m.closer != nil {
		return m.closer.Close()
	}
	return nil
}

// begin registers work that Close waits for.
func (m *Manager) begin() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.wg.Add(1)
	return true
}

// Ensure returns (project, user)'s running container, after building its
// image, creating, starting or recreating it as needed; progress gets short
// lines for the user while that happens. Concurrent calls for one container
// are serialised, so 20 first logins make one container.
//
// Call Acquire(inst.Name) once the connection uses the container: Ensure
// leaves an unused container to the idle timer.
func (m *Manager) Ensure(ctx context.Context, p config.Resolved, user string, progress io.Writer) (*Instance, error) {
	if !config.ValidProjectName(p.Name) || !config.ValidUserName(user) {
		return nil, userErr(ErrBadName, fmt.Errorf("project %q, user %q", p.Name, user), "invalid project or user name")
	}
	if progress == nil {
		progress = io.Discard
	}
	if !m.begin() {
		return nil, ErrManagerClosed
	}
	defer m.wg.Done()

	name := ContainerName(p.Name, user)
	log := m.log.With("container", name, "project", p.Name, "user", user)
	unlock, err := m.locks.Lock(ctx, name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	inst, err := m.ensureLocked(ctx, log, p, user, progress)
	if err != nil {
		log.Warn("ensure container failed", "err", err)
		return nil, err
	}
	m.touchIdle(name)
	return inst, nil
}

// spec builds the spec of (p, user) with the manager's host layout.
func (m *Manager) spec(ctx context.Context, p config.Resolved, user, imageID string) (Spec, error) {
	name := ContainerName(p.Name, user)
	host, err := m.hostInfo(ctx)
	if err != nil {
		return Spec{}, err
	}
	return BuildSpec(SpecInput{
		Project:     p,
		User:        user,
		StorageRoot: m.opts.StorageRoot,
		LinkDir:     LinkDir(m.opts.StateDir, name),
		AgentPath:   m.opts.AgentPath,
		AgentKey:    AgentKeyPath(m.opts.StateDir, name),
		ImageID:     imageID,
		DisableGPUs: m.opts.DisableGPUs,
		Ulimits:     m.opts.Ulimits,
		Labels:      m.opts.Labels,
		Host:        host,
	})
}

func (m *Manager) ensureLocked(ctx context.Context, log *slog.Logger, p config.Resolved, user string, progress io.Writer) (*Instance, error) {
	image := or(p.Image, config.DefaultImage)
	imageID, err := m.ensureImage(ctx, p, image, progress)
	if err != nil {
		return nil, err
	}
	spec, err := m.spec(ctx, p, user, imageID)
	if err != nil {
		return nil, userErr(nil, err, "the configuration of project %s cannot make a container; the administrator can find the details in the gateway log", p.Name)
	}
	if fi, err := os.Stat(m.opts.AgentPath); err != nil || !fi.Mode().IsRegular() {
		if err == nil {
			err = fs.ErrInvalid
		}
		return nil, userErr(ErrAgentMissing, err, "the sygaldry-agent binary is missing on the host (%s)", m.opts.AgentPath)
	}

	cur, err := m.find(ctx, p.Name, user)
	if err != nil {
		return nil, err
	}
	leasing := m.leasing(p)
	if leasing && (cur == nil || !cur.running()) {
		// A host without GPUs refuses before anything is removed or made.
		if _, err := m.hostGPUs(p); err != nil {
			return nil, err
		}
	}
	// A running container is recreated, once nobody is inside, when its
	// configuration changed, when it lost its GPUs (gpuaccess.go), or when
	// it was made before leases and so holds GPUs nobody granted.
	lost := false
	if cur != nil && cur.running() && m.leases != nil && cur.labels[LabelGPUs] != "" {
		lost = m.checkGPUAccess(ctx, log, cur)
	}
	if stale := staleReason(cur, spec.Hash, leasing, lost); stale != nil {
		switch {
		case cur.running() && m.InUse(spec.Name) > 0:
			log.Info(stale.log+"; in use, keeping the old one until nobody is inside", "id", cur.id)
		case cur.running() && len(m.userProcesses(ctx, cur.id)) > 0:
			// Recreating would kill a job left running (nohup, tmux), as
			// an idle stop would: wait until it is done.
			log.Info(stale.log+"; jobs still run in it, keeping it", "id", cur.id)
			fmt.Fprintf(progress, "Container %s %s; it is recreated once no job runs in it.\n", spec.Name, stale.user)
		case cur.running() && m.opts.KeepRunning:
			log.Info(stale.log+"; running, keeping it", "id", cur.id)
			fmt.Fprintf(progress, "Container %s %s; using it as it is (stop it to apply the change).\n", spec.Name, stale.user)
		default:
			if stale == &staleConfig {
				log.Info(stale.log+"; recreating", "id", cur.id, "old", cur.hash, "new", spec.Hash)
			} else {
				log.Info(stale.log+"; recreating", "id", cur.id)
			}
			fmt.Fprintln(progress, stale.recreating(spec.Name))
			if err := m.remove(ctx, cur.id); err != nil {
				return nil, err
			}
			m.forgetGPUAccess(spec.Name)
			cur = nil
		}
	}
	if cur != nil && !cur.running() && !agentKeyMatches(spec.AgentKeyPath, cur.agentKey) {
		// Stopped, so nobody is inside: a container whose agent key is
		// missing (made before keys were pinned, or the state dir was
		// wiped) is made anew rather than started unprovable.
		log.Info("container has no usable agent key; recreating", "id", cur.id)
		if err := m.remove(ctx, cur.id); err != nil {
			return nil, err
		}
		cur = nil
	}
	if cur != nil && cur.state == "dead" {
		log.Warn("container is dead; recreating", "id", cur.id)
		if err := m.remove(ctx, cur.id); err != nil {
			return nil, err
		}
		cur = nil
	}

	if leasing && cur != nil && (cur.state == "created" || cur.state == "exited") {
		// Stopped: it leases again the GPUs it was made with. When one of
		// them is taken, or it predates leases, it is made anew with a new
		// lease: nobody is inside a stopped container.
		prev, labelled := LeaseFromLabels(spec.Name, cur.labels)
		err := errors.New("no GPU lease label")
		if labelled {
			_, err = m.grantGPUs(ctx, log, p, user, config.GPUs{Set: true, IDs: prev.UUIDs})
		}
		if err != nil {
			if labelled && !errors.Is(err, ErrGPUsBusy) {
				return nil, err
			}
			log.Info("stopped container cannot have its GPUs back; recreating it with a new lease", "id", cur.id, "why", err)
			if err := m.remove(ctx, cur.id); err != nil {
				m.releaseGPUs(spec.Name)
				return nil, err
			}
			cur = nil
		}
	}

	if cur == nil {
		if leasing {
			l, err := m.grantGPUs(ctx, log, p, user, wantedGPUs(p.GPUs))
			if err != nil {
				m.releaseGPUs(spec.Name) // a removed container's lease, if any
				return nil, err
			}
			spec = WithLease(spec, l)
		}
		id, err := m.create(ctx, log, p, spec, progress)
		if err != nil {
			m.releaseGPUs(spec.Name)
			return nil, err
		}
		inst, err := m.startAndWait(ctx, log, p, spec, id, spec.Config.Labels[LabelAgentKey], progress)
		if err != nil {
			m.releaseGPUs(spec.Name) // made but not running: it leases again at its next start
		}
		return inst, err
	}
	// Kept: its limits and host block follow the configuration without a
	// recreation. A host block that cannot be put in place stops the login.
	if err := m.applyLimits(ctx, log, cur.id, limitsOf(spec.HostConfig)); err != nil {
		log.Warn("container limits not updated; it keeps its old ones", "err", err)
	}
	if err := m.syncHostBlock(ctx, log, spec.Network, p.Network == config.NetworkIsolatedNoHost); err != nil {
		return nil, userErr(nil, err, "the network of %s could not be closed to the host; the administrator can find the details in the gateway log", spec.Name)
	}
	switch cur.state {
	case "running", "restarting":
		if m.leases != nil {
			// Running: it holds the GPUs on its label, whatever the table
			// knew (a container started while the gateway was away).
			if _, held := m.leases.Held(spec.Name); !held {
				if l, ok := LeaseFromLabels(spec.Name, cur.labels); ok {
					m.leases.Restore(l)
				}
			}
		}
		// Kept or current: its link dir is the one it was made with.
		spec.LinkDir, spec.SocketPath = cur.linkDir, cur.socketPath()
		return m.waitReady(ctx, log, spec.Name, cur.id, spec.SocketPath, cur.agentKey)
	case "created", "exited":
		m.forgetGPUAccess(spec.Name) // a start sets its device cgroup up anew
		if err := m.ensureNetwork(ctx, log, spec); err != nil {
			m.releaseGPUs(spec.Name)
			return nil, err
		}
		inst, err := m.startAndWait(ctx, log, p, spec, cur.id, cur.agentKey, progress)
		if err != nil {
			m.releaseGPUs(spec.Name)
		}
		return inst, err
	default:
		return nil, userErr(nil, fmt.Errorf("state %q", cur.state), "container %s is %s; the administrator has to look at it", spec.Name, cur.state)
	}
}
