package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/internal/fdpass"
)

// The descriptor socket (internal/fdpass): the gateway connects to it once
// per link, says Hello with a token, and sends the same token inside the
// link (fdpass.BindRequest). The agent pairs the two; from then on the link's
// sessions hand the gateway their process's stdio, and the bytes no longer
// cross the link.

const (
	// fdHelloTimeout bounds how long a new descriptor connection may take to
	// say Hello, and how long a Hello waits for its link's request.
	fdHelloTimeout = 10 * time.Second
	// maxPendingFDConns caps Hellos waiting for their link request.
	maxPendingFDConns = 64
)

// fdConns holds descriptor connections between Hello and their link's
// request, by token.
type fdConns struct {
	mu      sync.Mutex
	pending map[string]*net.UnixConn
	parked  chan struct{} // closed (and replaced) whenever a Hello is parked
}

// changed returns the channel closed at the next parked Hello; mu is held.
func (f *fdConns) changed() chan struct{} {
	if f.parked == nil {
		f.parked = make(chan struct{})
	}
	return f.parked
}

// ServeFDs accepts descriptor connections on l until Shutdown or Close. l is
// closed when ServeFDs returns.
func (s *Server) ServeFDs(l *net.UnixListener) error {
	if err := s.init(); err != nil {
		return err
	}
	var nl net.Listener = l
	if !s.trackListener(&nl, true) {
		l.Close()
		return ErrServerClosed
	}
	defer s.trackListener(&nl, false)
	defer l.Close()
	return s.acceptLoop("descriptor connection", func() error {
		c, err := l.AcceptUnix()
		if err == nil {
			go s.fdHello(c)
		}
		return err
	})
}

// fdHello reads the Hello of a new descriptor connection and parks it until
// its link asks for it (or the wait ends).
func (s *Server) fdHello(c *net.UnixConn) {
	c.SetReadDeadline(time.Now().Add(fdHelloTimeout))
	m, files, err := fdpass.Receive(c)
	if err == nil && m.Kind != fdpass.Hello {
		fdpass.CloseAll(files)
		err = fmt.Errorf("first message is %s, want hello", m.Kind)
	}
	if err != nil {
		s.logger().Warn("descriptor connection refused", "err", err)
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	token := string(m.Token)
	s.fds.mu.Lock()
	if s.fds.pending == nil {
		s.fds.pending = make(map[string]*net.UnixConn)
	}
	if len(s.fds.pending) >= maxPendingFDConns || s.fds.pending[token] != nil {
		s.fds.mu.Unlock()
		c.Close()
		s.logger().Warn("descriptor connection refused: too many waiting, or a token used twice")
		return
	}
	s.fds.pending[token] = c
	close(s.fds.changed())
	s.fds.parked = nil
	s.fds.mu.Unlock()
	time.AfterFunc(fdHelloTimeout, func() {
		if c := s.takeFDConn(token); c != nil {
			c.Close()
		}
	})
}

func (s *Server) takeFDConn(token string) *net.UnixConn {
	c, _ := s.takeOrWatch(token)
	return c
}

// takeOrWatch takes the connection parked under token, or returns a channel
// closed at the next park.
func (s *Server) takeOrWatch(token string) (*net.UnixConn, <-chan struct{}) {
	s.fds.mu.Lock()
	defer s.fds.mu.Unlock()
	c := s.fds.pending[token]
	if c == nil {
		return nil, s.fds.changed()
	}
	delete(s.fds.pending, token)
	return c, nil
}

// fdBindWait bounds how long a link's bind request waits for its Hello: the
// gateway sends the Hello first, but on another socket, so it may still be
// on its way.
const fdBindWait = 2 * time.Second

// awaitFDConn takes the connection that said Hello with token, waiting a
// little for it.
func (s *Server) awaitFDConn(token string) *net.UnixConn {
	deadline := time.NewTimer(fdBindWait)
	defer deadline.Stop()
	for {
		c, parked := s.takeOrWatch(token)
		if c != nil {
			return c
		}
		select {
		case <-parked:
		case <-deadline.C:
			return nil
		}
	}
}

// bindFDs answers the link's fdpass.BindRequest: the descriptor connection that said
// Hello with the same token becomes this link's.
func (c *linkConn) bindFDs(token []byte) bool {
	if len(token) != fdpass.TokenSize {
		return false
	}
	fc := c.srv.awaitFDConn(string(token))
	if fc == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fds != nil || c.ended {
		fc.Close()
		return false
	}
	c.fds = fc
	return true
}

// hasFDs reports whether the link has its descriptor connection.
func (c *linkConn) hasFDs() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fds != nil
}

