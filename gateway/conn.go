package gateway

import (
	"context"
	"errors"
	"github.com/sygaldry/sygaldry/internal/usererr"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/link"
	"github.com/sygaldry/sygaldry/sessions"
)

// connState is one client connection: its authentication state, its link to
// the agent (attached on the first channel or forward request, used by every
// channel of the connection, and shared with the container's other
// connections where the agent allows it: agentlink.go) and the cleanup that
// runs when it ends.
type connState struct {
	s      *Server
	ctx    ssh.Context
	raw    net.Conn
	seq    uint64 // the N of id; the tag of its agent-forwarding sessions on a shared link
	id     string
	log    *slog.Logger
	start  time.Time
	grace  *time.Timer
	authed atomic.Bool

	// startup is the handshake slot until authentication (prelogin.go);
	// limits, what the connection holds open (limits.go).
	startup startupHold
	limits  connLimits

	mu       sync.Mutex
	linking  chan struct{} // non-nil while a link is being made
	link     *agentLink
	target   Target
	acquired bool
	chans    channelCount
	// forwards are the remote forwards the connection holds on a shared
	// link, to cancel when it leaves; guarded by link.mu (agentlink.go).
	forwards map[string]forwardCancel

	// life is the parent of every channel's context. end cancels it with a
	// cause its users are told (revoked access, admin kill, panic); it is
	// cancelled too when the connection closes.
	life    context.Context
	endLife context.CancelCauseFunc
	ending  atomic.Bool
	// entry is the connection's row in the session registry, from
	// authentication on (nil before).
	entry atomic.Pointer[sessions.Session]
	// perms are the permissions of the login, from the moment it was
	// authorized (before the handshake ends and sshConn has them), for
	// re-checks (recheck.go).
	perms atomic.Pointer[gossh.Permissions]
	// asked is what the client asked for on this connection (asked.go).
	asked askedFor
	// traffic is when a channel of the connection last carried data or
	// opened (unix nanoseconds), for idle_disconnect (idledisconnect.go).
	traffic atomic.Int64
	timers  connTimers
}

// newConnState registers a new connection with s until its run ends.
func newConnState(s *Server, ctx ssh.Context, c net.Conn) *connState {
	// "c<N>": connection IDs never look like the numeric session IDs, so
	// `sygctl sessions kill ID` knows which one it was given.
	seq := s.connSeq.Add(1)
	id := "c" + strconv.FormatUint(seq, 10)
	st := &connState{
		s:     s,
		ctx:   ctx,
		raw:   c,
		seq:   seq,
		id:    id,
		log:   s.log().With("conn", id, "remote", c.RemoteAddr().String()),
		start: time.Now(),
	}
	st.life, st.endLife = context.WithCancelCause(ctx)
	s.conns.add(st)
	return st
}

// channelCount is a WaitGroup that also says how many are open.
type channelCount struct {
	wg sync.WaitGroup
	n  atomic.Int64
}

func (c *channelCount) Add(d int)   { c.n.Add(int64(d)); c.wg.Add(d) }
func (c *channelCount) Done()       { c.n.Add(-1); c.wg.Done() }
func (c *channelCount) Wait()       { c.wg.Wait() }
func (c *channelCount) open() int64 { return c.n.Load() }

// connSet is the server's live connections, for Reload to re-check.
type connSet struct {
	mu sync.Mutex
	m  map[*connState]struct{}
}

func (cs *connSet) add(st *connState) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.m == nil {
		cs.m = map[*connState]struct{}{}
	}
	cs.m[st] = struct{}{}
}

func (cs *connSet) remove(st *connState) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	delete(cs.m, st)
}

func (cs *connSet) list() []*connState {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	out := make([]*connState, 0, len(cs.m))
	for st := range cs.m {
		out = append(out, st)
	}
	return out
}

func (st *connState) authenticated() {
	if st.authed.CompareAndSwap(false, true) {
		st.grace.Stop()
		st.startup.release(st.s)
		st.s.metrics.authDelta(1)
	}
}

