package agent

import (
	"context"
	"errors"
	"github.com/sygaldry/sygaldry/internal/sshmsg"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// Port forwarding. Everything here runs inside the container, so
// "localhost", ports and socket paths are the container's — the reason the
// agent exists rather than the gateway dialing from the host (which would
// reach the wrong service and open an SSRF hole into the host).

func (c *linkConn) serveDirectTCPIP(nch ssh.NewChannel) {
	c.serveDirect(nch, "tcp", nch.ExtraData())
}

func (c *linkConn) serveDirectStreamLocal(nch ssh.NewChannel) {
	c.serveDirect(nch, "unix", nch.ExtraData())
}

// serveDirect dials what a direct-tcpip (network "tcp") or
// direct-streamlocal ("unix") open with payload extra asks for and joins it
// to the channel.
func (c *linkConn) serveDirect(nch ssh.NewChannel, network string, extra []byte) {
	start := time.Now()
	conn, log, ok := c.dialDirect(nch, network, extra)
	if !ok {
		return
	}
	ch, reqs, err := nch.Accept()
	if err != nil {
		conn.Close()
		log.Debug("channel accept failed", "err", err)
		return
	}
	in, out := bicopy(ch, reqs, conn)
	log.Info("channel closed", "bytes_in", in, "bytes_out", out, "duration", time.Since(start).Round(time.Millisecond))
}

// dialDirect decodes a direct-tcpip or direct-streamlocal payload and dials
// it inside the container before the channel is accepted, so that a
// failure becomes a ConnectionFailed rejection the client reports ("open
// failed: connect failed: connection refused"), exactly like sshd. On any
// failure nch is rejected and ok is false.
func (c *linkConn) dialDirect(nch ssh.NewChannel, network string, extra []byte) (conn net.Conn, log *slog.Logger, ok bool) {
	var addr string
	if network == "tcp" {
		m, err := decodeDirectTCPIP(extra)
		if err != nil {
			nch.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
			return nil, nil, false
		}
		addr = net.JoinHostPort(m.Host, strconv.FormatUint(uint64(m.Port), 10))
		log = c.channelLog("direct-tcpip").With("addr", addr,
			"origin", net.JoinHostPort(m.OrigHost, strconv.FormatUint(uint64(m.OrigPort), 10)))
	} else {
		m, err := decodeDirectStreamLocal(extra)
		if err != nil {
			nch.Reject(ssh.ConnectionFailed, "malformed direct-streamlocal request")
			return nil, nil, false
		}
		addr = m.Path
		log = c.channelLog("direct-streamlocal").With("path", addr)
	}
	ctx, cancel := context.WithTimeout(c.ctx, orDefault(c.srv.DialTimeout, defaultDialTimeout))
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		nch.Reject(ssh.ConnectionFailed, "connect failed: "+shortNetError(err))
		log.Info("channel rejected", "err", err)
		return nil, nil, false
	}
	return conn, log, true
}

// shortNetError turns a dial error into the few words a user sees after
// "open failed: connect failed:", like sshd's strerror.
func shortNetError(err error) string {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "name resolution failed for " + dnsErr.Name
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return "connection timed out"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return "connection failed"
}

// remoteForward is one tcpip-forward or streamlocal-forward: the listeners
// bound inside the container for it, and what to announce in each
// forwarded-* channel open.
type remoteForward struct {
	key  string // map key: "host:boundport" as requested, or "unix:" + path
	lns  []net.Listener
	host string // tcpip: the address as the client requested it
	port uint32 // tcpip: the bound port (the allocated one when 0 was asked)
	path string // streamlocal: the socket path

	loops sync.WaitGroup // the accept loops of lns
}

// close closes the listeners and waits for their accept loops: only then has
// the kernel really released the port (Go defers close(2) until a blocked
// Accept returns), so a cancel reply means the port is free.
func (fw *remoteForward) close() {
	for _, ln := range fw.lns {
		ln.Close()
	}
	fw.loops.Wait()
}

// bindHosts is where a tcpip-forward listens. sshd with GatewayPorts=no (its
// default) binds loopback whatever the client asks; "localhost" is bound on
// both families like OpenSSH does via getaddrinfo.
func (c *linkConn) bindHosts(requested string) []string {
	if !c.srv.GatewayPorts {
		return []string{"127.0.0.1", "::1"}
	}
	switch requested {
	case "", "*":
		return []string{""}
	case "localhost":
		return []string{"127.0.0.1", "::1"}
	}
	return []string{requested}
}

func (c *linkConn) tcpipForward(payload []byte) (bool, []byte) {
	m, err := decodeTCPIPForward(payload)
	if err != nil {
		return false, nil
	}
	// Like sshd: privileged ports only for root. Docker containers usually
	// have ip_unprivileged_port_start=0, so the kernel would allow it.
	if m.Port != 0 && m.Port < 1024 && os.Getuid() != 0 {
		c.log.Info("tcpip-forward refused: privileged port", "port", m.Port)
		return false, nil
	}
	port := int(m.Port)
	var lns []net.Listener
	var firstErr error
	for _, h := range c.bindHosts(m.Host) {
		ln, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(port)))
		if err != nil {
			// ::1 is missing in containers with IPv6 disabled; one family is enough.
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if port == 0 {
			// Every family gets the port the first one allocated.
			port = ln.Addr().(*net.TCPAddr).Port
		}
		lns = append(lns, ln)
	}
	if len(lns) == 0 {
		c.log.Info("tcpip-forward failed", "host", m.Host, "port", m.Port, "err", firstErr)
		return false, nil
	}
	fw := &remoteForward{
		key:  net.JoinHostPort(m.Host, strconv.Itoa(port)),
		lns:  lns,
		host: m.Host,
		port: uint32(port),
	}
	if !c.addForward(fw) {
		return false, nil
	}
	c.log.Info("tcpip-forward", "host", m.Host, "port", port)
	var reply []byte
	if m.Port == 0 {
		// §7.1: the allocated port is returned only when 0 was requested.
		reply = ssh.Marshal(sshmsg.TCPIPForwardReply{Port: uint32(port)})
	}
	return true, reply
}