// sendFDs hands files to the gateway under id. The caller closes its own
// copies afterwards.
func (c *linkConn) sendFDs(kind fdpass.Kind, id uint64, files ...*os.File) error {
	c.mu.Lock()
	fc := c.fds
	c.mu.Unlock()
	if fc == nil {
		return errors.New("no descriptor connection")
	}
	c.fdMu.Lock()
	defer c.fdMu.Unlock()
	fc.SetWriteDeadline(time.Now().Add(fdHelloTimeout))
	defer fc.SetWriteDeadline(time.Time{})
	return fdpass.Send(fc, fdpass.Message{Kind: kind, ID: id}, files...)
}

// closeFDs ends the link's descriptor connection.
func (c *linkConn) closeFDs() {
	c.mu.Lock()
	fc := c.fds
	c.mu.Unlock()
	if fc != nil {
		fc.Close()
	}
}

// decodeFDID parses FDIDRequest's payload: one non-zero uint64.
func decodeFDID(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("descriptor id of %d bytes", len(b))
	}
	id := binary.BigEndian.Uint64(b)
	if id == 0 {
		return 0, errors.New("descriptor id 0")
	}
	return id, nil
}

// offload hands the process's parent ends to the gateway, when the gateway
// asked for it (fdpass.IDRequest). On success the agent keeps no copies: the
// gateway copies the bytes, and the session only waits for the exit.
func (s *session) offload(p *process) bool {
	if s.fdID == 0 {
		return false
	}
	var err error
	if p.pty != nil {
		if err = s.c.sendFDs(fdpass.PTY, s.fdID, p.pty.master); err == nil {
			p.pty.closeMaster()
		}
	} else {
		if err = s.c.sendFDs(fdpass.Pipes, s.fdID, p.stdin, p.stdout, p.stderr); err == nil {
			p.stdin.Close()
			p.stdout.Close()
			p.stderr.Close()
		}
	}
	if err != nil {
		s.log.Warn("handing the session's descriptors to the gateway failed; the link carries them", "err", err)
		s.declineFDs()
		return false
	}
	p.offloaded = true
	return true
}

// declineFDs tells a gateway that asked for descriptors that this session's
// bytes stay on the link, so it does not wait for them.
func (s *session) declineFDs() {
	if s.fdID == 0 {
		return
	}
	if err := s.c.sendFDs(fdpass.Declined, s.fdID); err != nil {
		s.log.Debug("declining descriptors failed", "err", err)
	}
}

// serveDirectFD serves fdpass.DirectTCPIP and fdpass.DirectStreamLocal: the
// forward of direct-tcpip or direct-streamlocal whose socket the gateway
// takes. The dial is the same; instead of copying, the agent hands the
// connected socket over and closes the channel.
func (c *linkConn) serveDirectFD(nch ssh.NewChannel) {
	extra := nch.ExtraData()
	id, err := decodeFDID(extra[:min(len(extra), 8)])
	if err != nil || !c.hasFDs() {
		nch.Reject(ssh.Prohibited, "no descriptor connection")
		return
	}
	network := "unix"
	if nch.ChannelType() == fdpass.DirectTCPIP {
		network = "tcp"
	}
	conn, log, ok := c.dialDirect(nch, network, extra[8:]) // forward.go
	if !ok {
		return
	}
	defer conn.Close()
	if err := c.sendConn(id, conn); err != nil {
		nch.Reject(ssh.ConnectionFailed, "connect failed: the agent could not hand the connection over")
		log.Warn("handing a forward's socket to the gateway failed", "err", err)
		return
	}
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	ch.Close()
	log.Info("connection handed to the gateway")
}

// sendConn hands a connected socket to the gateway under id; the caller
// still closes conn.
func (c *linkConn) sendConn(id uint64, conn net.Conn) error {
	f, err := conn.(interface{ File() (*os.File, error) }).File()
	if err != nil {
		return err
	}
	defer f.Close()
	return c.sendFDs(fdpass.Conn, id, f)
}

// handOver gives the gateway a connection accepted in the container (a
// remote forward, an agent-forwarding client) instead of copying it over
// the link: it opens the descriptor variant of kind, and once the gateway
// accepted it, sends the socket and closes the channel. It reports false
// when the link has no descriptor connection (the caller copies as before).
func (c *linkConn) handOver(log *slog.Logger, kind string, extra []byte, conn net.Conn) bool {
	variant := fdpass.ForwardedVariant(kind)
	if variant == "" || !c.hasFDs() {
		return false
	}
	defer conn.Close()
	id := fdpass.AgentIDBit | c.srv.nextID.Add(1)
	ch, reqs, err := c.sc.OpenChannel(variant, append(binary.BigEndian.AppendUint64(nil, id), extra...))
	if err != nil {
		log.Info("channel open failed", "err", err)
		return true
	}
	go ssh.DiscardRequests(reqs)
	defer ch.Close()
	if err := c.sendConn(id, conn); err != nil {
		log.Warn("handing a connection to the gateway failed", "err", err)
		return true
	}
	log.Info("connection handed to the gateway")
	return true
}
