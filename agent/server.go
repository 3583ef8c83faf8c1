// Package agent is the SSH server that runs inside every Sygaldry container.
//
// The gateway authenticates the user, then proxies each client channel and
// request 1:1 over a "link": an SSH connection to this server on a unix
// socket bind-mounted from the host. The agent implements the semantics the
// way OpenSSH's sshd does (shell/exec through the login shell, ptys, env,
// signals, exit-status/exit-signal, the sftp subsystem, port forwarding and
// agent forwarding), all inside the container's namespaces, so
// "localhost" and every path mean the container.
//
// On a unix socket the link has no client authentication: the socket's file
// mode (0600, owned by the container user) is the trust boundary, and the
// gateway has already authenticated the person on the other end. Where the
// gateway reaches the agent over the network (a Kubernetes pod), a port
// proves nothing, so the gateway's link client key must be one of
// Server.AuthorizedKeys (clientauth.go).
package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// ErrServerClosed is returned by Serve after Shutdown or Close, like
// http.ErrServerClosed, so callers can tell a requested stop from a failure.
var ErrServerClosed = errors.New("agent: server closed")

// Defaults for the zero values of Server's tunables.
const (
	defaultHangupGrace      = 2 * time.Second
	defaultPTYDrain         = 100 * time.Millisecond
	defaultDialTimeout      = 10 * time.Second
	defaultHandshakeTimeout = 30 * time.Second
	serverVersion           = "SSH-2.0-sygaldry-agent"
)

// Server is the agent's SSH server. The zero value is ready to use; set
// fields before the first call to Serve and do not change them afterwards.
type Server struct {
	// Logger gets one line per link connection and per channel. Nil: slog.Default().
	Logger *slog.Logger
	// HostKey identifies the agent on the link. Nil: an ephemeral ed25519
	// key made on first use (the gateway trusts the socket, not the key).
	HostKey ssh.Signer
	// AuthorizedKeys are the link client keys the gateway may prove (publickey
	// auth). Empty: no client authentication, which Serve allows on a unix
	// socket only (ErrNoClientAuth).
	AuthorizedKeys []ssh.PublicKey
	// User overrides USER/LOGNAME. Empty: the passwd name of the agent's uid.
	User string
	// Home overrides $HOME, the working directory of processes (unless
	// $SYGALDRY_WORKSPACE names a directory: they start there) and the base of
	// relative sftp paths. Empty: the passwd home of the agent's uid, else $HOME, else "/".
	Home string
	// Shell overrides the login shell used for shell and exec. Empty: the
	// passwd shell of the agent's uid, else /bin/sh.
	Shell string
	// Env is the base environment of started processes. Nil: the agent's own
	// environment minus agent-internal (SYGALDRY_AGENT_*) variables.
	Env []string
	// HangupGrace is how long a session's process may take to exit after the
	// SIGHUP sent when its channel closes, before its leader is SIGKILLed. Zero: 2s.
	HangupGrace time.Duration
	// PTYDrain is how long pty output is still forwarded after the session's
	// process exited when a background job keeps the pty open: output stops
	// at EOF or after this long without data. Zero: 100ms.
	PTYDrain time.Duration
	// DialTimeout bounds the dials of direct-tcpip and direct-streamlocal. Zero: 10s.
	DialTimeout time.Duration
	// HandshakeTimeout bounds the SSH handshake of a link connection. Zero: 30s.
	HandshakeTimeout time.Duration
	// Self is the agent binary, started as `Self sftp-server` for the sftp
	// subsystem when the gateway takes the session's descriptors
	// (fdpass.go). Empty: sftp runs in the agent, over the link.
	Self string
	// SFTPServer is the program that serves the sftp subsystem. Empty: the
	// image's OpenSSH sftp-server where it is in a usual place (see
	// openSSHSFTPServers), else the agent's own; SFTPServerInternal: always
	// the agent's own; a path: that program.
	SFTPServer string
	// GatewayPorts lets tcpip-forward bind the address the client asks for
	// (sshd's "GatewayPorts clientspecified"). False, sshd's default: always
	// bind loopback, so a forward is never exposed to the container network.
	GatewayPorts bool
	// ProcDir is where the listening ports shown at an interactive login
	// are read (ports.go). Empty: /proc.
	ProcDir string

	initOnce sync.Once
	initErr  error
	config   *ssh.ServerConfig
	acct     account
	baseEnv  []string
	nextID   atomic.Uint64

	fds fdConns // descriptor connections waiting for their link (fdpass.go)

	mu        sync.Mutex
	closing   bool // set by Shutdown/Close; no new listeners, conns or channels
	listeners map[*net.Listener]struct{}
	conns     map[*linkConn]struct{}
	connWG    sync.WaitGroup // one per link connection goroutine
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// init resolves the account and the host key once. A missing passwd entry is
// logged, not fatal: containers run with arbitrary uids.
func (s *Server) init() error {
	s.initOnce.Do(func() {
		signer := s.HostKey
		if signer == nil {
			_, key, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				s.initErr = fmt.Errorf("generate host key: %w", err)
				return
			}
			signer, err = ssh.NewSignerFromKey(key)
			if err != nil {
				s.initErr = fmt.Errorf("host key signer: %w", err)
				return
			}
		}
		cfg := &ssh.ServerConfig{ServerVersion: serverVersion}
		if len(s.AuthorizedKeys) > 0 {
			cfg.PublicKeyCallback = publicKeyCallback(s.AuthorizedKeys)
		} else {
			// The socket's permissions are the trust boundary (see package
			// doc); Serve refuses any other listener.
			cfg.NoClientAuth = true
		}
		cfg.AddHostKey(signer)
		s.config = cfg

		acct, err := resolveAccount("/etc/passwd", os.Getuid(),
			account{name: s.User, home: s.Home, shell: s.Shell}, os.Getenv)
		if err != nil {
			s.logger().Warn("account lookup incomplete, using fallbacks",
				"uid", os.Getuid(), "user", acct.name, "home", acct.home, "shell", acct.shell, "err", err)
		}
		s.acct = acct
		if s.Env != nil {
			s.baseEnv = baseEnviron(s.Env)
		} else {
			s.baseEnv = baseEnviron(os.Environ())
		}
	})
	return s.initErr
}

