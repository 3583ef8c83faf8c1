package gateway

import (
	"encoding/binary"
	"github.com/sygaldry/sygaldry/internal/ports"
	"github.com/sygaldry/sygaldry/internal/sshmsg"
	"github.com/sygaldry/sygaldry/internal/usererr"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/internal/fdpass"
	"github.com/sygaldry/sygaldry/sessions"
)

// handleChannel accepts a client channel and joins it to the same channel
// type on the link. Session channels are accepted first so that a slow
// container start can talk to the user on stderr; forwarding channels are
// accepted only once the agent accepted its twin, so a refused dial reaches
// the client as a refused open, as with sshd.
func (s *Server) handleChannel(_ *ssh.Server, conn *gossh.ServerConn, nc gossh.NewChannel, ctx ssh.Context) {
	defer s.recoverPanic(ctx, "channel "+nc.ChannelType())
	st := stateOf(ctx)
	if st == nil || conn.Permissions == nil || conn.Permissions.Extensions[extUser] == "" {
		nc.Reject(gossh.Prohibited, "not authenticated")
		return
	}
	if s.closing.Load() {
		nc.Reject(gossh.ResourceShortage, "gateway is shutting down")
		return
	}
	if !st.admitChannel(nc) { // recheck.go
		return
	}
	release, ok := st.openChannel(nc) // limits.go: max_sessions, max_forwards
	if !ok {
		return
	}
	defer release()
	st.touched() // a new channel is traffic (idledisconnect.go)
	st.chans.Add(1)
	defer st.chans.Done()
	if nc.ChannelType() == "session" {
		s.handleSession(st, nc)
		return
	}
	if !permitChannel(conn, nc) {
		return
	}

	l, err := st.getLink(st.life, io.Discard)
	if err != nil {
		nc.Reject(gossh.ConnectionFailed, usererr.Message(err))
		return
	}
	t := l.t
	if l.fds != nil {
		switch nc.ChannelType() {
		case "direct-tcpip", "direct-streamlocal@openssh.com":
			st.forwardFD(nc, l) // offload.go
			return
		}
	}
	ach, areqs, err := l.cl.OpenChannel(nc.ChannelType(), nc.ExtraData())
	if err != nil {
		rejectAs(nc, err)
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		ach.Close()
		return
	}
	st.proxy(nc.ChannelType(), ch, reqs, ach, areqs, t, func(_ *pipe, sess *sessions.Session) {
		sess.SetKind(nc.ChannelType(), forwardTarget(nc.ChannelType(), nc.ExtraData()))
	})
}

func (s *Server) handleSession(st *connState, nc gossh.NewChannel) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	// Requests must be read from now on: x/crypto's connection loop blocks
	// once a channel's 16-slot request queue is full, which would stall every
	// channel of the connection while the container starts.
	term := newTermMode() // termlines.go
	queue := st.queueRequests(reqs, term)

	l, err := st.getLink(st.life, term.writer(ch.Stderr()))
	if err != nil {
		io.WriteString(ch.Stderr(), term.line(usererr.Message(err), true))
		refuseAll(ch, queue.out)
		return
	}
	t := l.t
	ach, areqs, err := l.cl.OpenChannel("session", nil)
	if err != nil {
		st.log.Error("open session on link", "container", t.Name, "err", err)
		io.WriteString(ch.Stderr(), term.line("the "+t.Name+" container refused a new session; try again", true))
		refuseAll(ch, queue.out)
		return
	}
	// Ask the agent for the process's descriptors (offload.go): the bytes
	// then skip the link's second crypto hop.
	var off *offload
	if fds := l.fds; fds != nil {
		id := fds.Reserve()
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], id)
		if ok, err := ach.SendRequest(fdpass.IDRequest, true, b[:]); ok && err == nil {
			off = newOffload(fds, id, st.log.With("container", t.Name))
		} else {
			fds.Forget(id)
		}
	}
	// On a shared link the agent learns whose session it is, to tag the
	// session's agent-forwarding connections (agentlink.go).
	if l.shared {
		if ok, err := ach.SendRequest(fdpass.TagRequest, true, st.tag()); !ok || err != nil {
			st.log.Warn("the agent refused a session's tag; its agent forwarding will be refused", "container", t.Name, "err", err)
		}
	}
	// What sshd puts in every session's environment (the agent adds USER,
	// HOME, SHELL, ...). Sent before any client request, so before exec.
	user, project := st.identity()
	for _, kv := range [][2]string{
		{"SSH_CONNECTION", sshConnection(st.raw)},
		{"SSH_CLIENT", sshClient(st.raw)},
		{"SYGALDRY_USER", user},
		{"SYGALDRY_PROJECT", project},
		{ports.DestEnv, sshDest(st.raw, project)},
	} {
		if _, err := ach.SendRequest("env", false, gossh.Marshal(sshmsg.Env{Name: kv[0], Value: kv[1]})); err != nil {
			st.log.Warn("set session env", "name", kv[0], "err", err)
		}
	}
	accept := s.conf().Server.AcceptEnv
	queue.startDirect()
	st.proxy("session", ch, queue.out, ach, areqs, t, func(p *pipe, sess *sessions.Session) {
		p.session = true
		p.moreClientReqs = queue.rest
		p.term = term
		p.linkLost = l.done
		p.off = off
		caps := &sessionLimits{} // limits.go
		p.onRequest = func(req *gossh.Request) bool {
			term.note(req.Type) // again for one read past the queue
			ok := st.permitSessionRequest(ach, req) && observeRequest(st, sess, accept, req) && caps.allow(st, req)
			if ok {
				st.asked.note(req.Type) // asked.go
				st.loginBanner(ch, sess, req, t)
			}
			return ok
		}
		p.onExit = func(kind string, payload []byte) {
			switch kind {
			case "exit-status":
				if code, err := decodeExitStatus(payload); err == nil {
					sess.SetExit(&code, "")
				}
			case "exit-signal":
				if sig, err := decodeExitSignal(payload); err == nil {
					sess.SetExit(nil, sig)
				}
			}
		}
	})
}

