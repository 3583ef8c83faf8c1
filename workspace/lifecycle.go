package workspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/pkg/stdcopy"
	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/link"
)

// found is a managed container as ContainerList describes it.
type found struct {
	id, name, state, hash string
	project, user, image  string
	created               int64
	linkDir               string // host source of /.sygaldry/run
	agentKey              string // LabelAgentKey: the agent's pinned public key
	labels                map[string]string
}

func (f *found) running() bool { return f.state == "running" || f.state == "restarting" }

func (f *found) socketPath() string { return filepath.Join(f.linkDir, link.SocketName) }

// find looks the container of (project, user) up by its labels, not its
// name: the labels are the contract, and a foreign container that happens
// to carry our name is not ours.
func (m *Manager) find(ctx context.Context, project, user string) (*found, error) {
	all, err := m.list(ctx, filters.NewArgs(
		filters.Arg("label", LabelProject+"="+project),
		filters.Arg("label", LabelUser+"="+user),
	))
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, nil
	}
	best := &all[0]
	for i := range all {
		if all[i].running() && !best.running() {
			best = &all[i]
		}
	}
	if len(all) > 1 {
		m.log.Warn("several containers carry the labels of one (project, user); using one", "project", project, "user", user, "count", len(all), "id", best.id)
	}
	return best, nil
}

// ownFilter is the engine filter of args plus this manager's own labels
// (Options.Labels), so only its containers match (tests share an engine).
func (m *Manager) ownFilter(args ...filters.KeyValuePair) filters.Args {
	f := filters.NewArgs(args...)
	for k, v := range m.opts.Labels {
		f.Add("label", k+"="+v)
	}
	return f
}

// list returns the managed containers matching the extra filters.
func (m *Manager) list(ctx context.Context, f filters.Args) ([]found, error) {
	f.Add("label", LabelManaged+"=true")
	cs, err := m.api.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]found, 0, len(cs))
	for _, c := range cs {
		fd := found{
			id: c.ID, state: string(c.State), hash: c.Labels[LabelSpec],
			project: c.Labels[LabelProject], user: c.Labels[LabelUser],
			image: c.Image, created: c.Created, agentKey: c.Labels[LabelAgentKey],
			labels: c.Labels,
		}
		if len(c.Names) > 0 {
			fd.name = strings.TrimPrefix(c.Names[0], "/")
		}
		for _, mp := range c.Mounts {
			if mp.Destination == LinkTarget {
				fd.linkDir = mp.Source
			}
		}
		out = append(out, fd)
	}
	return out, nil
}

// create makes the container (not started) after preparing the host
// directories its bind mounts need.
func (m *Manager) create(ctx context.Context, log *slog.Logger, p config.Resolved, spec Spec, progress io.Writer) (string, error) {
	if _, err := prepareHostDirs(spec); err != nil {
		return "", userErr(nil, err, "the project storage for %s cannot be prepared; the administrator can find the details in the gateway log", p.Name)
	}
	if err := checkWorkspace(p, spec); err != nil {
		return "", err
	}
	// A new container, a new agent key: nothing a previous container of
	// this name could read proves this one.
	pub, err := writeAgentKey(spec.AgentKeyPath)
	if err != nil {
		return "", userErr(nil, err, "container %s could not be created; the administrator can find the details in the gateway log", spec.Name)
	}
	spec.Config.Labels[LabelAgentKey] = pub
	if err := m.ensureNetwork(ctx, log, spec); err != nil {
		return "", err
	}
	if err := m.syncHostBlock(ctx, log, spec.Network, p.Network == config.NetworkIsolatedNoHost); err != nil {
		return "", userErr(nil, err, "the network of %s could not be closed to the host; the administrator can find the details in the gateway log", spec.Name)
	}
	fmt.Fprintf(progress, "Creating container %s from %s ...\n", spec.Name, spec.Image)
	resp, err := m.api.ContainerCreate(ctx, spec.Config, spec.HostConfig, nil, nil, spec.Name)
	if err != nil {
		switch {
		case cerrdefs.IsConflict(err):
			return "", userErr(ErrNotManaged, err, "a container named %s exists but was not made by sygaldry; the administrator has to remove or rename it", spec.Name)
		case isNoGPURuntime(err):
			return "", noGPUError(p, err)
		case strings.Contains(err.Error(), "bind source path does not exist"):
			return "", userErr(nil, err, "a mount of project %s names a host path that does not exist; the administrator has to create it or fix the project's mounts", p.Name)
		}
		return "", userErr(nil, fmt.Errorf("create container %s: %w", spec.Name, err), "container %s could not be created; the administrator can find the details in the gateway log", spec.Name)
	}
	for _, w := range resp.Warnings {
		log.Warn("engine warning on create", "warning", w)
	}
	log.Info("created container", "id", resp.ID, "image", spec.Image, "spec", spec.Hash)
	return resp.ID, nil
}

