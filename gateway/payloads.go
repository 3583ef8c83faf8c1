package gateway

import (
	"errors"
	"fmt"
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

var errMalformed = errors.New("malformed payload")

func malformed(what, why string) error {
	return fmt.Errorf("%w: %s: %s", errMalformed, what, why)
}

func unmarshal(what string, payload []byte, out any) error {
	if err := gossh.Unmarshal(payload, out); err != nil {
		return malformed(what, err.Error())
	}
	return nil
}

// decodeEnv decodes an "env" request (RFC 4254 §6.4). A name with '=' or
// NUL, or a value with NUL, cannot be one entry of an environment block, so
// it is refused whatever accept_env says.
func decodeEnv(payload []byte) (envRequest, error) {
	var e envRequest
	if err := unmarshal("env", payload, &e); err != nil {
		return envRequest{}, err
	}
	if e.Name == "" || strings.ContainsAny(e.Name, "=\x00") || strings.IndexByte(e.Value, 0) >= 0 {
		return envRequest{}, malformed("env", "not a NAME=value pair")
	}
	return e, nil
}

// execRequest is the payload of "exec" (§6.5).
type execRequest struct {
	Command string
}

func decodeExec(payload []byte) (string, error) {
	var c execRequest
	if err := unmarshal("exec", payload, &c); err != nil {
		return "", err
	}
	return c.Command, nil
}

// subsystemRequest is the payload of "subsystem" (§6.5).
type subsystemRequest struct {
	Name string
}

func decodeSubsystem(payload []byte) (string, error) {
	var c subsystemRequest
	if err := unmarshal("subsystem", payload, &c); err != nil {
		return "", err
	}
	return c.Name, nil
}

// exitStatusMsg is the agent's "exit-status" (§6.10).
type exitStatusMsg struct {
	Status uint32
}

func decodeExitStatus(payload []byte) (int, error) {
	var m exitStatusMsg
	if err := unmarshal("exit-status", payload, &m); err != nil {
		return 0, err
	}
	return int(m.Status), nil
}

// exitSignalMsg is the agent's "exit-signal" (§6.10).
type exitSignalMsg struct {
	Signal string
	Core   bool
	Msg    string
	Lang   string
}

// decodeExitSignal returns the signal name for the session registry, which
// admins read in a terminal (`sygctl sessions history`): it must be a short
// run of letters, digits and "@._-" ("TERM", "SIG@openssh.com"), never
// arbitrary bytes from the container.
func decodeExitSignal(payload []byte) (string, error) {
	var m exitSignalMsg
	if err := unmarshal("exit-signal", payload, &m); err != nil {
		return "", err
	}
	if m.Signal == "" || len(m.Signal) > maxSignalName {
		return "", malformed("exit-signal", "bad signal name length")
	}
	for _, c := range []byte(m.Signal) {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '@' || c == '.' || c == '_' || c == '-') {
			return "", malformed("exit-signal", "bad character in signal name")
		}
	}
	return m.Signal, nil
}

// directTCPIPMsg is the extra data of a direct-tcpip open (§7.2).
type directTCPIPMsg struct {
	Host     string
	Port     uint32
	OrigHost string
	OrigPort uint32
}

func decodeDirectTCPIP(extra []byte) (directTCPIPMsg, error) {
	var d directTCPIPMsg
	if err := unmarshal("direct-tcpip", extra, &d); err != nil {
		return directTCPIPMsg{}, err
	}
	if d.Port > 65535 || d.OrigPort > 65535 {
		return directTCPIPMsg{}, malformed("direct-tcpip", "port out of range")
	}
	return d, nil
}

// directStreamLocalMsg is the extra data of direct-streamlocal@openssh.com
// (openssh PROTOCOL §2.4).
type directStreamLocalMsg struct {
	Path      string
	Reserved  string
	Reserved2 uint32
}

func decodeDirectStreamLocal(extra []byte) (directStreamLocalMsg, error) {
	var d directStreamLocalMsg
	if err := unmarshal("direct-streamlocal", extra, &d); err != nil {
		return directStreamLocalMsg{}, err
	}
	if d.Path == "" || strings.IndexByte(d.Path, 0) >= 0 {
		return directStreamLocalMsg{}, malformed("direct-streamlocal", "bad socket path")
	}
	return d, nil
}

// forwardedTCPIPMsg is the extra data of a forwarded-tcpip open (§7.2).
type forwardedTCPIPMsg struct {
	Host     string
	Port     uint32
	OrigHost string
	OrigPort uint32
}

// forwardedStreamLocalMsg is the extra data of
// forwarded-streamlocal@openssh.com (openssh PROTOCOL §2.4).
type forwardedStreamLocalMsg struct {
	Path     string
	Reserved string
}

// decodeAgentChannel checks the extra data of a channel the agent opens
// towards the client: a remote forward's connection or an agent-forwarding
// connection. The client parses it too, but a malformed open from the
// container stops here.
func decodeAgentChannel(typ string, extra []byte) error {
	switch typ {
	case "forwarded-tcpip":
		var m forwardedTCPIPMsg
		if err := unmarshal(typ, extra, &m); err != nil {
			return err
		}
		if m.Port > 65535 || m.OrigPort > 65535 {
			return malformed(typ, "port out of range")
		}
	case "forwarded-streamlocal@openssh.com":
		var m forwardedStreamLocalMsg
		if err := unmarshal(typ, extra, &m); err != nil {
			return err
		}
		if m.Path == "" || strings.IndexByte(m.Path, 0) >= 0 {
			return malformed(typ, "bad socket path")
		}
	case "auth-agent@openssh.com":
		if len(extra) != 0 {
			return malformed(typ, "unexpected data")
		}
	default:
		return malformed(typ, "not a channel the agent may open")
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