func (st *connState) isAuthenticated() bool { return st.authed.Load() }

// sshConn is the connection after its handshake (nil before).
func (st *connState) sshConn() *gossh.ServerConn {
	c, _ := st.ctx.Value(ssh.ContextKeyConn).(*gossh.ServerConn)
	return c
}

func (st *connState) identity() (user, project string) {
	c := st.sshConn()
	if c == nil || c.Permissions == nil {
		return "", ""
	}
	return c.Permissions.Extensions[extUser], c.Permissions.Extensions[extProject]
}

// run sets the connection up from accept to close without a goroutine of
// its own while it lives (an idle connection should cost little): timers
// send keepalives and check idle_disconnect, and when the connection's life
// ends (it closed, or the gateway ended it: end) finish runs.
func (st *connState) run() {
	st.touched()
	st.s.wg.Add(1)
	st.timers.mu.Lock()
	if d := st.s.conf().Server.KeepaliveInterval.D; d > 0 {
		st.timers.keepalive = time.AfterFunc(d, st.keepaliveTick)
	}
	st.timers.idle = time.AfterFunc(st.idleCheckIn(), st.idleTick)
	st.timers.mu.Unlock()
	context.AfterFunc(st.life, st.finish)
}

// finish closes the connection when the gateway ended it (once its
// channels told their users), waits for it to close, then releases the
// link and the container reference.
func (st *connState) finish() {
	defer st.s.wg.Done()
	defer st.recoverPanic("connection")
	defer st.s.conns.remove(st)
	st.timers.mu.Lock()
	for _, t := range []*time.Timer{st.timers.keepalive, st.timers.idle} {
		if t != nil {
			t.Stop()
		}
	}
	st.timers.mu.Unlock()
	if st.ending.Load() {
		st.closeAfterChannels()
	}
	<-st.ctx.Done()
	st.endLife(nil)
	if e := st.entry.Load(); e != nil {
		st.s.sessions.EndConn(e)
	}
	if !st.authed.Load() {
		st.grace.Stop()
		st.startup.release(st.s)
		return
	}
	st.s.metrics.authDelta(-1)
	st.chans.Wait()
	st.mu.Lock()
	l, target, acquired := st.link, st.target, st.acquired
	st.link, st.acquired = nil, false
	st.mu.Unlock()
	if l != nil {
		l.detach(st)
	}
	if acquired {
		st.s.containers.Release(target.Name)
	}
	user, project := st.identity()
	st.log.Info("connection closed", "user", user, "project", project, "duration", time.Since(st.start).Round(time.Millisecond))
}

// connTimers are a connection's keepalive and idle_disconnect timers and
// the keepalive state, guarded by mu.
type connTimers struct {
	mu        sync.Mutex
	keepalive *time.Timer // nil: no keepalives (interval 0 at accept)
	idle      *time.Timer
	waiting   bool // a keepalive went out and no reply has come yet
	missed    int  // ticks in a row that found a keepalive unanswered
}

// keepaliveTick sends keepalive@openssh.com every interval while the
// connection lives and closes it after KeepaliveCountMax ticks in a row
// that find the last one unanswered (sshd's ClientAliveInterval/CountMax).
// Any reply, even a failure, proves life. The request waits for its reply
// in a goroutine of its own, which ends with the reply or the connection.
func (st *connState) keepaliveTick() {
	defer st.recoverPanic("keepalive")
	if st.life.Err() != nil {
		return
	}
	cfg := st.s.conf().Server
	c := st.sshConn()
	st.timers.mu.Lock()
	defer st.timers.mu.Unlock()
	if c != nil {
		if !st.timers.waiting {
			st.timers.missed = 0
		} else if st.timers.missed++; st.timers.missed >= cfg.KeepaliveCountMax {
			st.log.Info("closing connection: client stopped answering keepalives", "missed", st.timers.missed)
			c.Close()
			return
		}
		st.timers.waiting = true
		go func() {
			defer st.recoverPanic("keepalive")
			if _, _, err := c.SendRequest("keepalive@openssh.com", true, nil); err != nil {
				return // connection gone
			}
			st.timers.mu.Lock()
			st.timers.waiting = false
			st.timers.mu.Unlock()
		}()
	}
	if d := cfg.KeepaliveInterval.D; d > 0 && st.life.Err() == nil {
		st.timers.keepalive.Reset(d)
	}
}

