package gateway

import (
	"fmt"
	"sync"

	gossh "golang.org/x/crypto/ssh"
)

// Caps like sshd's on what one authenticated connection may hold (issue 6):
//
//   - server.max_sessions open session channels (sshd's MaxSessions);
//   - server.max_forwards open forwards: direct-tcpip and
//     direct-streamlocal channels (-L, -D, -W) plus the tcpip-forward and
//     streamlocal-forward listeners it asked for (-R);
//   - maxSessionEnv env requests accepted per session;
//   - maxQueuedRequests (and maxQueuedBytes) requests held per session
//     while its container starts (queueRequests).
//
// A channel over a cap is refused with ResourceShortage and a message that
// names the cap; a request over a cap is answered false. Nothing is queued
// or grown without bound on a client's behalf.
const (
	maxSessionEnv     = 64
	maxQueuedRequests = 256
	maxQueuedBytes    = 1 << 20
)

// connLimits counts what one connection holds open.
type connLimits struct {
	mu        sync.Mutex
	sessions  int
	forwards  int // forwarding channels and remote-forward listeners
	listeners int // the remote-forward listeners among forwards
}

// openChannel reserves room for a new channel of nc's type, or refuses nc
// and returns false. release gives the room back when the channel ends.
func (st *connState) openChannel(nc gossh.NewChannel) (release func(), ok bool) {
	cfg := st.s.conf().Server
	l := &st.limits
	l.mu.Lock()
	defer l.mu.Unlock()
	switch nc.ChannelType() {
	case "session":
		if l.sessions >= cfg.MaxSessions {
			st.log.Info("channel refused: max_sessions", "max_sessions", cfg.MaxSessions)
			nc.Reject(gossh.ResourceShortage, fmt.Sprintf("too many sessions on this connection (the gateway allows %d; max_sessions)", cfg.MaxSessions))
			return nil, false
		}
		l.sessions++
		return func() { l.mu.Lock(); l.sessions--; l.mu.Unlock() }, true
	case "direct-tcpip", "direct-streamlocal@openssh.com":
		if l.forwards >= cfg.MaxForwards {
			st.log.Info("channel refused: max_forwards", "type", nc.ChannelType(), "max_forwards", cfg.MaxForwards)
			nc.Reject(gossh.ResourceShortage, fmt.Sprintf("too many open forwards on this connection (the gateway allows %d; max_forwards)", cfg.MaxForwards))
			return nil, false
		}
		l.forwards++
		return func() { l.mu.Lock(); l.forwards--; l.mu.Unlock() }, true
	}
	return func() {}, true
}

// forwardRequest is called around a global request: before passing it on
// (it returns false to refuse a new listener over max_forwards) and, with
// done, once the agent answered (replied: the answer is known; ok: it was
// yes), to count the listeners made and cancelled. A request that wants no
// reply keeps its reservation: the listener may exist.
func (st *connState) forwardRequest(typ string) (done func(replied, ok bool), ok bool) {
	cfg := st.s.conf().Server
	l := &st.limits
	switch typ {
	case "tcpip-forward", "streamlocal-forward@openssh.com":
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.forwards >= cfg.MaxForwards {
			st.log.Info("forward request refused: max_forwards", "type", typ, "max_forwards", cfg.MaxForwards)
			return nil, false
		}
		l.forwards++ // reserved while the agent decides
		l.listeners++
		return func(replied, ok bool) {
			if replied && !ok {
				l.mu.Lock()
				l.forwards--
				l.listeners--
				l.mu.Unlock()
			}
		}, true
	case "cancel-tcpip-forward", "cancel-streamlocal-forward@openssh.com":
		return func(replied, ok bool) {
			l.mu.Lock()
			defer l.mu.Unlock()
			if replied && ok && l.listeners > 0 {
				l.forwards--
				l.listeners--
			}
		}, true
	}
	return func(bool, bool) {}, true
}

// sessionLimits are the per-session caps on requests.
type sessionLimits struct {
	env int // env requests accepted
}

// allow applies the per-session caps to a request the policy already
// accepted; it returns false to refuse it.
func (sl *sessionLimits) allow(st *connState, req *gossh.Request) bool {
	if req.Type != "env" {
		return true
	}
	if sl.env >= maxSessionEnv {
		if sl.env == maxSessionEnv {
			st.log.Info("env refused: too many variables for one session", "max", maxSessionEnv)
		}
		sl.env = maxSessionEnv + 1 // log once
		return false
	}
	sl.env++
	return true
}

// requestBacklog is a session's requests waiting for its container: at most
// maxQueuedRequests of them and maxQueuedBytes of payload. A window-change
// replaces a window-change at the tail (only the last size matters), so a
// resize storm takes one place. A request over the bound is refused (false
// when it wants a reply; dropped when it does not).
type requestBacklog struct {
	q       []*gossh.Request
	bytes   int
	refused int
}

func (b *requestBacklog) len() int             { return len(b.q) }
func (b *requestBacklog) head() *gossh.Request { return b.q[0] }

func (b *requestBacklog) pop() {
	b.bytes -= len(b.q[0].Payload)
	b.q[0] = nil
	b.q = b.q[1:]
}

func (b *requestBacklog) push(st *connState, r *gossh.Request) {
	if n := len(b.q); n > 0 && r.Type == "window-change" && b.q[n-1].Type == "window-change" && !r.WantReply && !b.q[n-1].WantReply {
		b.bytes += len(r.Payload) - len(b.q[n-1].Payload)
		b.q[n-1] = r
		return
	}
	if len(b.q) >= maxQueuedRequests || b.bytes+len(r.Payload) > maxQueuedBytes {
		if b.refused == 0 {
			st.log.Info("request refused: too many requests while the container starts", "max", maxQueuedRequests)
		}
		b.refused++
		if r.WantReply {
			r.Reply(false, nil)
		}
		return
	}
	b.q = append(b.q, r)
	b.bytes += len(r.Payload)
}
