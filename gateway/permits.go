package gateway

import (
	"github.com/sygaldry/sygaldry/internal/sshmsg"
	"net"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/config"
)

// What a key's authorized_keys options or a certificate's extensions and
// critical options allow, as sshd enforces them (sshd(8) AUTHORIZED_KEYS
// FILE FORMAT; ssh-keygen(1) CERTIFICATES). Decided once at authentication
// and recorded in the connection's Permissions.Extensions, which the client
// cannot touch; the hooks below read them at each channel and request.
//
// A refusal is the one sshd gives: a refused pty-req (the client says "PTY
// allocation request failed" and the session goes on without a tty), a
// refused forward (an open failure, a failed tcpip-forward), a refused
// auth-agent-req (no SSH_AUTH_SOCK in the session). A forced command
// replaces every exec, shell and subsystem request.
const (
	extNoPTY          = "sygaldry-no-pty"
	extNoPortForward  = "sygaldry-no-port-forwarding"
	extNoAgentForward = "sygaldry-no-agent-forwarding"
	extForceCommand   = "sygaldry-force-command"
)

// restrictions is what a connection may not do.
type restrictions struct {
	noPTY          bool
	noPortForward  bool
	noAgentForward bool
	forced         bool // run command for every exec, shell and subsystem
	command        string
}

// keyRestrictions maps a key line's options.
func keyRestrictions(o config.KeyOptions) restrictions {
	return restrictions{
		noPTY: o.NoPTY, noPortForward: o.NoPortForwarding, noAgentForward: o.NoAgentForwarding,
		forced: o.ForceCommand, command: o.Command,
	}
}

// certRestrictions maps a certificate's extensions (what it permits; any
// permission it lacks is denied) and its force-command critical option.
func certRestrictions(c *gossh.Certificate) restrictions {
	_, pty := c.Permissions.Extensions["permit-pty"]
	_, fwd := c.Permissions.Extensions["permit-port-forwarding"]
	_, agent := c.Permissions.Extensions["permit-agent-forwarding"]
	cmd, forced := c.CriticalOptions["force-command"]
	return restrictions{noPTY: !pty, noPortForward: !fwd, noAgentForward: !agent, forced: forced, command: cmd}
}

// record writes r into the connection's permission extensions.
func (r restrictions) record(ext map[string]string) {
	for _, f := range []struct {
		on  bool
		key string
	}{{r.noPTY, extNoPTY}, {r.noPortForward, extNoPortForward}, {r.noAgentForward, extNoAgentForward}} {
		if f.on {
			ext[f.key] = "1"
		}
	}
	if r.forced {
		ext[extForceCommand] = r.command
	}
}

// restrictionsOf reads what record wrote. A connection without
// permissions is not authenticated: everything is refused.
func restrictionsOf(conn *gossh.ServerConn) restrictions {
	if conn == nil || conn.Permissions == nil {
		return restrictions{noPTY: true, noPortForward: true, noAgentForward: true, forced: true, command: "false"}
	}
	ext := conn.Permissions.Extensions
	has := func(k string) bool { _, ok := ext[k]; return ok }
	cmd, forced := ext[extForceCommand]
	return restrictions{
		noPTY: has(extNoPTY), noPortForward: has(extNoPortForward), noAgentForward: has(extNoAgentForward),
		forced: forced, command: cmd,
	}
}

// keyLineAllows checks the options that decide whether a key line applies
// at all: expiry-time and from=. It returns why not, for the log.
func keyLineAllows(o config.KeyOptions, remote string) (bool, string) {
	if !o.Expiry.IsZero() && !time.Now().Before(o.Expiry) {
		return false, "expiry-time passed"
	}
	if o.From != "" && !config.MatchFrom(o.From, remoteIP(remote)) {
		return false, "from= does not match the client address"
	}
	return true, ""
}

// permitChannel is the hook for forwarding channels the client opens
// (direct-tcpip, direct-streamlocal@openssh.com). It rejects nc itself and
// returns false when the connection may not forward.
func permitChannel(conn *gossh.ServerConn, nc gossh.NewChannel) bool {
	if nc.ChannelType() == "session" || !restrictionsOf(conn).noPortForward {
		return true
	}
	nc.Reject(gossh.Prohibited, "port forwarding is disabled for this key")
	return false
}

// permitGlobal is the hook for tcpip-forward and
// streamlocal-forward@openssh.com (-R). Cancelling is always allowed: there
// is nothing to cancel unless a forward was allowed.
func permitGlobal(conn *gossh.ServerConn, reqType string) bool {
	switch reqType {
	case "tcpip-forward", "streamlocal-forward@openssh.com":
		return !restrictionsOf(conn).noPortForward
	}
	return true
}

// permitAgentChannel is the hook for channels the agent asks to open
// towards the client. The container is not trusted: it gets a forwarded
// connection or an agent channel only if the connection may have one.
func permitAgentChannel(conn *gossh.ServerConn, typ string) bool {
	r := restrictionsOf(conn)
	switch typ {
	case "auth-agent@openssh.com":
		return !r.noAgentForward
	case "forwarded-tcpip", "forwarded-streamlocal@openssh.com":
		return !r.noPortForward
	}
	return true
}

// sessionRequestSender is the link channel the session's requests go to.
type sessionRequestSender interface {
	SendRequest(name string, wantReply bool, payload []byte) (bool, error)
}

// permitSessionRequest is the hook for each session request before it is
// observed and forwarded; it returns false to refuse it. Under a forced
// command it rewrites exec, shell and subsystem into an exec of that
// command, first setting SSH_ORIGINAL_COMMAND on the agent's session to
// what the client asked (the command, or the subsystem's name), as sshd.
func (st *connState) permitSessionRequest(agent sessionRequestSender, req *gossh.Request) bool {
	r := restrictionsOf(st.sshConn())
	switch req.Type {
	case "pty-req":
		if r.noPTY {
			st.log.Info("pty refused by key or certificate restrictions")
			return false
		}
	case "auth-agent-req@openssh.com":
		if r.noAgentForward {
			st.log.Info("agent forwarding refused by key or certificate restrictions")
			return false
		}
	case "env":
		// The client must not choose what the forced command is told.
		if e, err := decodeEnv(req.Payload); r.forced && err == nil && e.Name == "SSH_ORIGINAL_COMMAND" {
			return false
		}
	case "exec", "shell", "subsystem":
		if !r.forced {
			return true
		}
		original, set := "", false
		var err error
		switch req.Type {
		case "exec":
			original, err = decodeExec(req.Payload)
			set = true
		case "subsystem":
			original, err = decodeSubsystem(req.Payload)
			set = true
		}
		if err != nil {
			return false
		}
		if set {
			ok, err := agent.SendRequest("env", true, gossh.Marshal(sshmsg.Env{Name: "SSH_ORIGINAL_COMMAND", Value: original}))
			if err != nil || !ok {
				st.log.Warn("set SSH_ORIGINAL_COMMAND for a forced command", "err", err)
				return false
			}
		}
		st.log.Info("running the forced command instead", "requested", req.Type)
		req.Type = "exec"
		req.Payload = gossh.Marshal(sshmsg.Exec{Command: r.command})
	}
	return true
}

// remoteIP is the client's address from a "host:port" string, or nil.
func remoteIP(hostport string) net.IP {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil
	}
	return net.ParseIP(host)
}