// idleTick ends the connection after idle_disconnect without channel
// traffic (idledisconnect.go), checking again a fraction of it later.
func (st *connState) idleTick() {
	defer st.recoverPanic("idle check")
	if st.life.Err() != nil || st.idleExpired() {
		return
	}
	st.timers.mu.Lock()
	defer st.timers.mu.Unlock()
	if st.life.Err() == nil {
		st.timers.idle.Reset(st.idleCheckIn())
	}
}

// getLink returns the connection's link to the agent, ensuring the container
// first. Concurrent callers share one attempt; a failed attempt is retried
// by the next caller. progress receives the user-facing lines of a slow
// start (image build, container creation).
func (st *connState) getLink(ctx context.Context, progress io.Writer) (*agentLink, error) {
	for {
		st.mu.Lock()
		if st.link != nil {
			l := st.link
			st.mu.Unlock()
			return l, nil
		}
		if wait := st.linking; wait != nil {
			st.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
		}
		done := make(chan struct{})
		st.linking = done
		st.mu.Unlock()

		l, err := st.dial(ctx, progress)

		st.mu.Lock()
		st.linking = nil
		if err == nil {
			st.link, st.target = l, l.t
			if e := st.entry.Load(); e != nil {
				e.SetContainer(l.t.Name)
			}
		}
		st.mu.Unlock()
		close(done)
		if err != nil {
			return nil, err
		}
	}
}

// dial ensures the container, holds a reference on it for the connection's
// life, and attaches the connection to a link to its agent.
func (st *connState) dial(ctx context.Context, progress io.Writer) (*agentLink, error) {
	user, project := st.identity()
	if user == "" {
		return nil, usererr.Errorf("not authenticated")
	}
	p, ok := st.s.conf().Project(project)
	if !ok {
		return nil, usererr.Errorf("project %q is no longer configured", project)
	}
	start := time.Now()
	t, err := st.s.containers.Ensure(ctx, p, user, progress)
	st.s.metrics.ensured(start, err)
	if err != nil {
		st.log.Error("ensure container", "user", user, "project", project, "err", err)
		if usererr.Message(err) == "" {
			// The details belong in the log above, not in a user's terminal.
			err = usererr.New("your container could not be started; the administrator can find the details in the gateway log", err)
		}
		return nil, err
	}
	st.mu.Lock()
	if !st.acquired {
		st.s.containers.Acquire(t.Name)
		st.acquired = true
		st.target = t
	}
	st.mu.Unlock()
	return st.s.attachLink(ctx, st, t) // agentlink.go
}

// dialFDs opens the agent's descriptor socket, so sessions and forwards
// skip the link's second crypto hop (internal/fdpass). Without it (an agent
// older than the protocol, or a socket that fails verification) the link
// carries the bytes, as before; the user notices nothing but speed.
func (st *connState) dialFDs(ctx context.Context, l *gossh.Client, t Target) *link.FDs {
	if st.s.noFDPass {
		return nil
	}
	start := time.Now()
	fds, err := link.DialFDs(ctx, t.SocketPath, t.Peer, l, st.log.With("container", t.Name))
	switch {
	case err == nil:
		st.log.Debug("descriptor socket up", "container", t.Name, "took", time.Since(start))
		return fds
	case errors.Is(err, link.ErrNoFDs):
		st.log.Debug("agent passes no descriptors; the link carries the bytes", "container", t.Name)
	case errors.Is(err, link.ErrUntrusted):
		st.log.Error("descriptor socket failed verification; nothing was taken from it, the link carries the bytes", "container", t.Name, "err", err)
	default:
		st.log.Warn("descriptor socket unusable; the link carries the bytes", "container", t.Name, "err", err)
	}
	return nil
}

