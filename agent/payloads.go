package agent

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"golang.org/x/crypto/ssh"
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

// errMalformed is wrapped by every decoding error.
var errMalformed = errors.New("malformed request")

func malformed(what, why string) error {
	return fmt.Errorf("%w: %s: %s", errMalformed, what, why)
}

func unmarshal(what string, payload []byte, out any) error {
	if err := ssh.Unmarshal(payload, out); err != nil {
		return malformed(what, err.Error())
	}
	return nil
}

// envMsg is the payload of "env" (RFC 4254 §6.4).
type envMsg struct {
	Name, Value string
}

// decodeEnv returns a variable the environment block can hold: a name with
// no '=' or NUL, and a value with no NUL (execve would refuse the whole
// environment, so one bad variable would fail the session's start).
func decodeEnv(payload []byte) (envMsg, error) {
	var m envMsg
	if err := unmarshal("env", payload, &m); err != nil {
		return envMsg{}, err
	}
	if !validEnvName(m.Name) {
		return envMsg{}, malformed("env", "bad variable name")
	}
	if strings.IndexByte(m.Value, 0) >= 0 {
		return envMsg{}, malformed("env", "NUL in value")
	}
	return m, nil
}

// ptyReqMsg is the payload of "pty-req" (RFC 4254 §6.2).
type ptyReqMsg struct {
	Term                      string
	Cols, Rows, Width, Height uint32
	Modes                     string
}

// decodePtyReq returns a pty request whose TERM can go into the environment
// and whose size fits a struct winsize.
func decodePtyReq(payload []byte) (ptyReqMsg, error) {
	var m ptyReqMsg
	if err := unmarshal("pty-req", payload, &m); err != nil {
		return ptyReqMsg{}, err
	}
	if len(m.Term) > maxTermLen || strings.IndexByte(m.Term, 0) >= 0 {
		return ptyReqMsg{}, malformed("pty-req", "bad TERM")
	}
	w := clampWindow(windowSize{m.Cols, m.Rows, m.Width, m.Height})
	m.Cols, m.Rows, m.Width, m.Height = w.Cols, w.Rows, w.Width, w.Height
	return m, nil
}

func (m ptyReqMsg) window() windowSize { return windowSize{m.Cols, m.Rows, m.Width, m.Height} }

// decodeWindowChange returns the new size of a "window-change" (§6.7),
// clamped to what a pty holds.
func decodeWindowChange(payload []byte) (windowSize, error) {
	var w windowSize
	if err := unmarshal("window-change", payload, &w); err != nil {
		return windowSize{}, err
	}
	return clampWindow(w), nil
}

func clampWindow(w windowSize) windowSize {
	return windowSize{min(w.Cols, maxWinDim), min(w.Rows, maxWinDim), min(w.Width, maxWinDim), min(w.Height, maxWinDim)}
}

// execMsg is the payload of "exec" (§6.5).
type execMsg struct {
	Command string
}

// decodeExec returns a command that fits one argv string: no NUL, at most
// maxCommandLen bytes.
func decodeExec(payload []byte) (string, error) {
	var m execMsg
	if err := unmarshal("exec", payload, &m); err != nil {
		return "", err
	}
	if len(m.Command) > maxCommandLen {
		return "", malformed("exec", "command too long")
	}
	if strings.IndexByte(m.Command, 0) >= 0 {
		return "", malformed("exec", "NUL in command")
	}
	return m.Command, nil
}

// subsystemMsg is the payload of "subsystem" (§6.5).
type subsystemMsg struct {
	Name string
}

func decodeSubsystem(payload []byte) (string, error) {
	var m subsystemMsg
	if err := unmarshal("subsystem", payload, &m); err != nil {
		return "", err
	}
	return m.Name, nil
}

// signalMsg is the payload of "signal" (§6.9).
type signalMsg struct {
	Signal string
}

// decodeSignal returns the signal a "signal" request names; only the names
// signalByName knows are accepted.
func decodeSignal(payload []byte) (syscall.Signal, error) {
	var m signalMsg
	if err := unmarshal("signal", payload, &m); err != nil {
		return 0, err
	}
	sig, ok := signalByName(m.Signal)
	if !ok {
		return 0, malformed("signal", "unknown signal")
	}
	return sig, nil
}

// decodeAuthAgentReq checks that auth-agent-req@openssh.com carries nothing,
// as sshd does (openssh PROTOCOL.agent).
func decodeAuthAgentReq(payload []byte) error {
	if len(payload) != 0 {
		return malformed("auth-agent-req", "unexpected payload")
	}
	return nil
}

// decodeDirectTCPIP returns the target of a direct-tcpip open (§7.2).
func decodeDirectTCPIP(extra []byte) (directTCPIPMsg, error) {
	var m directTCPIPMsg
	if err := unmarshal("direct-tcpip", extra, &m); err != nil {
		return directTCPIPMsg{}, err
	}
	if m.Port > maxPortNumber || m.OrigPort > maxPortNumber {
		return directTCPIPMsg{}, malformed("direct-tcpip", "port out of range")
	}
	if strings.IndexByte(m.Host, 0) >= 0 || strings.IndexByte(m.OrigHost, 0) >= 0 {
		return directTCPIPMsg{}, malformed("direct-tcpip", "NUL in host")
	}
	return m, nil
}

// decodeDirectStreamLocal returns the socket path of a
// direct-streamlocal@openssh.com open.
func decodeDirectStreamLocal(extra []byte) (directStreamLocalMsg, error) {
	var m directStreamLocalMsg
	if err := unmarshal("direct-streamlocal", extra, &m); err != nil {
		return directStreamLocalMsg{}, err
	}
	if err := checkSocketPath("direct-streamlocal", m.Path); err != nil {
		return directStreamLocalMsg{}, err
	}
	return m, nil
}

// decodeTCPIPForward decodes tcpip-forward and cancel-tcpip-forward (§7.1).
func decodeTCPIPForward(payload []byte) (tcpipForwardMsg, error) {
	var m tcpipForwardMsg
	if err := unmarshal("tcpip-forward", payload, &m); err != nil {
		return tcpipForwardMsg{}, err
	}
	if m.Port > maxPortNumber {
		return tcpipForwardMsg{}, malformed("tcpip-forward", "port out of range")
	}
	if strings.IndexByte(m.Host, 0) >= 0 {
		return tcpipForwardMsg{}, malformed("tcpip-forward", "NUL in host")
	}
	return m, nil
}

// decodeStreamLocalForward decodes (cancel-)streamlocal-forward@openssh.com.
func decodeStreamLocalForward(payload []byte) (streamLocalForwardMsg, error) {
	var m streamLocalForwardMsg
	if err := unmarshal("streamlocal-forward", payload, &m); err != nil {
		return streamLocalForwardMsg{}, err
	}
	if err := checkSocketPath("streamlocal-forward", m.Path); err != nil {
		return streamLocalForwardMsg{}, err
	}
	return m, nil
}

// checkSocketPath refuses a path no unix socket can have: empty, or with a
// NUL (Go would otherwise pass a truncated or abstract name to the kernel).
func checkSocketPath(what, path string) error {
	if path == "" {
		return malformed(what, "empty path")
	}
	if strings.IndexByte(path, 0) >= 0 {
		return malformed(what, "NUL in path")
	}
	return nil
}
