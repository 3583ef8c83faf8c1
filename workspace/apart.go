package workspace

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
)

// Containers of different users must not reach each other. Each one has a
// bridge network of its own with inter-container traffic off, and the
// engine's isolation chains drop what one bridge forwards to another. But
// the engine rewrites those chains as networks come and go, and a container
// was seen reaching another's server for a moment while networks were being
// made and removed on the same engine. So the gateway keeps a rule of its
// own in DOCKER-USER, the chain the engine evaluates first and never
// rewrites: every bridge we make is named bridgePrefix + a hash of its
// network, and one rule drops whatever one of them forwards to another (or
// back into itself, which icc off forbids anyway). Traffic to the host and
// out to other networks is not touched. A network made before its bridge
// was named keeps the engine's name and only the engine's isolation.

// bridgePrefix starts the host interface name of every bridge we make.
const bridgePrefix = "syg-"

// apartRule is the rule, as iptables arguments after -C, -I or -D.
var apartRule = []string{"DOCKER-USER", "-i", bridgePrefix + "+", "-o", bridgePrefix + "+", "-j", "DROP"}

// bridgeName is the host interface of network's bridge: the prefix and 11
// hex digits of a hash of the name, 15 bytes (an interface name's limit).
func bridgeName(network string) string {
	sum := sha256.Sum256([]byte(network))
	return bridgePrefix + hex.EncodeToString(sum[:])[:11]
}

// ensureApart puts apartRule at the top of DOCKER-USER unless it is there.
// A manager checks once, and again whenever it made a network (fresh). An
// engine without DOCKER-USER (iptables off) or a host without iptables gets
// one warning: the engine's own isolation is then all there is.
func (m *Manager) ensureApart(ctx context.Context, log *slog.Logger, fresh bool) {
	m.netMu.Lock()
	defer m.netMu.Unlock()
	if m.apart && !fresh {
		return
	}
	if iptables(ctx, append([]string{"-C"}, apartRule...)...) == nil {
		m.apart = true
		return
	}
	err := iptables(ctx, append([]string{"-I", apartRule[0], "1"}, apartRule[1:]...)...)
	if err == nil {
		m.apart = true
		log.Info("added the rule that keeps containers' networks apart", "chain", apartRule[0])
		return
	}
	if !m.apartWarned {
		m.apartWarned = true
		log.Warn("cannot add the rule that keeps containers' networks apart; the engine's own isolation is all there is", "err", err)
	}
}
