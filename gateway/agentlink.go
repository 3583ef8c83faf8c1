package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/internal/fdpass"
	"github.com/sygaldry/sygaldry/internal/sshmsg"
	"github.com/sygaldry/sygaldry/internal/usererr"
	"github.com/sygaldry/sygaldry/link"
)

// agentLink is one link to a container's agent: the SSH connection and the
// descriptor socket next to it. An agent that accepts fdpass.SharedRequest
// gets one link per container, shared by every client connection to it, so
// an idle connection costs the gateway one SSH stack (the client's), not
// two; an agent that does not (one older than the request) gets one link
// per client connection, as before.
//
// On a shared link the gateway does what a link per connection did by
// itself: it routes the channels the agent opens to the connection that
// asked for them (a remote forward by the address or path it names, an
// agent-forwarding connection by the tag its session was given) and
// cancels a leaving connection's remote forwards.
type agentLink struct {
	s      *Server
	key    string // in s.links when shared
	t      Target
	cl     *gossh.Client
	fds    *link.FDs     // nil: the link carries the bytes
	shared bool          // the agent accepted fdpass.SharedRequest
	done   chan struct{} // closed when the link has ended

	// users are the connections attached, by their sequence number (the
	// tag of their agent-forwarding sessions); guarded by s.links.mu.
	users map[uint64]*connState

	mu      sync.Mutex
	routes  map[string]*connState // remote forward key → the connection that asked
	routed  chan struct{}         // closed and replaced when routes change
	pending int                   // forward requests on their way to the agent
}

// linkSet is the server's shared links by container, and the dials under
// way (one per container at a time).
type linkSet struct {
	mu      sync.Mutex
	m       map[string]*agentLink
	dialing map[string]chan struct{}
}

// linkKey names the container a link reaches: a container made anew under
// the same name has another pid namespace (and ID), so never meets the
// old one's link.
func linkKey(t Target) string {
	return strings.Join([]string{t.Name, t.Instance, t.SocketPath, t.Peer.ContainerID, t.Peer.PidNS.String()}, "\x00")
}

func (l *agentLink) alive() bool {
	select {
	case <-l.done:
		return false
	default:
		return true
	}
}

// attachLink gives st a link to t's agent: the container's shared link
// when one is up, or a new one.
func (s *Server) attachLink(ctx context.Context, st *connState, t Target) (*agentLink, error) {
	key := linkKey(t)
	for {
		s.links.mu.Lock()
		if l := s.links.m[key]; l != nil && l.alive() {
			l.users[st.seq] = st
			s.links.mu.Unlock()
			return l, nil
		}
		if wait := s.links.dialing[key]; wait != nil {
			s.links.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
		}
		dialed := make(chan struct{})
		if s.links.dialing == nil {
			s.links.dialing = map[string]chan struct{}{}
			s.links.m = map[string]*agentLink{}
		}
		s.links.dialing[key] = dialed
		s.links.mu.Unlock()

		l, err := st.dialAgent(ctx, t)
		if err == nil {
			l.start() // before any other connection can open channels on it
		}

		s.links.mu.Lock()
		delete(s.links.dialing, key)
		if err == nil {
			l.key = key
			l.users = map[uint64]*connState{st.seq: st}
			if l.shared {
				s.links.m[key] = l
			}
		}
		s.links.mu.Unlock()
		close(dialed)
		if err != nil {
			return nil, err
		}
		return l, nil
	}
}

// detach ends st's use of l: its remote forwards are cancelled in the
// container (the link outlives it), and the last user closes the link.
func (l *agentLink) detach(st *connState) {
	l.s.links.mu.Lock()
	delete(l.users, st.seq)
	last := len(l.users) == 0
	if last && l.s.links.m[l.key] == l {
		delete(l.s.links.m, l.key)
	}
	l.s.links.mu.Unlock()
	if last {
		l.cl.Close()
		if l.fds != nil {
			l.fds.Close()
		}
		return
	}
	// No reply is awaited: an agent that stopped answering must not hold
	// up the end of the connection. The agent takes global requests in
	// order, so a forward asked for later finds the port free.
	for _, req := range l.dropRoutes(st) {
		if _, _, err := l.cl.SendRequest(req.typ, false, req.payload); err != nil {
			return // the link is gone, and its forwards with it
		}
	}
}

