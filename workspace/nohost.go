package workspace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/network"
)

// network = "isolated-no-host": the container's own network, and a firewall
// rule that drops everything its bridge sends to the host itself (the INPUT
// hook: the bridge gateway address, the host's other addresses, any service
// the host listens on). Traffic routed through the host (the internet) is
// forwarded, not input, and still flows; Docker's DNS answers inside the
// container's own namespace.
//
// Ownership: the rules live in one chain of ours, SYGALDRY-INPUT, jumped to
// from the top of INPUT; one rule per bridge, "-i <bridge> -j DROP". A rule
// is added when the container is made, started or used, and whenever the
// configuration asks for it (reload); it is deleted when the setting is
// switched off and when the network is removed. A rule left for a bridge
// that no longer exists matches nothing. Rules do not survive a reboot or a
// firewall reload: every Ensure puts them back before the container is used,
// and containers start only through Ensure.

// hostChain is our chain in the filter table.
const hostChain = "SYGALDRY-INPUT"

// bridgeNameOption is the engine's option naming a bridge's interface.
const bridgeNameOption = "com.docker.network.bridge.name"

// iptables runs iptables (the binary the engine uses too, from PATH), waiting
// for the xtables lock.
func iptables(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "iptables", append([]string{"-w", "10"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// bridgeOf is the host interface of a bridge network.
func bridgeOf(nw network.Inspect) string {
	if b := nw.Options[bridgeNameOption]; b != "" {
		return b
	}
	if len(nw.ID) < 12 {
		return ""
	}
	return "br-" + nw.ID[:12] // the engine's name when none is given
}

// ensureHostChain makes our chain and the jump to it, once they are missing.
func ensureHostChain(ctx context.Context) error {
	if iptables(ctx, "-S", hostChain) != nil {
		if err := iptables(ctx, "-N", hostChain); err != nil && iptables(ctx, "-S", hostChain) != nil {
			return err
		}
	}
	if iptables(ctx, "-C", "INPUT", "-j", hostChain) != nil {
		return iptables(ctx, "-I", "INPUT", "1", "-j", hostChain)
	}
	return nil
}

// syncHostBlock adds or deletes the rule that keeps the container's network
// from reaching the host, as block says. A network that does not exist has
// nothing to sync. A network this manager already opened is not looked at
// again, so a login to an unblocked container (the default) runs no iptables;
// a blocked one is checked at every login, which puts a rule lost to a
// firewall reload back.
func (m *Manager) syncHostBlock(ctx context.Context, log *slog.Logger, networkName string, block bool) error {
	if networkName == "" {
		return nil
	}
	if !block {
		m.netMu.Lock()
		open := m.open[networkName]
		m.netMu.Unlock()
		if open {
			return nil
		}
	}
	nw, err := m.api.NetworkInspect(ctx, networkName, network.InspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect network %s: %w", networkName, err)
	}
	bridge := bridgeOf(nw)
	if bridge == "" {
		return fmt.Errorf("network %s: no bridge interface", networkName)
	}
	m.netMu.Lock()
	defer m.netMu.Unlock()
	rule := []string{hostChain, "-i", bridge, "-j", "DROP"}
	if !block {
		err := deleteRule(ctx, rule)
		if err == nil {
			if m.open == nil {
				m.open = map[string]bool{}
			}
			m.open[networkName] = true
		}
		return err
	}
	delete(m.open, networkName)
	if err := ensureHostChain(ctx); err != nil {
		return err
	}
	if iptables(ctx, append([]string{"-C"}, rule...)...) == nil {
		return nil
	}
	if err := iptables(ctx, append([]string{"-A"}, rule...)...); err != nil {
		return err
	}
	log.Info("blocked the host for the container's network", "network", networkName, "bridge", bridge)
	return nil
}

// deleteRule deletes every copy of rule; no chain, no rule, or no iptables
// at all (a host that never used isolated-no-host) is nothing to delete.
func deleteRule(ctx context.Context, rule []string) error {
	if _, err := exec.LookPath("iptables"); err != nil {
		return nil
	}
	for range 16 {
		if iptables(ctx, append([]string{"-C"}, rule...)...) != nil {
			return nil
		}
		if err := iptables(ctx, append([]string{"-D"}, rule...)...); err != nil {
			return err
		}
	}
	return errors.New("iptables: rule still present after 16 deletions")
}
