package agent

import (
	"bytes"
	"encoding/binary"
	"strings"
	"syscall"

	"github.com/sygaldry/sygaldry/internal/sshmsg"
)

// Decoding of every request payload and channel-open extra data the agent
// acts on. The bytes come from the client through the gateway, which passes
// them on unchanged, so they are hostile: each decoder is the single place a
// payload is parsed, refuses trailing or missing bytes (ssh.Unmarshal does),
// and refuses values the handler could not use safely. The fuzz targets in
// payloads_fuzz_test.go check these functions, which the handlers call.

const (
	// maxCommandLen is the longest exec command: it becomes one argv string
	// of `$SHELL -c`, and Linux refuses a longer one (MAX_ARG_STRLEN,
	// 32 pages, counting the terminating NUL) with E2BIG.
	maxCommandLen = 32*4096 - 1
	// maxTermLen bounds pty-req's TERM; terminfo names are a few bytes.
	maxTermLen = 256
	// maxWinDim is the largest window dimension a pty can hold (struct
	// winsize has 16-bit fields); larger values are clamped, as before.
	maxWinDim = 0xffff
	// maxPortNumber is the largest TCP port.
	maxPortNumber = 65535
)

// decodeEnv returns a variable the environment block can hold: a name with
// no '=' or NUL, and a value with no NUL (execve would refuse the whole
// environment, so one bad variable would fail the session's start).
func decodeEnv(payload []byte) (sshmsg.Env, error) {
	var m sshmsg.Env
	if err := sshmsg.Unmarshal("env", payload, &m); err != nil {
		return sshmsg.Env{}, err
	}
	if !validEnvName(m.Name) {
		return sshmsg.Env{}, sshmsg.Malformed("env", "bad variable name")
	}
	if strings.IndexByte(m.Value, 0) >= 0 {
		return sshmsg.Env{}, sshmsg.Malformed("env", "NUL in value")
	}
	return m, nil
}

// ptyRequest is a decoded pty-req.
type ptyRequest struct{ sshmsg.PtyReq }

func (m ptyRequest) window() windowSize { return windowSize{m.Cols, m.Rows, m.Width, m.Height} }

// decodePtyReq returns a pty request whose TERM can go into the environment
// and whose size fits a struct winsize.
func decodePtyReq(payload []byte) (ptyRequest, error) {
	var m ptyRequest
	if err := sshmsg.Unmarshal("pty-req", payload, &m.PtyReq); err != nil {
		return ptyRequest{}, err
	}
	if len(m.Term) > maxTermLen || strings.IndexByte(m.Term, 0) >= 0 {
		return ptyRequest{}, sshmsg.Malformed("pty-req", "bad TERM")
	}
	w := clampWindow(m.window())
	m.Cols, m.Rows, m.Width, m.Height = w.Cols, w.Rows, w.Width, w.Height
	return m, nil
}

// decodeWindowChange returns the new size of a "window-change" (§6.7),
// clamped to what a pty holds.
func decodeWindowChange(payload []byte) (windowSize, error) {
	var w windowSize
	if err := sshmsg.Unmarshal("window-change", payload, &w); err != nil {
		return windowSize{}, err
	}
	return clampWindow(w), nil
}

func clampWindow(w windowSize) windowSize {
	return windowSize{min(w.Cols, maxWinDim), min(w.Rows, maxWinDim), min(w.Width, maxWinDim), min(w.Height, maxWinDim)}
}

// decodeExec returns a command that fits one argv string: no NUL, at most
// maxCommandLen bytes.
func decodeExec(payload []byte) (string, error) {
	var m sshmsg.Exec
	if err := sshmsg.Unmarshal("exec", payload, &m); err != nil {
		return "", err
	}
	if len(m.Command) > maxCommandLen {
		return "", sshmsg.Malformed("exec", "command too long")
	}
	if strings.IndexByte(m.Command, 0) >= 0 {
		return "", sshmsg.Malformed("exec", "NUL in command")
	}
	return m.Command, nil
}

func decodeSubsystem(payload []byte) (string, error) {
	var m sshmsg.Subsystem
	if err := sshmsg.Unmarshal("subsystem", payload, &m); err != nil {
		return "", err
	}
	return m.Name, nil
}

