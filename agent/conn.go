package agent

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/internal/fdpass"
)

// linkConn is one link connection from the gateway (one per container when
// the gateway shares it among a container's client connections,
// fdpass.SharedRequest; one per client connection otherwise). It owns every
// goroutine started for it — channel handlers, forward listeners and their
// copies — through wg, and its serve returns only after all of them ended.
type linkConn struct {
	srv *Server
	id  uint64
	nc  net.Conn
	log *slog.Logger

	// ctx is cancelled when the link is gone, so dials and other waits made
	// on its behalf stop early.
	ctx    context.Context
	cancel context.CancelFunc

	sc *ssh.ServerConn // set once the handshake is done, before any handler runs
	wg sync.WaitGroup

	mu       sync.Mutex
	channels int  // open channels, for Shutdown's idle check
	ended    bool // the link is gone: forward requests that still arrive are refused
	forwards map[string]*remoteForward
	fds      *net.UnixConn // the gateway's descriptor connection (fdpass.go); nil: none
	// shared is set once the gateway said it shares this link among client
	// connections (fdpass.SharedRequest): sessions then take a tag
	// (fdpass.TagRequest) that their auth-agent channels echo.
	shared atomic.Bool

	fdMu sync.Mutex // one message at a time on fds
}

func newLinkConn(s *Server, nc net.Conn) *linkConn {
	id := s.nextID.Add(1)
	ctx, cancel := context.WithCancel(context.Background())
	return &linkConn{
		srv:    s,
		id:     id,
		nc:     nc,
		log:    s.logger().With("link", id),
		ctx:    ctx,
		cancel: cancel,
	}
}

// idle reports whether no channel is open, so Shutdown may close the link
// without cutting anyone off.
func (c *linkConn) idle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.channels == 0
}

// close tears the link down; x/crypto then closes every channel, which the
// handlers see as the client going away.
func (c *linkConn) close() {
	c.nc.Close()
}

func (c *linkConn) serve() {
	start := time.Now()
	defer c.cancel()
	// The deadline bounds the handshake only; an established link may be
	// idle for days (a VS Code window left open).
	c.nc.SetDeadline(start.Add(orDefault(c.srv.HandshakeTimeout, defaultHandshakeTimeout)))
	sc, chans, reqs, err := ssh.NewServerConn(c.nc, c.srv.config)
	if err != nil {
		c.nc.Close()
		c.log.Warn("link handshake failed", "err", err)
		return
	}
	c.nc.SetDeadline(time.Time{})
	c.sc = sc
	if sc.Permissions != nil && sc.Permissions.Extensions["pubkey-fp"] != "" {
		c.log.Debug("link connected", "remote", c.nc.RemoteAddr().String(), "client_key", sc.Permissions.Extensions["pubkey-fp"])
	} else {
		c.log.Debug("link connected")
	}

	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.handleGlobalRequests(reqs)
	}()
	var nchan int
	for nch := range chans {
		nchan++
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.handleChannel(nch)
		}()
	}
	// chans is closed: the transport is gone. Stop the forward listeners so
	// their accept loops end, then wait for every handler to finish.
	c.cancel()
	c.closeForwards()
	c.closeFDs()
	sc.Close()
	c.wg.Wait()
	c.log.Info("link closed", "channels", nchan, "duration", time.Since(start).Round(time.Millisecond))
}

func (c *linkConn) handleChannel(nch ssh.NewChannel) {
	c.mu.Lock()
	c.channels++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.channels--
		c.mu.Unlock()
	}()
	if c.srv.isClosing() {
		nch.Reject(ssh.ResourceShortage, "agent is shutting down")
		return
	}
	switch nch.ChannelType() {
	case "session":
		c.serveSession(nch)
	case "direct-tcpip":
		c.serveDirectTCPIP(nch)
	case "direct-streamlocal@openssh.com":
		c.serveDirectStreamLocal(nch)
	case fdpass.DirectTCPIP, fdpass.DirectStreamLocal:
		c.serveDirectFD(nch) // fdpass.go
	default:
		// Same wording as sshd, which clients (and people) recognise.
		nch.Reject(ssh.UnknownChannelType, "unknown channel type")
		c.log.Debug("channel rejected", "type", nch.ChannelType())
	}
}