// observeRequest records what a session is (shell, command, sftp) and applies
// the gateway's policy; it returns false to refuse the request.
func observeRequest(st *connState, sess *sessions.Session, accept []string, req *gossh.Request) bool {
	switch req.Type {
	case "env":
		e, err := decodeEnv(req.Payload)
		if err != nil {
			return false
		}
		if !acceptEnv(accept, e.Name) {
			st.log.Debug("env refused", "name", e.Name)
			return false
		}
	case "pty-req":
		sess.SetPTY()
	case "shell":
		sess.SetKind("shell", "")
	case "exec":
		command, err := decodeExec(req.Payload)
		if err != nil {
			return false
		}
		sess.SetKind("exec", st.s.recordedCommand(command))
	case "subsystem":
		name, err := decodeSubsystem(req.Payload)
		if err != nil {
			return false
		}
		kind := "subsystem"
		if name == "sftp" {
			kind = "sftp"
		}
		sess.SetKind(kind, name)
	case "x11-req":
		return false // no X11 channels are ever opened towards clients
	}
	return true
}

// refuseAll answers every queued request with failure and closes the
// channel, so the client exits instead of waiting for a reply.
func refuseAll(ch gossh.Channel, reqs <-chan *gossh.Request) {
	ch.Close()
	for req := range reqs {
		if req.WantReply {
			req.Reply(false, nil)
		}
	}
}

// requestQueue holds a session's requests while its container starts.
// x/crypto's connection loop blocks once a channel's 16-slot request queue
// is full, which would stall every channel of the connection meanwhile, so
// a goroutine moves them off at once into a bounded backlog
// (requestBacklog, limits.go) and hands them on in order. Once the
// consumer runs (direct) and the backlog is empty, the goroutine ends and
// the consumer reads the rest straight from x/crypto (rest): an open
// session keeps no goroutine for it.
type requestQueue struct {
	out    chan *gossh.Request
	in     <-chan *gossh.Request
	direct chan struct{}
	handed atomic.Bool // the relay ended with in still open: read it (rest)
}

// queueRequests starts moving in's requests off x/crypto's queue.
func (st *connState) queueRequests(in <-chan *gossh.Request, term *termMode) *requestQueue {
	rq := &requestQueue{out: make(chan *gossh.Request), in: in, direct: make(chan struct{})}
	go func() {
		defer close(rq.out)
		defer st.recoverPanic("request queue")
		var q requestBacklog
		direct := rq.direct
		for in != nil || q.len() > 0 {
			if direct == nil && q.len() == 0 {
				rq.handed.Store(true)
				return
			}
			var send chan *gossh.Request
			var head *gossh.Request
			if q.len() > 0 {
				send, head = rq.out, q.head()
			}
			select {
			case r, ok := <-in:
				if !ok {
					in = nil
					continue
				}
				term.note(r.Type)
				q.push(st, r)
			case send <- head:
				q.pop()
			case <-direct:
				direct = nil
			}
		}
	}()
	return rq
}