func (c *linkConn) cancelTCPIPForward(payload []byte) bool {
	m, err := decodeTCPIPForward(payload)
	if err != nil {
		return false
	}
	return c.removeForward(net.JoinHostPort(m.Host, strconv.FormatUint(uint64(m.Port), 10)))
}

func (c *linkConn) streamLocalForward(payload []byte) bool {
	m, err := decodeStreamLocalForward(payload)
	if err != nil {
		return false
	}
	ln, err := listenUnixForward(m.Path)
	if err != nil {
		c.log.Info("streamlocal-forward failed", "path", m.Path, "err", err)
		return false
	}
	if !c.addForward(&remoteForward{key: "unix:" + m.Path, lns: []net.Listener{ln}, path: m.Path}) {
		return false
	}
	c.log.Info("streamlocal-forward", "path", m.Path)
	return true
}

func (c *linkConn) cancelStreamLocalForward(payload []byte) bool {
	m, err := decodeStreamLocalForward(payload)
	if err != nil {
		return false
	}
	return c.removeForward("unix:" + m.Path)
}

// listenUnixForward binds a forwarded socket with mode 0600, like sshd's
// StreamLocalBindMask 0177. A stale socket (nobody answers) is replaced, as
// after a client that died without cancelling; a live one is left alone.
func listenUnixForward(path string) (net.Listener, error) {
	ln, err := listenUnixMode(path, syscall.SOCK_STREAM, 0o600)
	if err != nil && errors.Is(err, syscall.EADDRINUSE) && isStaleSocket(path) {
		os.Remove(path)
		ln, err = listenUnixMode(path, syscall.SOCK_STREAM, 0o600)
	}
	if err != nil {
		return nil, err
	}
	return ln, nil
}

// isStaleSocket reports whether path is a socket nobody listens on.
func isStaleSocket(path string) bool {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return false
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		conn.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// addForward registers fw and starts its accept loops; it refuses (and
// closes fw) when the key is taken or the link is already gone.
func (c *linkConn) addForward(fw *remoteForward) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.forwards[fw.key]; dup || c.ended {
		fw.close()
		return false
	}
	if c.forwards == nil {
		c.forwards = make(map[string]*remoteForward)
	}
	c.forwards[fw.key] = fw
	for _, ln := range fw.lns {
		c.wg.Add(1)
		fw.loops.Add(1)
		go func() {
			defer c.wg.Done()
			defer fw.loops.Done()
			c.acceptForwarded(fw, ln)
		}()
	}
	return true
}

func (c *linkConn) removeForward(key string) bool {
	c.mu.Lock()
	fw, ok := c.forwards[key]
	delete(c.forwards, key)
	c.mu.Unlock()
	if !ok {
		return false
	}
	fw.close()
	return true
}

// closeForwards is called when the link ends: listeners die with the link
// that asked for them, like sshd's.
func (c *linkConn) closeForwards() {
	c.mu.Lock()
	fws := c.forwards
	c.forwards = nil
	c.ended = true
	c.mu.Unlock()
	for _, fw := range fws {
		fw.close()
	}
}

func (c *linkConn) acceptForwarded(fw *remoteForward, ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				c.log.Warn("forward listener failed", "key", fw.key, "err", err)
			}
			return
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.openForwarded(fw, conn)
		}()
	}
}

func (c *linkConn) openForwarded(fw *remoteForward, conn net.Conn) {
	var kind string
	var extra []byte
	if fw.path != "" {
		kind = "forwarded-streamlocal@openssh.com"
		extra = ssh.Marshal(sshmsg.ForwardedStreamLocal{Path: fw.path})
	} else {
		kind = "forwarded-tcpip"
		origHost, origPort := "127.0.0.1", 0
		if ta, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
			origHost, origPort = ta.IP.String(), ta.Port
		}
		extra = ssh.Marshal(sshmsg.ForwardedTCPIP{Host: fw.host, Port: fw.port, OrigHost: origHost, OrigPort: uint32(origPort)})
	}
	c.openAndCopy(c.channelLog(kind).With("key", fw.key), kind, extra, conn)
}

// openAndCopy opens a channel of kind towards the gateway for a connection
// accepted in the container (a remote forward, an agent client) and copies
// both ways until both ends are done.
func (c *linkConn) openAndCopy(log *slog.Logger, kind string, extra []byte, conn net.Conn) {
	if c.handOver(log, kind, extra, conn) { // fdpass.go
		return
	}
	start := time.Now()
	ch, reqs, err := c.sc.OpenChannel(kind, extra)
	if err != nil {
		conn.Close()
		log.Info("channel open failed", "err", err)
		return
	}
	in, out := bicopy(ch, reqs, conn)
	log.Info("channel closed", "bytes_in", in, "bytes_out", out, "duration", time.Since(start).Round(time.Millisecond))
}