// agentChannel checks one channel the agent opened on l as typ (the
// client's extra data: extra) and joins it to the client.
func (st *connState) agentChannel(nc gossh.NewChannel, typ string, extra []byte, l *agentLink) {
	ch, reqs, ok := st.openTowardsClient(nc, typ, extra)
	if !ok {
		return
	}
	ach, areqs, err := nc.Accept()
	if err != nil {
		ch.Close()
		return
	}
	st.chans.Add(1)
	go func() {
		defer st.chans.Done()
		defer st.recoverPanic("agent channel " + typ)
		st.proxy(typ, ch, reqs, ach, areqs, l.t, nil)
	}()
}

// openTowardsClient runs the checks on a channel the agent opened as typ
// with extra (the connection is still admitted, the key permits it, the
// client asked for it, the payload is well formed) and opens its twin
// towards the client. On any refusal nc is rejected and ok is false.
func (st *connState) openTowardsClient(nc gossh.NewChannel, typ string, extra []byte) (gossh.Channel, <-chan *gossh.Request, bool) {
	if !st.admitAgentChannel(nc, typ) { // typ: the plain type, also for a descriptor variant
		return nil, nil, false
	}
	c := st.sshConn()
	if c == nil {
		nc.Reject(gossh.ConnectionFailed, "client gone")
		return nil, nil, false
	}
	if !permitAgentChannel(c, typ) {
		nc.Reject(gossh.Prohibited, "not permitted for this key")
		return nil, nil, false
	}
	if !st.asked.covers(typ) { // asked.go
		st.log.Warn("the container opened a channel the client did not ask for; refused", "type", typ)
		nc.Reject(gossh.Prohibited, "the client did not ask for this")
		return nil, nil, false
	}
	if !st.wellFormedAgentChannel(nc, typ, extra) { // payloads.go
		return nil, nil, false
	}
	ch, reqs, err := c.OpenChannel(typ, extra)
	if err != nil {
		rejectAs(nc, err)
		return nil, nil, false
	}
	return ch, reqs, true
}

// proxy runs one pipe, registered in the session registry for its life.
func (st *connState) proxy(kind string, client gossh.Channel, clientReqs <-chan *gossh.Request,
	agent gossh.Channel, agentReqs <-chan *gossh.Request, t Target, setup func(*pipe, *sessions.Session)) {
	user, project := st.identity()
	ctx, cancel := context.WithCancelCause(st.life)
	defer cancel(nil)
	sess := st.s.sessions.Add(sessions.Info{
		Conn: st.id, User: user, Project: project, Container: t.Name,
		RemoteAddr: st.raw.RemoteAddr().String(), Kind: kind,
	}, cancel)
	p := &pipe{client: client, clientReqs: clientReqs, agent: agent, agentReqs: agentReqs,
		activity: func() { sess.Touch(); st.touched() },
		panicked: func(where string, v any) { st.s.panicked(st, where, v) },
		hook:     func(point string) { hookPoint(point, project) }}
	sess.CountBytes(&p.bytesIn, &p.bytesOut)
	if setup != nil {
		setup(p, sess)
	}
	start := time.Now()
	p.run(ctx)
	reason := "closed"
	if c := context.Cause(ctx); c != nil && c != context.Canceled {
		reason = c.Error()
	}
	st.s.sessions.End(sess, reason)
	if e := st.entry.Load(); e != nil {
		e.Touch()
	}
	in := sess.Info()
	st.s.metrics.sessionEnded(in)
	st.log.Info("channel closed", "session", in.ID, "kind", in.Kind, "command", in.Command,
		"bytes_in", in.BytesIn, "bytes_out", in.BytesOut, "duration", time.Since(start).Round(time.Millisecond))
}