// startAndWait prepares the host directories (they may have been removed
// since the container was made), hands them to the container user, starts
// the container and waits for its agent.
func (m *Manager) startAndWait(ctx context.Context, log *slog.Logger, p config.Resolved, spec Spec, id, agentKey string, progress io.Writer) (*Instance, error) {
	hd, err := prepareHostDirs(spec)
	if err != nil {
		return nil, userErr(nil, err, "the project storage for %s cannot be prepared; the administrator can find the details in the gateway log", p.Name)
	}
	if err := checkWorkspace(p, spec); err != nil {
		return nil, err
	}
	uid, gid, err := lookupUser(ctx, m.api, id, spec.ContainerUser)
	if err != nil {
		if errors.Is(err, ErrUserMissing) {
			m.removeQuietly(ctx, log, id)
			return nil, userErr(ErrUserMissing, err, "image %s has no user %s (the project's container user); the administrator has to fix the image or the project's user setting", spec.Image, spec.ContainerUser)
		}
		return nil, err
	}
	if err := hd.own(uid, gid); err != nil {
		return nil, userErr(nil, err, "the project storage for %s cannot be prepared; the administrator can find the details in the gateway log", p.Name)
	}
	if err := ownAgentKey(spec.AgentKeyPath, uid, gid); err != nil {
		return nil, userErr(nil, err, "container %s could not be started; the administrator can find the details in the gateway log", spec.Name)
	}
	if err := removeStaleSocket(spec); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "Starting container %s ...\n", spec.Name)
	if err := m.api.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		if isDriverTooOld(err) {
			return nil, driverTooOldError(spec.Name, spec.Image, err)
		}
		if isNoGPURuntime(err) {
			return nil, noGPUError(p, err)
		}
		if isRlimitDenied(err) {
			return nil, userErr(ErrUlimit, err, "the Docker engine may not set the resource limits of container %s (unlimited locked memory and a 64 MiB stack, which CUDA and NCCL need).\n"+
				"The administrator should raise dockerd's limits (systemd: LimitMEMLOCK=infinity).", spec.Name)
		}
		return nil, userErr(nil, fmt.Errorf("start container %s: %w", spec.Name, err), "container %s could not be started; the administrator can find the details in the gateway log", spec.Name)
	}
	log.Info("started container", "id", id)
	inst, err := m.waitReady(ctx, log, spec.Name, id, spec.SocketPath, agentKey)
	if err == nil {
		fmt.Fprintf(progress, "Container %s is ready.\n", spec.Name)
	}
	return inst, err
}

// waitReady waits until the agent answers on its socket, bounded by
// ReadyTimeout; a container that exits meanwhile ends the wait at once, with
// the tail of its log in the error.
func (m *Manager) waitReady(ctx context.Context, log *slog.Logger, name, id, socket, agentKey string) (*Instance, error) {
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	tctx, tcancel := context.WithTimeoutCause(rctx, m.opts.ReadyTimeout, errReadyTimedOut)
	defer tcancel()

	var exit *container.WaitResponse
	var wg sync.WaitGroup
	waitC, errC := m.api.ContainerWait(tctx, id, container.WaitConditionNotRunning)
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case r := <-waitC:
			exit = &r
			cancel(errExitedDuringUp)
		case <-errC:
		case <-tctx.Done():
		}
	}()
	peer, err := m.peer(tctx, id, name, agentKey)
	var cl *gossh.Client
	if err == nil {
		cl, err = link.WaitReady(tctx, socket, peer)
	}
	tcancel()
	wg.Wait()
	if err == nil {
		cl.Close()
		return &Instance{ID: id, Name: name, LinkDir: filepath.Dir(socket), SocketPath: socket, Peer: peer}, nil
	}
	if errors.Is(err, link.ErrUntrusted) {
		log.Error("agent socket failed verification; nothing was sent to it", "id", id, "socket", socket, "err", err)
		return nil, userErr(ErrAgentUntrusted, err, "the agent of container %s could not be verified, so nothing was sent to it; the administrator can find the details in the gateway log", name)
	}

	if ctx.Err() != nil { // the caller gave up; not the container's fault
		return nil, context.Cause(ctx)
	}
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer ccancel()
	if exit == nil {
		// Timed out: it may still have exited just now.
		if ci, ierr := m.api.ContainerInspect(cctx, id); ierr == nil && ci.State != nil && !ci.State.Running {
			exit = &container.WaitResponse{StatusCode: int64(ci.State.ExitCode)}
		}
	}
	if exit != nil {
		tail := m.logTail(cctx, id, 20)
		log.Warn("container exited before its agent was ready", "id", id, "code", exit.StatusCode, "log", tail)
		msg := fmt.Sprintf("container %s exited (code %d) before it was ready", name, exit.StatusCode)
		if tail != "" {
			msg += "; the last lines of its log:\n" + indent(tail)
		}
		return nil, userErr(ErrContainerExit, fmt.Errorf("exit code %d", exit.StatusCode), "%s", msg)
	}
	return nil, userErr(ErrAgentNotReady, err, "container %s is running but its agent did not answer within %s; the administrator can find the details in the gateway log", name, m.opts.ReadyTimeout)
}

