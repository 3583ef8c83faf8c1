// Package fdpass is the data-plane control protocol between the gateway and
// the agent: small framed messages on a unix SOCK_SEQPACKET socket, each
// carrying the file descriptors it is about (SCM_RIGHTS).
//
// The agent starts a session's process (or dials a forward) inside the
// container and hands the gateway the parent ends: stdin, stdout and stderr
// pipes, a pty master, or a connected socket. The gateway then copies
// between the client's SSH channel and those descriptors itself, so every
// byte is encrypted once, as under sshd. Everything else (requests, signals,
// exit status, hangup) stays on the SSH link.
//
// One packet is one message; the kernel keeps the boundaries, and the
// descriptors travel in the very packet that names them:
//
//	byte 0     version (1)
//	byte 1     kind
//	bytes 2-9  id, big endian: the number of the channel the descriptors
//	           belong to: the gateway's, or the agent's (AgentIDBit set)
//	           for a channel the agent opened; 0 in Hello
//	bytes 10-  body: the 32-byte token in Hello, empty otherwise
//
//	kind   direction        descriptors
//	Hello  gateway → agent  none; binds this socket to one SSH link
//	Pipes  agent → gateway  stdin (write end), stdout, stderr (read ends)
//	PTY    agent → gateway  the pty master
//	Conn   agent → gateway  a connected stream socket (a forward dialled
//	                        or accepted in the container)
//	Declined agent → gateway  none: this channel's bytes stay on the link
//
// Everything a receiver gets is hostile: a packet that is too long, has
// cut-off ancillary data (MSG_CTRUNC), the wrong descriptor count for its
// kind, or a descriptor of the wrong kind (Check) is refused, and every
// descriptor it carried is closed.
package fdpass

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// The SSH requests on the link that go with the socket.
const (
	// SharedRequest is the global request (no payload) with which the
	// gateway asks an agent whether one link may serve several client
	// connections of the same container. An agent that replies true
	// accepts TagRequest on the link's sessions. Remote forwards need no
	// tag: their listeners are unique in the container, and the gateway
	// routes forwarded-* opens by the address or path they name, and
	// cancels a leaving connection's forwards itself. An agent that does
	// not know the request (false) gets one link per client connection,
	// as before.
	SharedRequest = "shared@sygaldry"
	// TagRequest is the session-channel request (payload: 8 bytes, big
	// endian, non-zero), sent on a shared link before any client request,
	// that names the client connection of the session. The agent sends the
	// tag back as the extra data of every auth-agent@openssh.com channel it
	// opens for the session (after the id in AuthAgent), so the gateway
	// knows whose agent to ask.
	TagRequest = "tag@sygaldry"
	// BindRequest is the global request that binds a descriptor socket to
	// the link it is sent on; its payload is the token of the socket's
	// Hello.
	BindRequest = "fdpass@sygaldry"
	// IDRequest is the session-channel request (payload: a non-zero uint64,
	// big endian) that names the id under which the agent hands over the
	// channel's descriptors.
	IDRequest = "fdpass-id@sygaldry"
)

// The link channel types of forwards whose connected socket the agent hands
// over: the extra data is the 8-byte id (big endian) followed by the
// standard extra data of direct-tcpip or direct-streamlocal@openssh.com.
// The agent dials, sends the socket under the id (Conn), then accepts the
// channel and closes it at once; a failed dial is a rejection as usual.
const (
	DirectTCPIP       = "direct-tcpip-fd@sygaldry"
	DirectStreamLocal = "direct-streamlocal-fd@sygaldry"
)

// The link channel types the agent opens for a connection it accepted in
// the container (a remote forward, an agent-forwarding client) when the
// gateway takes the socket: the extra data is an agent-chosen 8-byte id
// with AgentIDBit set, then the standard extra data of forwarded-tcpip,
// forwarded-streamlocal@openssh.com or auth-agent@openssh.com. Once the
// gateway accepts the channel, the agent sends the socket under the id
// (Conn) and closes the channel.
const (
	ForwardedTCPIP       = "forwarded-tcpip-fd@sygaldry"
	ForwardedStreamLocal = "forwarded-streamlocal-fd@sygaldry"
	AuthAgent            = "auth-agent-fd@sygaldry"
)

// AgentIDBit marks ids the agent chose, so they never meet the gateway's.
const AgentIDBit = 1 << 63

// ForwardedBase maps a descriptor variant to the channel type the client
// sees; ok is false for any other type.
func ForwardedBase(typ string) (base string, ok bool) {
	switch typ {
	case ForwardedTCPIP:
		return "forwarded-tcpip", true
	case ForwardedStreamLocal:
		return "forwarded-streamlocal@openssh.com", true
	case AuthAgent:
		return "auth-agent@openssh.com", true
	}
	return "", false
}

// ForwardedVariant is the descriptor variant of a channel type the agent
// opens, or "" when it has none.
func ForwardedVariant(base string) string {
	switch base {
	case "forwarded-tcpip":
		return ForwardedTCPIP
	case "forwarded-streamlocal@openssh.com":
		return ForwardedStreamLocal
	case "auth-agent@openssh.com":
		return AuthAgent
	}
	return ""
}

// Version is the protocol version in byte 0 of every message.
const Version = 1

// Kind says what a message is and which descriptors come with it.
type Kind byte

// The message kinds.
const (
	Hello Kind = 1
	Pipes Kind = 2
	PTY   Kind = 3
	Conn  Kind = 4
	// Declined answers an id whose channel the agent serves over the link
	// after all (an in-process subsystem), so the gateway need not wait.
	Declined Kind = 5
)