// dialAgent connects to t's agent (the SSH link and, where the agent
// offers it, the descriptor socket) and asks whether the link may be
// shared.
func (st *connState) dialAgent(ctx context.Context, t Target) (*agentLink, error) {
	user, project := st.identity()
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var cl *gossh.Client
	var err error
	if t.Dial != nil {
		cl, err = t.Dial(dctx)
	} else {
		cl, err = link.WaitReady(dctx, t.SocketPath, t.Peer)
	}
	if errors.Is(err, link.ErrUntrusted) {
		// Somebody tampered with the container's link directory (a symlink
		// to another container's agent, a socket of another process): the
		// admin gets the details, the user one line, the socket nothing.
		st.log.Error("agent socket failed verification; nothing was sent to it", "user", user, "project", project, "container", t.Name, "err", err)
		return nil, usererr.Errorf("the agent of your %s container could not be verified, so nothing was sent to it; the administrator can find the details in the gateway log", project)
	}
	if err != nil {
		st.log.Error("link to agent", "container", t.Name, "err", err)
		return nil, usererr.Errorf("the %s container does not answer; try again, or ask an admin to check `sygctl containers`", project)
	}
	l := &agentLink{s: st.s, t: t, cl: cl, done: make(chan struct{})}
	if t.Dial == nil {
		l.fds = st.dialFDs(dctx, cl, t)
	}
	if !st.s.noSharedLink {
		ok, _, err := cl.SendRequest(fdpass.SharedRequest, true, nil)
		l.shared = ok && err == nil
	}
	st.log.Debug("link up", "container", t.Name, "descriptors", l.fds != nil, "shared", l.shared)
	return l, nil
}

// start serves the channels the agent opens until the link closes, then
// marks it done. One goroutine for the link's life.
func (l *agentLink) start() {
	// The agent opens none before the link is handed out: they answer
	// forwards and agent requests made on it.
	var ins []<-chan gossh.NewChannel
	for _, typ := range []string{"forwarded-tcpip", "forwarded-streamlocal@openssh.com", "auth-agent@openssh.com"} {
		ins = append(ins, l.cl.HandleChannelOpen(typ), l.cl.HandleChannelOpen(fdpass.ForwardedVariant(typ)))
	}
	l.s.wg.Add(1)
	go func() {
		defer l.s.wg.Done()
		defer close(l.done)
		defer l.recoverPanic()
		l.serveAgentChannels(ins) // returns once the link is gone
		l.cl.Wait()
		if l.fds != nil {
			l.fds.Close()
		}
	}()
}

// recoverPanic, deferred by the link's goroutine, turns a panic into the end
// of the link (its users' sessions end, and their next channel dials anew).
func (l *agentLink) recoverPanic() {
	if v := recover(); v != nil {
		l.s.log().Error("panic while serving a link to an agent; it is closed", "container", l.t.Name, "panic", v, "stack", string(debug.Stack()))
		l.cl.Close()
		if l.fds != nil {
			l.fds.Close()
		}
	}
}