// startDirect tells the relay that the consumer runs: it ends once the
// backlog is delivered.
func (rq *requestQueue) startDirect() { close(rq.direct) }

// rest is what to read once out is closed: the channel's own queue when
// the relay handed it over, nil when the channel's requests ended.
func (rq *requestQueue) rest() <-chan *gossh.Request {
	if rq.handed.Load() {
		return rq.in
	}
	return nil
}

// sshConnection is OpenSSH's SSH_CONNECTION: client ip, port, server ip, port.
func sshConnection(c net.Conn) string {
	rh, rp := hostPort(c.RemoteAddr())
	lh, lp := hostPort(c.LocalAddr())
	return strings.Join([]string{rh, rp, lh, lp}, " ")
}

// sshDest is how this client reaches this project, as ssh arguments
// ("-p 2222 zephyr@10.0.0.5", the address the client connected to), for
// the ready-to-paste ssh -L lines of `sygaldry ports` and the login banner.
func sshDest(c net.Conn, project string) string {
	lh, lp := hostPort(c.LocalAddr())
	return "-p " + lp + " " + project + "@" + lh
}

// sshClient is OpenSSH's SSH_CLIENT: client ip, client port, server port.
func sshClient(c net.Conn) string {
	rh, rp := hostPort(c.RemoteAddr())
	_, lp := hostPort(c.LocalAddr())
	return strings.Join([]string{rh, rp, lp}, " ")
}

func hostPort(a net.Addr) (string, string) {
	h, p, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String(), "0"
	}
	return h, p
}

// forwardTarget describes where a forwarding channel goes, for the registry.
func forwardTarget(typ string, extra []byte) string {
	switch typ {
	case "direct-tcpip":
		if d, err := decodeDirectTCPIP(extra); err == nil {
			return net.JoinHostPort(d.Host, strconv.Itoa(int(d.Port)))
		}
	case "direct-streamlocal@openssh.com":
		if d, err := decodeDirectStreamLocal(extra); err == nil {
			return d.Path
		}
	}
	return ""
}

// handleGlobalForward passes remote-forward requests (-R) to the agent,
// which listens inside the container; the reply (the bound port when 0 was
// asked) comes back unchanged.
func (s *Server) handleGlobalForward(ctx ssh.Context, _ *ssh.Server, req *gossh.Request) (bool, []byte) {
	defer s.recoverPanic(ctx, "global request "+req.Type)
	st := stateOf(ctx)
	if st == nil || !st.isAuthenticated() || s.closing.Load() {
		return false, nil
	}
	if !st.admitRequest(req.Type) { // recheck.go
		return false, nil
	}
	if !permitGlobal(st.sshConn(), req.Type) {
		return false, nil
	}
	counted, ok := st.forwardRequest(req.Type) // limits.go: max_forwards
	if !ok {
		return false, nil
	}
	replied, granted := true, false
	defer func() { counted(replied, granted) }()
	l, err := st.getLink(st.life, io.Discard)
	if err != nil {
		return false, nil
	}
	// On a shared link a connection cancels only its own forwards, as
	// under sshd (agentlink.go).
	key, cancel, isRoute := forwardRoute(req.Type, req.Payload, nil)
	cancelling := isRoute && cancel.typ == req.Type
	if cancelling && !l.owns(st, key) {
		return false, nil
	}
	// The route is asked for: the reply must come back to learn an
	// allocated port, even when the client wants none.
	done := l.asking()
	defer done()
	granted, payload, err := l.cl.SendRequest(req.Type, req.WantReply || l.shared, req.Payload)
	if err != nil {
		st.log.Warn("forward request to agent", "type", req.Type, "err", err)
		granted = false
		return false, nil
	}
	replied = req.WantReply
	if granted {
		st.asked.note(req.Type) // asked.go
		if key, cancel, ok := forwardRoute(req.Type, req.Payload, payload); ok {
			l.route(st, key, cancel, !cancelling)
		}
	}
	return granted, payload
}

// rejectAs refuses nc the way the other side refused its twin, so the
// client sees the real reason ("connect failed: connection refused").
func rejectAs(nc gossh.NewChannel, err error) {
	if oce, ok := err.(*gossh.OpenChannelError); ok {
		nc.Reject(oce.Reason, oce.Message)
		return
	}
	nc.Reject(gossh.ConnectionFailed, "the other side refused the channel")
}
