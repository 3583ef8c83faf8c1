// Package sshmsg declares, once, the SSH payloads (request payloads and
// channel-open extra data) that the gateway and the agent decode or build:
// RFC 4254 and OpenSSH's PROTOCOL extensions, in x/crypto/ssh's
// Marshal/Unmarshal layout (fields in wire order; string, uint32, bool).
//
// Each side decodes with its own rules (gateway/payloads.go,
// agent/payloads.go): the payloads are hostile on both sides, and what a
// side refuses depends on what it does with the values. Unmarshal is the
// one entry point: it refuses missing and trailing bytes and wraps every
// failure in ErrMalformed.
package sshmsg

import (
	"errors"
	"fmt"

	gossh "golang.org/x/crypto/ssh"
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed payload")

// Malformed is an ErrMalformed for the payload what, saying why.
func Malformed(what, why string) error {
	return fmt.Errorf("%w: %s: %s", ErrMalformed, what, why)
}

// Unmarshal decodes payload, the payload what, into out.
func Unmarshal(what string, payload []byte, out any) error {
	if err := gossh.Unmarshal(payload, out); err != nil {
		return Malformed(what, err.Error())
	}
	return nil
}

// Env is the payload of "env" (RFC 4254 §6.4).
type Env struct {
	Name, Value string
}

// PtyReq is the payload of "pty-req" (§6.2).
type PtyReq struct {
	Term                      string
	Cols, Rows, Width, Height uint32
	Modes                     string
}

// WindowChange is the payload of "window-change" (§6.7).
type WindowChange struct {
	Cols, Rows, Width, Height uint32
}

// Exec is the payload of "exec" (§6.5).
type Exec struct {
	Command string
}

// Subsystem is the payload of "subsystem" (§6.5).
type Subsystem struct {
	Name string
}

// Signal is the payload of "signal" (§6.9).
type Signal struct {
	Signal string
}

// ExitStatus is the payload of "exit-status" (§6.10).
type ExitStatus struct {
	Status uint32
}

// ExitSignal is the payload of "exit-signal" (§6.10).
type ExitSignal struct {
	Signal     string
	CoreDumped bool
	Error      string
	Lang       string
}

// DirectTCPIP is the extra data of a "direct-tcpip" open (§7.2).
type DirectTCPIP struct {
	Host     string
	Port     uint32
	OrigHost string
	OrigPort uint32
}

// ForwardedTCPIP is the extra data of a "forwarded-tcpip" open (§7.2): the
// address and port as the client asked for them, so the client can match it
// to its -R entry (OpenSSH matches port 0 forwards by the allocated port).
type ForwardedTCPIP struct {
	Host     string
	Port     uint32
	OrigHost string
	OrigPort uint32
}

// TCPIPForward is the payload of "tcpip-forward" and
// "cancel-tcpip-forward" (§7.1).
type TCPIPForward struct {
	Host string
	Port uint32
}

// TCPIPForwardReply is the reply to a "tcpip-forward" for port 0: the port
// allocated (§7.1).
type TCPIPForwardReply struct {
	Port uint32
}

// DirectStreamLocal is the extra data of "direct-streamlocal@openssh.com"
// (OpenSSH PROTOCOL §2.4).
type DirectStreamLocal struct {
	Path      string
	Reserved0 string
	Reserved1 uint32
}

// StreamLocalForward is the payload of "streamlocal-forward@openssh.com"
// and its cancel (PROTOCOL §2.4).
type StreamLocalForward struct {
	Path string
}

// ForwardedStreamLocal is the extra data of
// "forwarded-streamlocal@openssh.com" (PROTOCOL §2.4).
type ForwardedStreamLocal struct {
	Path     string
	Reserved string
}
