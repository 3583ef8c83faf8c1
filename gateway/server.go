// Package gateway is the SSH front of Sygaldry: host keys, authentication
// (key → user, login name → project, membership), connection limits, and a
// transparent proxy that joins every client channel to a channel on the link
// to the agent inside the user's project container.
//
// gliderlabs/ssh provides the server loop, connection tracking and the
// channel/request dispatch. Its own session and forwarding handlers are not
// used: they rewrite \n to \r\n on ptys, block the request loop on resizes,
// send exit-status 0 when a handler returns and dial from the host
// (reference/openssh-compat.md §0). Session semantics live in the agent; the
// gateway only observes requests as they pass, to fill the session registry.
//
// Before login, a connection waits for one of max_startups handshake slots
// (per_source_max_startups per address, a queue of max_startups_queue,
// kex_timeout, sshd's random early drop): prelogin.go. Log lines about
// unauthenticated clients are rate-limited and their values cut: prelog.go.
// Per connection, sessions, forwards, env entries and the requests held while
// a container starts are capped as sshd does: limits.go.
//
// What a key or certificate may do is decided once at login and enforced at
// each channel and request (permits.go): authorized_keys options (from=,
// expiry-time, command=, restrict, no-pty, no-port-forwarding,
// no-agent-forwarding), certificate extensions and critical options
// (permit-pty, permit-port-forwarding, permit-agent-forwarding,
// force-command, source-address), and server.revoked_keys, as sshd does.
//
// Authorization stays true while a connection lives (recheck.go): every new
// channel, global request and agent-opened channel re-checks the login
// against the config in force, and a reload that withdraws a user's key,
// certificate or membership ends that user's connections, each open session
// told why in one line. A panic while serving a connection is recovered,
// logged with its stack, and ends that connection only (panic.go).
package gateway

import (
	"context"
	"errors"
	"github.com/sygaldry/sygaldry/internal/usererr"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/link"
	"github.com/sygaldry/sygaldry/sessions"
)

// Containers is what the gateway needs from the container manager.
type Containers interface {
	// Ensure returns the running container of (user, project), creating,
	// starting or building as needed; progress gets short lines for the user.
	Ensure(ctx context.Context, project config.Resolved, user string, progress io.Writer) (Target, error)
	// Acquire and Release bracket each client connection that uses a
	// container, so an in-use container is neither recreated nor idle-stopped.
	Acquire(name string)
	Release(name string)
}

// Sessions is what the gateway needs from the session registry
// (sessions.Registry): every authenticated connection and every channel is
// recorded for its life, and a shutdown ends what is left.
type Sessions interface {
	AddConn(in sessions.Info, kill context.CancelCauseFunc) *sessions.Session
	EndConn(s *sessions.Session)
	Add(in sessions.Info, cancel context.CancelCauseFunc) *sessions.Session
	End(s *sessions.Session, reason string)
	CancelAll(cause error)
}

// Target is a running container, the host path of its agent socket, and
// what proves that the process answering there is that container's agent.
// A container on the network (a Kubernetes pod) has Dial instead: it makes
// the link itself, proving both ends' keys, and the link carries the bytes
// (descriptors cannot cross a network).
type Target struct {
	Name       string
	SocketPath string
	Peer       link.Peer
	Dial       func(ctx context.Context) (*gossh.Client, error)
	// Instance tells apart a container (a pod) made anew under the same
	// name, for a Target with Dial (a pod's UID); the Peer does so for a
	// socket. Connections share a link only within one instance.
	Instance string
}

// Options configure a Server. Config and Containers are required.
type Options struct {
	// Config holds the configuration in force: the one holder, which a
	// reload replaces (then call Recheck). The server reads it at each
	// decision: new connections, channels and requests.
	Config     *config.Live
	Containers Containers
	Sessions   Sessions     // nil: a registry without history
	Logger     *slog.Logger // nil: slog.Default()
	Metrics    *Metrics     // nil: no metrics
	// NoFDPass keeps the bytes on the link instead of taking the agent's
	// descriptors (internal/fdpass); for comparisons and tests.
	NoFDPass bool
	// NoSharedLink gives every client connection its own link to the agent
	// instead of one link per container (agentlink.go), which is what an
	// agent older than fdpass.SharedRequest gets; for comparisons and tests.
	NoSharedLink bool
	// HostSigners are the host keys; empty: loaded from server.state_dir,
	// or generated there on first start.
	HostSigners []gossh.Signer
}

