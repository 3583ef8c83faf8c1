package workspace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"

	"github.com/sygaldry/sygaldry/config"
)

// iccOption switches inter-container traffic off on a bridge network: even a
// container that an admin attaches to it by hand cannot reach ours.
const iccOption = "com.docker.network.bridge.enable_icc"

// hostInfo returns the engine host's size, asked once.
func (m *Manager) hostInfo(ctx context.Context) (HostInfo, error) {
	m.hostMu.Lock()
	defer m.hostMu.Unlock()
	if m.host.CPUs > 0 {
		return m.host, nil
	}
	info, err := m.api.Info(ctx)
	if err != nil {
		return HostInfo{}, fmt.Errorf("engine info: %w", err)
	}
	m.host = HostInfo{CPUs: info.NCPU, Memory: info.MemTotal}
	return m.host, nil
}

// networkLabels are the labels of a container's network: ours and the
// extra ones (tests find their networks by them).
func (m *Manager) networkLabels(spec Spec) map[string]string {
	l := maps.Clone(m.opts.Labels)
	if l == nil {
		l = map[string]string{}
	}
	l[LabelManaged] = "true"
	l[LabelProject] = spec.Config.Labels[LabelProject]
	l[LabelUser] = spec.Config.Labels[LabelUser]
	return l
}

// ensureNetwork creates the container's own network unless it exists. A
// network of that name without our labels is not ours: refused, like a
// container of our name.
func (m *Manager) ensureNetwork(ctx context.Context, log *slog.Logger, spec Spec) error {
	if spec.Network == "" {
		return nil
	}
	nw, err := m.api.NetworkInspect(ctx, spec.Network, network.InspectOptions{})
	switch {
	case err == nil:
		m.ensureApart(ctx, log, false)
		return checkNetwork(spec, nw)
	case !cerrdefs.IsNotFound(err):
		return fmt.Errorf("inspect network %s: %w", spec.Network, err)
	}
	subnet, err := m.createNetwork(ctx, spec.Network, network.CreateOptions{
		Driver:  "bridge",
		Options: map[string]string{iccOption: "false", bridgeNameOption: bridgeName(spec.Network)},
		Labels:  m.networkLabels(spec),
	})
	switch {
	case err == nil:
		log.Info("created network", "network", spec.Network, "subnet", subnet, "bridge", bridgeName(spec.Network))
		m.ensureApart(ctx, log, true)
		return nil
	case cerrdefs.IsConflict(err):
		// Made meanwhile by another process (sygctl launch, or not ours):
		// the same checks as for one found.
		nw, err := m.api.NetworkInspect(ctx, spec.Network, network.InspectOptions{})
		if err != nil {
			return fmt.Errorf("inspect network %s: %w", spec.Network, err)
		}
		return checkNetwork(spec, nw)
	case errors.Is(err, errPoolFull):
		return userErr(nil, err, "no address range is left for the network of %s; the administrator should make docker.network_pool larger", spec.Name)
	case strings.Contains(err.Error(), "non-overlapping") || strings.Contains(err.Error(), "address pool"):
		return userErr(nil, fmt.Errorf("create network %s: %w", spec.Network, err),
			"the Docker engine has no address range left for the network of %s; the administrator should set docker.network_pool, or give dockerd more (default-address-pools in daemon.json)", spec.Name)
	}
	return userErr(nil, fmt.Errorf("create network %s: %w", spec.Network, err),
		"the network of %s could not be created; the administrator can find the details in the gateway log", spec.Name)
}

// checkNetwork accepts an existing network of the container's name only if
// we made it for this (project, user) and it keeps containers apart.
func checkNetwork(spec Spec, nw network.Inspect) error {
	if nw.Labels[LabelManaged] != "true" || nw.Labels[LabelProject] != spec.Config.Labels[LabelProject] || nw.Labels[LabelUser] != spec.Config.Labels[LabelUser] {
		return userErr(ErrNotManaged, fmt.Errorf("network %s has labels %v", spec.Network, nw.Labels),
			"a network named %s exists but was not made by sygaldry; the administrator has to remove or rename it", spec.Network)
	}
	if nw.Options[iccOption] != "false" || nw.Driver != "bridge" {
		return userErr(ErrNotManaged, fmt.Errorf("network %s: driver %s, options %v", spec.Network, nw.Driver, nw.Options),
			"network %s does not isolate its container; the administrator has to remove it (it is made again)", spec.Network)
	}
	return nil
}

// removeNetwork removes the own network of (project, user) once its
// container is gone; a network that is not ours, or still in use, stays.
func (m *Manager) removeNetwork(ctx context.Context, name string) error {
	nw, err := m.api.NetworkInspect(ctx, name, network.InspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect network %s: %w", name, err)
	}
	if nw.Labels[LabelManaged] != "true" {
		return nil
	}
	if b := bridgeOf(nw); b != "" {
		m.netMu.Lock()
		err := deleteRule(ctx, []string{hostChain, "-i", b, "-j", "DROP"})
		m.netMu.Unlock()
		if err != nil {
			m.log.Warn("delete the host block of a removed network", "network", name, "err", err)
		}
	}
	if err := m.api.NetworkRemove(ctx, nw.ID); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove network %s: %w", name, err)
	}
	return nil
}

