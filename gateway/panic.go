package gateway

// A panic while serving one connection must end that connection only, never
// the daemon and everybody else's sessions with it (issue 6). Every
// goroutine the gateway starts for a connection or a channel defers one of
// the recoverPanic methods below; the callbacks x/crypto and gliderlabs run
// on the connection's own goroutine (accept, authentication) are wrapped in
// guard* functions. A recovered panic is logged with its stack and ends the
// connection it happened on.

import (
	"github.com/sygaldry/sygaldry/internal/usererr"
	"net"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

var errInternal = usererr.New("the gateway hit an internal error and closed this connection; your container and its jobs keep running. Please reconnect.", nil)

// panicked logs a recovered panic with its stack and ends st (nil: a
// connection not yet set up, which its caller refuses).
func (s *Server) panicked(st *connState, where string, v any) {
	stack := string(debug.Stack())
	if st == nil {
		s.log().Error("panic while serving a connection; it is closed", "in", where, "panic", v, "stack", stack)
		return
	}
	user, project := st.identity()
	st.log.Error("panic while serving a connection; it is closed", "in", where, "user", user, "project", project, "panic", v, "stack", stack)
	st.end(errInternal)
	// If what panicked was the connection's own bookkeeping, run may never
	// get to close it: make sure it goes.
	time.AfterFunc(endGrace+time.Second, func() { st.raw.Close() })
}

// recoverPanic, deferred by a goroutine that serves st, turns a panic into
// the end of st.
func (st *connState) recoverPanic(where string) {
	if v := recover(); v != nil {
		st.s.panicked(st, where, v)
	}
}

// recoverPanic, deferred by a handler gliderlabs runs for the connection of
// ctx, turns a panic into the end of that connection.
func (s *Server) recoverPanic(ctx ssh.Context, where string) {
	if v := recover(); v != nil {
		s.panicked(stateOf(ctx), where, v)
	}
}

// recoverPanic, deferred by each of the pipe's goroutines, hands a panic
// to p.panicked (which ends the connection); without one it panics on.
func (p *pipe) recoverPanic(where string) {
	if v := recover(); v != nil {
		if p.panicked == nil {
			panic(v)
		}
		p.panicked(where, v)
	}
}

// guardConfig builds the connection's server config with build, and wraps
// its authentication callback; both run on the connection's goroutine. A
// panic in either refuses the login. A successful login is recorded for
// later re-checks (loggedIn).
func (s *Server) guardConfig(ctx ssh.Context, build func(ssh.Context) *gossh.ServerConfig) (cfg *gossh.ServerConfig) {
	defer func() {
		if v := recover(); v != nil {
			s.panicked(nil, "server config", v)
			cfg = &gossh.ServerConfig{
				VerifiedPublicKeyCallback: func(gossh.ConnMetadata, gossh.PublicKey, *gossh.Permissions, string) (*gossh.Permissions, error) {
					return nil, errDenied
				},
			}
		}
	}()
	hookPoint("config", "") // before the handshake: no login name yet
	cfg = build(ctx)
	verify := cfg.VerifiedPublicKeyCallback
	if verify == nil {
		return cfg
	}
	cfg.VerifiedPublicKeyCallback = func(meta gossh.ConnMetadata, key gossh.PublicKey, perms *gossh.Permissions, alg string) (p *gossh.Permissions, err error) {
		defer func() {
			if v := recover(); v != nil {
				s.panicked(nil, "authentication", v)
				p, err = nil, errDenied
			}
		}()
		hookPoint("auth", meta.User())
		p, err = verify(meta, key, perms, alg)
		if err == nil {
			hookPoint("authorized", meta.User())
		}
		if err == nil && p != nil && p.Extensions != nil && !s.loggedIn(ctx, p, key, meta.RemoteAddr()) {
			return nil, errDenied
		}
		return p, err
	}
	return cfg
}

// guardKey wraps the public key query handler: a panic refuses the key.
func (s *Server) guardKey(h ssh.PublicKeyHandler) ssh.PublicKeyHandler {
	return func(ctx ssh.Context, key ssh.PublicKey) (ok bool) {
		defer func() {
			if v := recover(); v != nil {
				s.panicked(nil, "key query", v)
				ok = false
			}
		}()
		return h(ctx, key)
	}
}

// guardAccept wraps the accept callback: a panic refuses the connection.
func (s *Server) guardAccept(h ssh.ConnCallback) ssh.ConnCallback {
	return func(ctx ssh.Context, c net.Conn) (out net.Conn) {
		defer func() {
			if v := recover(); v != nil {
				s.panicked(nil, "accept", v)
				out = nil
			}
		}()
		return h(ctx, c)
	}
}

// testHook, set by tests only, is called at named points of a connection's
// work (hookPoint) with the project of the connection; a test makes it
// panic to prove the recovery above.
var testHook atomic.Pointer[func(point, project string)]

func hookPoint(point, project string) {
	if h := testHook.Load(); h != nil {
		(*h)(point, project)
	}
}