// serveAgentChannels hands each channel the agent opens (remote forwards,
// agent-forwarding connections, and their descriptor variants) to the
// connection it belongs to. One goroutine serves all kinds, in the order
// they come: an idle connection should cost little.
func (l *agentLink) serveAgentChannels(ins []<-chan gossh.NewChannel) {
	cases := make([]reflect.SelectCase, len(ins))
	for i, in := range ins {
		cases[i] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(in)}
	}
	for live := len(cases); live > 0; {
		i, v, ok := reflect.Select(cases)
		if !ok {
			cases[i].Chan = reflect.Value{} // closed: ignored from now on
			live--
			continue
		}
		nc := v.Interface().(gossh.NewChannel)
		typ, extra := nc.ChannelType(), nc.ExtraData()
		base, isFD := fdpass.ForwardedBase(typ)
		var id uint64
		if isFD {
			if len(extra) < 8 {
				nc.Reject(gossh.Prohibited, "no descriptor id")
				continue
			}
			id, extra = binary.BigEndian.Uint64(extra), extra[8:]
		} else {
			base = typ
		}
		if err := decodeAgentChannel(base, l.clientExtra(base, extra)); err != nil {
			l.s.log().Warn("agent opened a malformed channel", "container", l.t.Name, "type", typ, "err", err)
			nc.Reject(gossh.ConnectionFailed, "malformed channel open")
			continue
		}
		st, extra, err := l.owner(base, extra)
		if err != nil {
			l.s.log().Warn("the container opened a channel no client connection asked for; refused", "container", l.t.Name, "type", typ, "err", err)
			nc.Reject(gossh.Prohibited, "no client connection asked for this")
			continue
		}
		l.dispatch(st, nc, base, isFD, id, extra)
	}
}

// dispatch hands one channel to the connection st it belongs to; a panic
// there ends st alone, not the link its container's other connections use,
// and the agent's open is refused (a no-op once it was answered).
func (l *agentLink) dispatch(st *connState, nc gossh.NewChannel, base string, isFD bool, id uint64, extra []byte) {
	defer func() {
		if v := recover(); v != nil {
			nc.Reject(gossh.ConnectionFailed, "internal error")
			st.s.panicked(st, "agent channels", v)
		}
	}()
	if isFD {
		st.agentChannelFD(nc, base, id, extra, l) // offload.go
		return
	}
	st.agentChannel(nc, base, extra, l)
}

// clientExtra is what of extra (after any descriptor id) the client is to
// see: on a shared link an agent-forwarding open ends in the session's tag.
func (l *agentLink) clientExtra(base string, extra []byte) []byte {
	if l.shared && base == "auth-agent@openssh.com" && len(extra) >= 8 {
		return extra[:len(extra)-8]
	}
	return extra
}

// routeWait bounds how long a forwarded connection waits for the route of
// a forward the agent granted a moment ago, whose reply the gateway is
// still passing on.
const routeWait = 2 * time.Second

// owner is the connection a channel of type base (the client's type) the
// agent opened belongs to, and the extra data the client is to see. On a
// connection's own link that is its one user; on a shared link a remote
// forward goes to the connection that asked for the listener it names,
// and an agent-forwarding connection to the one whose tag it carries.
func (l *agentLink) owner(base string, extra []byte) (*connState, []byte, error) {
	if !l.shared {
		l.s.links.mu.Lock()
		defer l.s.links.mu.Unlock()
		for _, st := range l.users {
			return st, extra, nil
		}
		return nil, nil, errors.New("the connection has ended")
	}
	switch base {
	case "auth-agent@openssh.com":
		if len(extra) != 8 {
			return nil, nil, errors.New("no session tag")
		}
		l.s.links.mu.Lock()
		st := l.users[binary.BigEndian.Uint64(extra)]
		l.s.links.mu.Unlock()
		if st == nil {
			return nil, nil, errors.New("the session's connection has ended")
		}
		return st, extra[8:], nil
	case "forwarded-tcpip", "forwarded-streamlocal@openssh.com":
		key, err := forwardedKey(base, extra)
		if err != nil {
			return nil, nil, err
		}
		deadline := time.NewTimer(routeWait)
		defer deadline.Stop()
		for {
			l.mu.Lock()
			st, changed, pending := l.routes[key], l.routedLocked(), l.pending
			l.mu.Unlock()
			if st != nil {
				return st, extra, nil
			}
			if pending == 0 {
				// No reply under way that could name it: nobody asked.
				return nil, nil, errors.New("no forward " + key)
			}
			select {
			case <-changed:
			case <-deadline.C:
				return nil, nil, errors.New("no forward " + key)
			case <-l.done:
				return nil, nil, errors.New("link closed")
			}
		}
	}
	return nil, nil, errors.New("not a channel the agent may open")
}

func (l *agentLink) routedLocked() chan struct{} {
	if l.routed == nil {
		l.routed = make(chan struct{})
	}
	return l.routed
}