// decodeSignal returns the signal a "signal" request names; only the names
// signalByName knows are accepted.
func decodeSignal(payload []byte) (syscall.Signal, error) {
	var m sshmsg.Signal
	if err := sshmsg.Unmarshal("signal", payload, &m); err != nil {
		return 0, err
	}
	sig, ok := signalByName(m.Signal)
	if !ok {
		return 0, sshmsg.Malformed("signal", "unknown signal")
	}
	return sig, nil
}

// decodeAuthAgentReq checks that auth-agent-req@openssh.com carries nothing,
// as sshd does (openssh PROTOCOL.agent).
func decodeAuthAgentReq(payload []byte) error {
	if len(payload) != 0 {
		return sshmsg.Malformed("auth-agent-req", "unexpected payload")
	}
	return nil
}

// decodeTag returns the tag of fdpass.TagRequest: 8 bytes, not all zero.
func decodeTag(payload []byte) ([]byte, error) {
	if len(payload) != 8 || binary.BigEndian.Uint64(payload) == 0 {
		return nil, sshmsg.Malformed("tag", "not a non-zero 8-byte tag")
	}
	return bytes.Clone(payload), nil
}

// decodeDirectTCPIP returns the target of a direct-tcpip open (§7.2).
func decodeDirectTCPIP(extra []byte) (sshmsg.DirectTCPIP, error) {
	var m sshmsg.DirectTCPIP
	if err := sshmsg.Unmarshal("direct-tcpip", extra, &m); err != nil {
		return sshmsg.DirectTCPIP{}, err
	}
	if m.Port > maxPortNumber || m.OrigPort > maxPortNumber {
		return sshmsg.DirectTCPIP{}, sshmsg.Malformed("direct-tcpip", "port out of range")
	}
	if strings.IndexByte(m.Host, 0) >= 0 || strings.IndexByte(m.OrigHost, 0) >= 0 {
		return sshmsg.DirectTCPIP{}, sshmsg.Malformed("direct-tcpip", "NUL in host")
	}
	return m, nil
}

// decodeDirectStreamLocal returns the socket path of a
// direct-streamlocal@openssh.com open.
func decodeDirectStreamLocal(extra []byte) (sshmsg.DirectStreamLocal, error) {
	var m sshmsg.DirectStreamLocal
	if err := sshmsg.Unmarshal("direct-streamlocal", extra, &m); err != nil {
		return sshmsg.DirectStreamLocal{}, err
	}
	if err := checkSocketPath("direct-streamlocal", m.Path); err != nil {
		return sshmsg.DirectStreamLocal{}, err
	}
	return m, nil
}

// decodeTCPIPForward decodes tcpip-forward and cancel-tcpip-forward (§7.1).
func decodeTCPIPForward(payload []byte) (sshmsg.TCPIPForward, error) {
	var m sshmsg.TCPIPForward
	if err := sshmsg.Unmarshal("tcpip-forward", payload, &m); err != nil {
		return sshmsg.TCPIPForward{}, err
	}
	if m.Port > maxPortNumber {
		return sshmsg.TCPIPForward{}, sshmsg.Malformed("tcpip-forward", "port out of range")
	}
	if strings.IndexByte(m.Host, 0) >= 0 {
		return sshmsg.TCPIPForward{}, sshmsg.Malformed("tcpip-forward", "NUL in host")
	}
	return m, nil
}

// decodeStreamLocalForward decodes (cancel-)streamlocal-forward@openssh.com.
func decodeStreamLocalForward(payload []byte) (sshmsg.StreamLocalForward, error) {
	var m sshmsg.StreamLocalForward
	if err := sshmsg.Unmarshal("streamlocal-forward", payload, &m); err != nil {
		return sshmsg.StreamLocalForward{}, err
	}
	if err := checkSocketPath("streamlocal-forward", m.Path); err != nil {
		return sshmsg.StreamLocalForward{}, err
	}
	return m, nil
}

// checkSocketPath refuses a path no unix socket can have: empty, or with a
// NUL (Go would otherwise pass a truncated or abstract name to the kernel).
func checkSocketPath(what, path string) error {
	if path == "" {
		return sshmsg.Malformed(what, "empty path")
	}
	if strings.IndexByte(path, 0) >= 0 {
		return sshmsg.Malformed(what, "NUL in path")
	}
	return nil
}