func (k Kind) String() string {
	switch k {
	case Hello:
		return "hello"
	case Pipes:
		return "pipes"
	case PTY:
		return "pty"
	case Conn:
		return "conn"
	case Declined:
		return "declined"
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

// fds is how many descriptors a message of kind k carries; -1 for an
// unknown kind.
func (k Kind) fds() int {
	switch k {
	case Hello, Declined:
		return 0
	case Pipes:
		return 3
	case PTY, Conn:
		return 1
	}
	return -1
}

// TokenSize is the length of Hello's token.
const TokenSize = 32

// MaxFDs is the most descriptors any message carries.
const MaxFDs = 3

const headerSize = 10

// maxPacket is the receive buffer: one byte more than the longest valid
// message, so a longer one shows up as too long instead of being cut.
const maxPacket = headerSize + TokenSize + 1

// Message is one decoded message, without its descriptors.
type Message struct {
	Kind  Kind
	ID    uint64
	Token []byte // Hello only
}

// Errors a receiver can tell apart.
var (
	// ErrMalformed: a packet that is not a valid message (version, kind,
	// length, descriptor count). Its descriptors were closed.
	ErrMalformed = errors.New("fdpass: malformed message")
	// ErrBadFD: a descriptor is not of the kind the message promises. Every
	// descriptor of the message was closed.
	ErrBadFD = errors.New("fdpass: descriptor of the wrong kind")
)

// Encode returns m's wire form.
func Encode(m Message) []byte {
	b := make([]byte, headerSize, headerSize+len(m.Token))
	b[0] = Version
	b[1] = byte(m.Kind)
	binary.BigEndian.PutUint64(b[2:], m.ID)
	return append(b, m.Token...)
}

// Decode parses one packet. nfds is the number of descriptors that came with
// it, checked against the kind.
func Decode(b []byte, nfds int) (Message, error) {
	if len(b) < headerSize {
		return Message{}, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	if b[0] != Version {
		return Message{}, fmt.Errorf("%w: version %d", ErrMalformed, b[0])
	}
	m := Message{Kind: Kind(b[1]), ID: binary.BigEndian.Uint64(b[2:])}
	want := m.Kind.fds()
	if want < 0 {
		return Message{}, fmt.Errorf("%w: unknown kind %d", ErrMalformed, b[1])
	}
	if nfds != want {
		return Message{}, fmt.Errorf("%w: %s with %d descriptors, want %d", ErrMalformed, m.Kind, nfds, want)
	}
	body := b[headerSize:]
	switch m.Kind {
	case Hello:
		if len(body) != TokenSize || m.ID != 0 {
			return Message{}, fmt.Errorf("%w: hello with a %d-byte token", ErrMalformed, len(body))
		}
		m.Token = append([]byte(nil), body...)
	default:
		if len(body) != 0 || m.ID == 0 {
			return Message{}, fmt.Errorf("%w: %s with id %d and %d body bytes", ErrMalformed, m.Kind, m.ID, len(body))
		}
	}
	return m, nil
}

// Send writes m with files attached, in one packet. The caller keeps its
// files (the receiver gets duplicates) and closes them when it wants.
func Send(c *net.UnixConn, m Message, files ...*os.File) error {
	if len(files) != m.Kind.fds() {
		return fmt.Errorf("fdpass: %s needs %d descriptors, have %d", m.Kind, m.Kind.fds(), len(files))
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	b := Encode(m)
	n, oobn, err := c.WriteMsgUnix(b, oob, nil)
	if err != nil {
		return fmt.Errorf("fdpass: send %s: %w", m.Kind, err)
	}
	if n != len(b) || oobn != len(oob) {
		return fmt.Errorf("fdpass: send %s: short write", m.Kind)
	}
	return nil
}

// Receive reads one packet. A malformed one (ErrMalformed) has had its
// descriptors closed; the connection can still be read. Any other error is
// the connection's. The files are non-blocking and close-on-exec.
func Receive(c *net.UnixConn) (Message, []*os.File, error) {
	buf := make([]byte, maxPacket)
	// Room for more descriptors than any message carries, so a sender
	// that attaches extras is seen (and its extras closed) rather than
	// having them silently dropped by the kernel.
	oob := make([]byte, unix.CmsgSpace(4*(MaxFDs+5)))
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return Message{}, nil, err
	}
	files, perr := filesOf(oob[:oobn])
	if flags&(unix.MSG_CTRUNC|unix.MSG_TRUNC) != 0 || perr != nil {
		CloseAll(files)
		return Message{}, nil, fmt.Errorf("%w: packet or descriptors cut off (flags %#x, %v)", ErrMalformed, flags, perr)
	}
	if n == 0 && len(files) == 0 {
		// A zero-length read without descriptors is the peer's close.
		return Message{}, nil, errEOF
	}
	m, err := Decode(buf[:n], len(files))
	if err != nil {
		CloseAll(files)
		return Message{}, nil, err
	}
	return m, files, nil
}

var errEOF = fmt.Errorf("fdpass: peer closed: %w", net.ErrClosed)

// filesOf takes every descriptor out of the ancillary data, whatever else is
// there, so none is leaked.
func filesOf(oob []byte) ([]*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	var bad error
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			bad = fmt.Errorf("unexpected control message %d/%d", m.Header.Level, m.Header.Type)
			continue
		}
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			bad = err
			continue
		}
		for _, fd := range fds {
			// Non-blocking, so os.NewFile registers it with the runtime
			// poller: reads honour deadlines and Close unblocks them.
			unix.SetNonblock(fd, true)
			files = append(files, os.NewFile(uintptr(fd), "fdpass"))
		}
	}
	return files, bad
}

// CloseAll closes files, ignoring errors.
func CloseAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