// changedLocked wakes every owner waiting for a route.
func (l *agentLink) changedLocked() {
	if l.routed != nil {
		close(l.routed)
		l.routed = nil
	}
}

// forwardedKey is the remote forward a forwarded-* open names: "host:port"
// as the client asked for it (the bound port), or "unix:" + path, the
// agent's own keys.
func forwardedKey(base string, extra []byte) (string, error) {
	if err := decodeAgentChannel(base, extra); err != nil {
		return "", err
	}
	if base == "forwarded-tcpip" {
		var m sshmsg.ForwardedTCPIP
		sshmsg.Unmarshal(base, extra, &m)
		return net.JoinHostPort(m.Host, strconv.FormatUint(uint64(m.Port), 10)), nil
	}
	var m sshmsg.ForwardedStreamLocal
	sshmsg.Unmarshal(base, extra, &m)
	return "unix:" + m.Path, nil
}

// forwardRoute is the key of the remote forward a granted global request
// of typ (payload, and the reply's payload) sets up or cancels, and what
// cancels it; ok is false for a request that is not a remote forward.
func forwardRoute(typ string, payload, reply []byte) (key string, cancel forwardCancel, ok bool) {
	switch typ {
	case "tcpip-forward", "cancel-tcpip-forward":
		var m sshmsg.TCPIPForward
		if sshmsg.Unmarshal(typ, payload, &m) != nil {
			return "", forwardCancel{}, false
		}
		if m.Port == 0 && typ == "tcpip-forward" {
			var r sshmsg.TCPIPForwardReply
			if sshmsg.Unmarshal(typ, reply, &r) != nil {
				return "", forwardCancel{}, false
			}
			m.Port = r.Port
		}
		return net.JoinHostPort(m.Host, strconv.FormatUint(uint64(m.Port), 10)),
			forwardCancel{"cancel-tcpip-forward", gossh.Marshal(m)}, true
	case "streamlocal-forward@openssh.com", "cancel-streamlocal-forward@openssh.com":
		var m sshmsg.StreamLocalForward
		if sshmsg.Unmarshal(typ, payload, &m) != nil {
			return "", forwardCancel{}, false
		}
		return "unix:" + m.Path, forwardCancel{"cancel-streamlocal-forward@openssh.com", gossh.Marshal(m)}, true
	}
	return "", forwardCancel{}, false
}

// forwardCancel is the global request that cancels a remote forward.
type forwardCancel struct {
	typ     string
	payload []byte
}

// owns reports whether st may cancel the forward key on a shared link:
// only the connection that asked for it, as under sshd.
func (l *agentLink) owns(st *connState, key string) bool {
	if !l.shared {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.routes[key] == st
}

// asking marks a forward request on its way to the agent until the returned
// func runs (after its route is recorded): a forwarded connection for a
// route not yet known then waits for it.
func (l *agentLink) asking() (done func()) {
	l.mu.Lock()
	l.pending++
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		l.pending--
		l.changedLocked()
		l.mu.Unlock()
	}
}

// route records that the forward key is st's (set) or gone (!set).
func (l *agentLink) route(st *connState, key string, cancel forwardCancel, set bool) {
	if !l.shared {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.routes == nil {
		l.routes = map[string]*connState{}
	}
	if set {
		if st.forwards == nil {
			st.forwards = map[string]forwardCancel{}
		}
		l.routes[key] = st
		st.forwards[key] = cancel
	} else if l.routes[key] == st {
		delete(l.routes, key)
		delete(st.forwards, key)
	}
	l.changedLocked()
}

// dropRoutes forgets st's forwards and returns the requests that cancel
// them in the container.
func (l *agentLink) dropRoutes(st *connState) []forwardCancel {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []forwardCancel
	for key, c := range st.forwards {
		if l.routes[key] == st {
			delete(l.routes, key)
			out = append(out, c)
		}
	}
	st.forwards = nil
	l.changedLocked()
	return out
}

// tag is st's tag for its agent-forwarding sessions on a shared link.
func (st *connState) tag() []byte {
	return binary.BigEndian.AppendUint64(nil, st.seq)
}