// handleGlobalRequests answers every global request promptly: the x/crypto
// mux delivers them from the connection's single read loop, so a slow reply
// here would stall all channels (and OpenSSH keepalives would time out).
// Binding a listener is a few syscalls, so it is done inline.
func (c *linkConn) handleGlobalRequests(reqs <-chan *ssh.Request) {
	for req := range reqs {
		var ok bool
		var payload []byte
		switch req.Type {
		case "tcpip-forward":
			ok, payload = c.tcpipForward(req.Payload)
		case "cancel-tcpip-forward":
			ok = c.cancelTCPIPForward(req.Payload)
		case "streamlocal-forward@openssh.com":
			ok = c.streamLocalForward(req.Payload)
		case "cancel-streamlocal-forward@openssh.com":
			ok = c.cancelStreamLocalForward(req.Payload)
		case gpuProbeRequest:
			ok, payload = c.gpuProbe(req.Payload) // gpuprobe.go
		case fdpass.BindRequest:
			ok = c.bindFDs(req.Payload) // fdpass.go
		case fdpass.SharedRequest:
			ok = len(req.Payload) == 0
			if ok {
				c.shared.Store(true)
			}
		default:
			// keepalive@openssh.com and the rest: any reply resets the
			// client's keepalive counter, and false is what sshd sends.
		}
		if err := req.Reply(ok, payload); err != nil {
			c.log.Debug("global request reply failed", "type", req.Type, "err", err)
		}
	}
}

// channelLog is the per-channel child logger.
func (c *linkConn) channelLog(kind string) *slog.Logger {
	return c.log.With("channel", c.srv.nextID.Add(1), "type", kind)
}

// closedChannelDrain bounds the delivery of data a channel received before
// the peer closed it.
const closedChannelDrain = 10 * time.Second

// bicopy joins an accepted channel and a stream connection with half-close
// in both directions (RFC 4254 §5.3): EOF from one side becomes CloseWrite
// on the other while the opposite direction keeps flowing, and both are
// closed only when both directions are done or the channel is closed. The
// stock gliderlabs handlers close everything at the first EOF, which
// truncates replies to clients that half-close (hc.py in the compat notes).
func bicopy(ch ssh.Channel, reqs <-chan *ssh.Request, conn net.Conn) (in, out int64) {
	type closeWriter interface{ CloseWrite() error }

	reqsDone := make(chan struct{})
	go func() {
		defer close(reqsDone)
		// reqs closes when the channel is closed (by the peer, or the link
		// died): that is the only signal that a blocked read on conn must be
		// cut off.
		ssh.DiscardRequests(reqs)
	}()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		in, _ = io.Copy(conn, ch)
		if cw, ok := conn.(closeWriter); ok {
			cw.CloseWrite()
		} else {
			conn.Close()
		}
	}()
	go func() {
		defer wg.Done()
		out, _ = io.Copy(ch, conn)
		ch.CloseWrite()
	}()
	copies := make(chan struct{})
	go func() {
		wg.Wait()
		close(copies)
	}()

	select {
	case <-copies:
	case <-reqsDone:
		// Nothing can be sent on a closed channel, so stop reading conn.
		// What the channel received before its close is still buffered and
		// is delivered (closing conn here would truncate it), within a bound
		// so a peer that stopped reading cannot hold the link forever.
		conn.SetReadDeadline(time.Unix(1, 0))
		conn.SetWriteDeadline(time.Now().Add(closedChannelDrain))
		<-copies
	}
	conn.Close()
	ch.Close()
	<-reqsDone
	return in, out
}