// applyLimits brings a container's limits to the spec's, with the engine's
// update call, when they differ.
func (m *Manager) applyLimits(ctx context.Context, log *slog.Logger, id string, want Limits) error {
	ci, err := m.api.ContainerInspect(ctx, id)
	if err != nil {
		return fmt.Errorf("inspect container %s: %w", id, err)
	}
	if ci.HostConfig == nil {
		return fmt.Errorf("inspect container %s: no host config", id)
	}
	if want.matches(ci.HostConfig.Resources) {
		return nil
	}
	resp, err := m.api.ContainerUpdate(ctx, id, want.update())
	if err != nil {
		return fmt.Errorf("update limits of container %s: %w", id, err)
	}
	for _, w := range resp.Warnings {
		log.Warn("engine warning on update", "warning", w)
	}
	log.Info("updated container limits", "id", id, "nano_cpus", want.NanoCPUs, "memory", want.Memory, "pids", want.Pids)
	return nil
}

// ApplyLimits puts the limits and the host block (network =
// "isolated-no-host") of cfg in force on every managed container of a
// configured project, running or stopped, without recreating any (the
// gateway calls it after a reload). A limit switched on or off waits for the
// container's recreation (see isolation.go). Errors are joined; each
// container is tried.
func (m *Manager) ApplyLimits(ctx context.Context, cfg *config.Config) error {
	if !m.begin() {
		return ErrManagerClosed
	}
	defer m.wg.Done()
	if m.leases != nil {
		m.leases.SetMaxPerUser(cfg.Server.MaxGPUsPerUser) // leases already granted stay
	}
	host, err := m.hostInfo(ctx)
	if err != nil {
		return err
	}
	f := m.ownFilter()
	all, err := m.list(ctx, f)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range all {
		p, ok := cfg.Project(c.project)
		if !ok || c.name != ContainerName(c.project, c.user) {
			continue
		}
		lim, err := LimitsFor(p.Settings, host)
		if err != nil {
			errs = append(errs, fmt.Errorf("project %s: %w", p.Name, err))
			continue
		}
		log := m.log.With("container", c.name, "project", c.project, "user", c.user)
		if err := m.applyLimitsLocked(ctx, log, c.name, c.id, lim); err != nil {
			log.Warn("apply limits", "err", err)
			errs = append(errs, err)
		}
		if network := m.ownNetwork(ctx, c.id); network != "" {
			if err := m.syncHostBlock(ctx, log, network, p.Network == config.NetworkIsolatedNoHost); err != nil {
				log.Warn("host block", "err", err)
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// applyLimitsLocked updates under the container's lock, so it does not race
// with an Ensure that recreates it.
func (m *Manager) applyLimitsLocked(ctx context.Context, log *slog.Logger, name, id string, lim Limits) error {
	unlock, err := m.locks.Lock(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	err = m.applyLimits(ctx, log, id, lim)
	if cerrdefs.IsNotFound(err) {
		return nil // removed meanwhile
	}
	return err
}

// limitsOf reads back the limits a spec carries.
func limitsOf(hc *container.HostConfig) Limits {
	l := Limits{NanoCPUs: hc.NanoCPUs, Memory: hc.Memory}
	if hc.PidsLimit != nil {
		l.Pids = *hc.PidsLimit
	}
	return l
}

// ownNetwork is the name of container id's own network (isolated mode), or
// "" when it has none or cannot be inspected.
func (m *Manager) ownNetwork(ctx context.Context, id string) string {
	ci, err := m.api.ContainerInspect(ctx, id)
	if err != nil || ci.HostConfig == nil || ci.Config == nil {
		return ""
	}
	name := string(ci.HostConfig.NetworkMode)
	if ci.Config.Labels[LabelManaged] != "true" || name != ContainerName(ci.Config.Labels[LabelProject], ci.Config.Labels[LabelUser]) {
		return ""
	}
	return name
}

// errPoolFull: every /28 of docker.network_pool is taken.
var errPoolFull = errors.New("network pool exhausted")

func networkPool(s string) netip.Prefix {
	p, _ := config.NetworkPool(s) // validated at load
	return p
}

// createNetwork creates a network, in the next free /28 of NetworkPool when
// one is configured (the engine's own pools hold about 30 networks). A /28
// another process took meanwhile is skipped; the engine refuses overlaps.
func (m *Manager) createNetwork(ctx context.Context, name string, opts network.CreateOptions) (string, error) {
	pool := m.opts.NetworkPool
	if !pool.IsValid() {
		_, err := m.api.NetworkCreate(ctx, name, opts)
		return "", err
	}
	m.netMu.Lock()
	defer m.netMu.Unlock()
	nws, err := m.api.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("list networks: %w", err)
	}
	var used []netip.Prefix
	for _, n := range nws {
		for _, c := range n.IPAM.Config {
			if p, err := netip.ParsePrefix(c.Subnet); err == nil {
				used = append(used, p)
			}
		}
	}
	step := uint32(1) << (32 - config.NetworkSubnetBits)
	first := pool.Addr().As4()
	base := uint32(first[0])<<24 | uint32(first[1])<<16 | uint32(first[2])<<8 | uint32(first[3])
	count := uint32(1) << (config.NetworkSubnetBits - pool.Bits())
	for i := uint32(0); i < count; i++ {
		a := base + i*step
		sub := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), config.NetworkSubnetBits)
		if slices.ContainsFunc(used, sub.Overlaps) {
			continue
		}
		opts.IPAM = &network.IPAM{Driver: "default", Config: []network.IPAMConfig{{Subnet: sub.String()}}}
		_, err := m.api.NetworkCreate(ctx, name, opts)
		if err != nil && strings.Contains(strings.ToLower(err.Error()), "overlap") {
			continue // taken by a network made since the list
		}
		return sub.String(), err
	}
	return "", fmt.Errorf("create network %s: %w: %s", name, errPoolFull, pool)
}
