package gateway

import (
	"github.com/sygaldry/sygaldry/internal/sshmsg"
	"strings"

	gossh "golang.org/x/crypto/ssh"
)

// Decoding of the payloads the gateway looks into. Client requests are
// hostile (any authenticated user), and so is everything the agent sends:
// it runs as the container's user, who can replace or drive it. Each
// decoder is the one place its payload is parsed; gossh.Unmarshal refuses
// missing and trailing bytes, and the decoders refuse values the gateway
// or the agent could not use. The fuzz targets in payloads_fuzz_test.go
// check them. The bytes forwarded to the other side are the original ones.

// maxSignalName bounds an exit-signal name from the agent: RFC 4254 names
// are a few letters ("TERM", "SIG@openssh.com").
const maxSignalName = 64

// decodeEnv decodes an "env" request (RFC 4254 §6.4). A name with '=' or
// NUL, or a value with NUL, cannot be one entry of an environment block, so
// it is refused whatever accept_env says.
func decodeEnv(payload []byte) (sshmsg.Env, error) {
	var e sshmsg.Env
	if err := sshmsg.Unmarshal("env", payload, &e); err != nil {
		return sshmsg.Env{}, err
	}
	if e.Name == "" || strings.ContainsAny(e.Name, "=\x00") || strings.IndexByte(e.Value, 0) >= 0 {
		return sshmsg.Env{}, sshmsg.Malformed("env", "not a NAME=value pair")
	}
	return e, nil
}

func decodeExec(payload []byte) (string, error) {
	var c sshmsg.Exec
	if err := sshmsg.Unmarshal("exec", payload, &c); err != nil {
		return "", err
	}
	return c.Command, nil
}

func decodeSubsystem(payload []byte) (string, error) {
	var c sshmsg.Subsystem
	if err := sshmsg.Unmarshal("subsystem", payload, &c); err != nil {
		return "", err
	}
	return c.Name, nil
}

func decodeExitStatus(payload []byte) (int, error) {
	var m sshmsg.ExitStatus
	if err := sshmsg.Unmarshal("exit-status", payload, &m); err != nil {
		return 0, err
	}
	return int(m.Status), nil
}

// decodeExitSignal returns the signal name for the session registry, which
// admins read in a terminal (`sygctl sessions history`): it must be a short
// run of letters, digits and "@._-" ("TERM", "SIG@openssh.com"), never
// arbitrary bytes from the container.
func decodeExitSignal(payload []byte) (string, error) {
	var m sshmsg.ExitSignal
	if err := sshmsg.Unmarshal("exit-signal", payload, &m); err != nil {
		return "", err
	}
	if m.Signal == "" || len(m.Signal) > maxSignalName {
		return "", sshmsg.Malformed("exit-signal", "bad signal name length")
	}
	for _, c := range []byte(m.Signal) {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '@' || c == '.' || c == '_' || c == '-') {
			return "", sshmsg.Malformed("exit-signal", "bad character in signal name")
		}
	}
	return m.Signal, nil
}

func decodeDirectTCPIP(extra []byte) (sshmsg.DirectTCPIP, error) {
	var d sshmsg.DirectTCPIP
	if err := sshmsg.Unmarshal("direct-tcpip", extra, &d); err != nil {
		return sshmsg.DirectTCPIP{}, err
	}
	if d.Port > 65535 || d.OrigPort > 65535 {
		return sshmsg.DirectTCPIP{}, sshmsg.Malformed("direct-tcpip", "port out of range")
	}
	return d, nil
}

func decodeDirectStreamLocal(extra []byte) (sshmsg.DirectStreamLocal, error) {
	var d sshmsg.DirectStreamLocal
	if err := sshmsg.Unmarshal("direct-streamlocal", extra, &d); err != nil {
		return sshmsg.DirectStreamLocal{}, err
	}
	if d.Path == "" || strings.IndexByte(d.Path, 0) >= 0 {
		return sshmsg.DirectStreamLocal{}, sshmsg.Malformed("direct-streamlocal", "bad socket path")
	}
	return d, nil
}

// decodeAgentChannel checks the extra data of a channel the agent opens
// towards the client: a remote forward's connection or an agent-forwarding
// connection. The client parses it too, but a malformed open from the
// container stops here.
func decodeAgentChannel(typ string, extra []byte) error {
	switch typ {
	case "forwarded-tcpip":
		var m sshmsg.ForwardedTCPIP
		if err := sshmsg.Unmarshal(typ, extra, &m); err != nil {
			return err
		}
		if m.Port > 65535 || m.OrigPort > 65535 {
			return sshmsg.Malformed(typ, "port out of range")
		}
	case "forwarded-streamlocal@openssh.com":
		var m sshmsg.ForwardedStreamLocal
		if err := sshmsg.Unmarshal(typ, extra, &m); err != nil {
			return err
		}
		if m.Path == "" || strings.IndexByte(m.Path, 0) >= 0 {
			return sshmsg.Malformed(typ, "bad socket path")
		}
	case "auth-agent@openssh.com":
		if len(extra) != 0 {
			return sshmsg.Malformed(typ, "unexpected data")
		}
	default:
		return sshmsg.Malformed(typ, "not a channel the agent may open")
	}
	return nil
}

// wellFormedAgentChannel refuses, and logs for the admin, a channel open
// from the agent that decodeAgentChannel refuses.
func (st *connState) wellFormedAgentChannel(nc gossh.NewChannel, typ string, extra []byte) bool {
	if err := decodeAgentChannel(typ, extra); err != nil {
		st.log.Warn("agent opened a malformed channel", "type", typ, "err", err)
		nc.Reject(gossh.ConnectionFailed, "malformed channel open")
		return false
	}
	return true
}