// Server is the SSH gateway: New, then Serve.
type Server struct {
	live       *config.Live
	containers Containers
	sessions   Sessions
	logger     *slog.Logger
	metrics    *Metrics
	noFDPass   bool
	// noSharedLink gives every client connection its own link, as for an
	// agent that does not accept fdpass.SharedRequest.
	noSharedLink bool

	srv     *ssh.Server
	closing atomic.Bool
	connSeq atomic.Uint64
	conns   connSet        // live connections, re-checked by Recheck
	links   linkSet        // shared links to agents, by container (agentlink.go)
	wg      sync.WaitGroup // goroutines we own: per connection, and the agent-channel servers

	startups  startupGate // handshake slots and their queue (prelogin.go)
	prelogger preLogState // rate-limited log of unauthenticated clients (prelog.go)
}

// New returns a server for o, with its host keys loaded (or generated and
// written to server.state_dir on first start).
func New(o Options) (*Server, error) {
	if o.Config == nil || o.Config.Load() == nil {
		return nil, errors.New("gateway: no config")
	}
	if o.Containers == nil {
		return nil, errors.New("gateway: no container manager")
	}
	s := &Server{
		live: o.Config, containers: o.Containers, sessions: o.Sessions,
		logger: o.Logger, metrics: o.Metrics, noFDPass: o.NoFDPass,
		noSharedLink: o.NoSharedLink,
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	if s.sessions == nil {
		s.sessions = sessions.NewRegistry(nil)
	}
	signers := o.HostSigners
	if len(signers) == 0 {
		var err error
		if signers, err = LoadHostKeys(s.conf().Server.StateDir, s.logger); err != nil {
			return nil, err
		}
	}
	s.srv = s.newSSHServer(signers)
	return s, nil
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = ssh.ErrServerClosed

func (s *Server) log() *slog.Logger { return s.logger }

func (s *Server) newSSHServer(signers []gossh.Signer) *ssh.Server {
	srv := &ssh.Server{
		Version:          "Sygaldry",
		HostSigners:      nil,
		PublicKeyHandler: s.guardKey(s.precheckKey),
		ConnCallback:     s.guardAccept(s.acceptConn),
		ServerConfigCallback: func(ctx ssh.Context) *gossh.ServerConfig {
			return s.guardConfig(ctx, s.serverConfig)
		},
		BannerHandler: s.authBegun, // the key exchange is over (prelogin.go)
		ConnectionFailedCallback: func(c net.Conn, err error) {
			s.prelog().Debug("handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		},
		ChannelHandlers: map[string]ssh.ChannelHandler{
			"session":                        s.handleChannel,
			"direct-tcpip":                   s.handleChannel,
			"direct-streamlocal@openssh.com": s.handleChannel,
		},
		RequestHandlers: map[string]ssh.RequestHandler{
			"tcpip-forward":                          s.handleGlobalForward,
			"cancel-tcpip-forward":                   s.handleGlobalForward,
			"streamlocal-forward@openssh.com":        s.handleGlobalForward,
			"cancel-streamlocal-forward@openssh.com": s.handleGlobalForward,
		},
	}
	for _, hs := range signers {
		srv.AddHostKey(hs)
	}
	return srv
}

// conf is the configuration in force.
func (s *Server) conf() *config.Config { return s.live.Load() }

// Recheck re-checks every connection against the configuration in force,
// after a reload: a connection whose user, key (or certificate) or
// membership it no longer grants is ended, its sessions told why
// (recheck.go); the others keep going. It returns how many were ended.
func (s *Server) Recheck() (ended int) {
	ended = s.endRevoked()
	if ended > 0 {
		s.log().Info("connections ended by a reload", "connections_ended", ended)
	}
	return ended
}

// Serve accepts connections on l until Shutdown or Close.
func (s *Server) Serve(l net.Listener) error {
	if s.closing.Load() {
		return ErrServerClosed
	}
	s.log().Info("listening", "addr", l.Addr().String())
	return s.srv.Serve(l)
}

// Shutdown stops accepting connections and waits for the open ones to end
// or ctx to expire; then it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.startups.close()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		// Sessions still open when the drain time is up are ended with a
		// word to their users; their containers (and jobs) keep running.
		s.sessions.CancelAll(errShuttingDown)
		s.channelsEnded(2 * time.Second) // each has written its line and closed
		s.srv.Close()
	}
	s.waitConns(5 * time.Second)
	return err
}

var errShuttingDown = usererr.New("the gateway is restarting; your container and its jobs keep running. Reconnect in a moment.", nil)

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.closing.Store(true)
	s.startups.close()
	err := s.srv.Close()
	s.waitConns(5 * time.Second)
	return err
}

// channelsEnded waits, at most d, until every channel of every connection
// has ended.
func (s *Server) channelsEnded(d time.Duration) {
	done := make(chan struct{})
	go func() {
		for _, st := range s.conns.list() {
			st.chans.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		s.log().Warn("channels still open after being told to end", "waited", d)
	}
}

func (s *Server) waitConns(d time.Duration) {
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		s.log().Warn("connections still tearing down after close", "waited", d)
	}
}