// Serve accepts link connections on l until Shutdown or Close, and returns
// ErrServerClosed then. l is closed when Serve returns. A listener that is
// not a unix socket needs AuthorizedKeys (ErrNoClientAuth).
func (s *Server) Serve(l net.Listener) error {
	if err := s.init(); err != nil {
		l.Close()
		return err
	}
	if len(s.AuthorizedKeys) == 0 && l.Addr().Network() != "unix" {
		l.Close()
		return fmt.Errorf("%w: %s %s", ErrNoClientAuth, l.Addr().Network(), l.Addr())
	}
	if !s.trackListener(&l, true) {
		l.Close()
		return ErrServerClosed
	}
	defer s.trackListener(&l, false)
	defer l.Close()

	log := s.logger()
	log.Info("agent serving", "addr", l.Addr().String(), "user", s.acct.name, "home", s.acct.home, "shell", s.acct.shell)
	return s.acceptLoop("link", func() error {
		nc, err := l.Accept()
		if err != nil {
			return err
		}
		c := newLinkConn(s, nc)
		if !s.trackConn(c, true) {
			nc.Close()
			return errServing
		}
		go func() {
			defer s.connWG.Done()
			defer s.trackConn(c, false)
			c.serve()
		}()
		return nil
	})
}

// errServing stops an acceptLoop: the server is closing.
var errServing = errors.New("server closing")

// acceptLoop calls accept (which accepts one connection and starts serving
// it) until the server closes, and returns ErrServerClosed then. Resource
// exhaustion is transient: it backs off like net/http instead of ending
// the agent, which would take every session in the container down with it.
func (s *Server) acceptLoop(what string, accept func() error) error {
	var backoff time.Duration
	for {
		err := accept()
		switch {
		case err == nil:
			backoff = 0
		case errors.Is(err, errServing) || s.isClosing():
			return ErrServerClosed
		case isTemporaryAcceptErr(err):
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.logger().Warn("accept failed, retrying", "what", what, "err", err, "in", backoff)
			time.Sleep(backoff)
		default:
			return fmt.Errorf("accept %s: %w", what, err)
		}
	}
}

func isTemporaryAcceptErr(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func (s *Server) trackListener(l *net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.listeners, l)
		return true
	}
	if s.closing {
		return false
	}
	if s.listeners == nil {
		s.listeners = make(map[*net.Listener]struct{})
	}
	s.listeners[l] = struct{}{}
	return true
}

// trackConn registers c; the WaitGroup Add happens under the same lock that
// Close takes before Wait, so no Add can race with Wait.
func (s *Server) trackConn(c *linkConn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.conns, c)
		return true
	}
	if s.closing {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[*linkConn]struct{})
	}
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	return true
}

// stopAccepting marks the server closing and closes its listeners.
func (s *Server) stopAccepting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	for l := range s.listeners {
		(*l).Close()
	}
}

// Shutdown stops accepting links and new channels, closes links as they go
// idle (no open channels), and returns once all are gone. If ctx ends first
// it falls back to Close — every remaining session is hung up and, after
// HangupGrace, killed — and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopAccepting()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.closeIdleConns() {
			s.connWG.Wait()
			return nil
		}
		select {
		case <-ctx.Done():
			s.Close()
			return fmt.Errorf("agent shutdown: %w", context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// closeIdleConns closes links without open channels and reports whether no
// links remain at all.
func (s *Server) closeIdleConns() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.idle() {
			c.close()
		}
	}
	return len(s.conns) == 0
}

// Close stops accepting and closes every link now. Sessions see their
// channels close, which hangs up their processes; Close returns when every
// link's goroutines have ended (at most about HangupGrace).
func (s *Server) Close() error {
	s.stopAccepting()
	s.mu.Lock()
	for c := range s.conns {
		c.close()
	}
	s.mu.Unlock()
	s.connWG.Wait()
	return nil
}