// logTail returns the last n lines of the container's stdout and stderr.
func (m *Manager) logTail(ctx context.Context, id string, n int) string {
	rc, err := m.api.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: fmt.Sprint(n)})
	if err != nil {
		m.log.Warn("read container log", "id", id, "err", err)
		return ""
	}
	defer rc.Close()
	var buf bytes.Buffer
	// Our containers have no TTY, so the log is multiplexed.
	if _, err := stdcopy.StdCopy(&buf, &buf, io.LimitReader(rc, 64<<10)); err != nil {
		m.log.Warn("read container log", "id", id, "err", err)
	}
	return strings.TrimRight(buf.String(), "\n")
}

// remove stops (SIGTERM, grace period) and removes a container.
func (m *Manager) remove(ctx context.Context, id string) error {
	nw := m.ownNetwork(ctx, id)
	timeout := stopTimeoutSeconds
	if err := m.api.ContainerStop(ctx, id, container.StopOptions{Timeout: &timeout}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("stop container %s: %w", id, err)
	}
	if err := m.api.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	if nw != "" {
		return m.removeNetwork(ctx, nw)
	}
	return nil
}

// removeQuietly removes a container we just made and cannot use. It runs
// even when ctx was cancelled: a half-made container must not stay behind.
func (m *Manager) removeQuietly(ctx context.Context, log *slog.Logger, id string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	nw := m.ownNetwork(cctx, id)
	if err := m.api.ContainerRemove(cctx, id, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		log.Warn("remove unusable container", "id", id, "err", err)
	} else if nw != "" {
		if err := m.removeNetwork(cctx, nw); err != nil {
			log.Warn("remove network of unusable container", "id", id, "err", err)
		}
	}
}

// isNoGPURuntime recognises the engine's answer when DeviceRequests ask for
// the nvidia driver and the NVIDIA container toolkit is not installed.
func isNoGPURuntime(err error) bool {
	return err != nil && strings.Contains(err.Error(), "could not select device driver")
}

// driverTooOldRE matches the NVIDIA container runtime hook's refusal when
// the host driver is older than the image's CUDA (NVIDIA_REQUIRE_CUDA):
// "nvidia-container-cli: requirement error: unsatisfied condition: cuda>=12.9,
// please update your driver to a newer version, or use an earlier cuda
// container". Older toolkits wrote "cuda >= 9.0".
var driverTooOldRE = regexp.MustCompile(`unsatisfied condition: cuda\s*>=\s*([0-9][0-9.]*[0-9])`)

// isDriverTooOld recognises that refusal in a start error.
func isDriverTooOld(err error) bool {
	return err != nil && driverTooOldRE.MatchString(err.Error())
}

// driverTooOldError is the one line a user gets for it.
func driverTooOldError(name, image string, err error) error {
	need := "the image's CUDA"
	if m := driverTooOldRE.FindStringSubmatch(err.Error()); m != nil {
		need = "CUDA " + m[1]
	}
	return userErr(ErrDriverTooOld, err, "container %s was not started: image %s needs %s and this host's NVIDIA driver is too old for it; the administrator has to update the driver (see container/NVIDIA_FIXES.md)", name, image, need)
}

// isRlimitDenied recognises runc's failure to apply a ulimit above the
// engine's own hard limit (dockerd without CAP_SYS_RESOURCE or with a low
// LimitMEMLOCK).
func isRlimitDenied(err error) bool {
	return err != nil && strings.Contains(err.Error(), "error setting rlimit")
}

func noGPUError(p config.Resolved, err error) error {
	return userErr(ErrNoGPURuntime, err,
		"project %s asks for GPUs (gpus = %s) but this host's Docker engine cannot attach them.\n"+
			"The administrator should set gpus = \"none\" for the project, or install the NVIDIA Container Toolkit.",
		p.Name, gpusSetting(p.GPUs))
}

func gpusSetting(g config.GPUs) string {
	if !g.Set {
		return strconv.Itoa(config.DefaultGPUs)
	}
	if g.Count > 0 {
		return g.String()
	}
	return fmt.Sprintf("%q", g.String())
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
