package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"github.com/sygaldry/sygaldry/internal/sshmsg"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/sygaldry/sygaldry/internal/fdpass"
	"github.com/sygaldry/sygaldry/link"
	"github.com/sygaldry/sygaldry/sessions"
)

// offload is a session whose process's stdio the agent hands over
// (internal/fdpass): the pipe copies between the client's channel and those
// descriptors itself, so each byte is encrypted once, as under sshd. The
// link channel still carries the requests, signals and the exit status;
// the pipe's ordering (all output, then exit-*, then EOF, then CLOSE) holds
// because the output copies below count in the pipe's outWG.
type offload struct {
	fds   *link.FDs
	id    uint64
	log   *slog.Logger
	drain time.Duration // pty output after the exit, like the agent's PTYDrain

	p           *pipe
	outWG       *countdown
	linkOutputs func() // starts the copies of the link channel's output

	settleOnce sync.Once
	ready      chan struct{} // closed once it is known whether descriptors came

	mu     sync.Mutex
	files  []*os.File // stdin, stdout, stderr; or the pty master alone
	pty    bool
	closed bool

	exitOnce sync.Once
	exit     chan struct{} // closed when the agent reported the exit
}

// waitFDs bounds the wait for descriptors after the agent accepted a start.
// They are sent before the agent's reply, so they are normally there at once.
const waitFDs = 10 * time.Second

// defaultPTYDrain is how long pty output still flows after the process
// exited while a background job keeps the terminal open (agent.PTYDrain).
const defaultPTYDrain = 100 * time.Millisecond

func newOffload(fds *link.FDs, id uint64, log *slog.Logger) *offload {
	return &offload{fds: fds, id: id, log: log, drain: defaultPTYDrain,
		ready: make(chan struct{}), exit: make(chan struct{})}
}

// start binds o to its pipe; outWG already counts o's pending outputs.
// linkOutputs is what runs instead when no descriptors come.
func (o *offload) start(p *pipe, outWG *countdown, linkOutputs func()) {
	o.p, o.outWG, o.linkOutputs = p, outWG, linkOutputs
}

// started collects the descriptors after the agent accepted a start
// request (shell, exec, subsystem).
func (o *offload) started(ctx context.Context, typ string) {
	switch typ {
	case "shell", "exec", "subsystem":
	default:
		return
	}
	select {
	case <-o.ready:
		return
	default:
	}
	kind, files, err := o.fds.Wait(ctx, o.id, waitFDs, fdpass.Pipes, fdpass.PTY, fdpass.Declined)
	if err != nil {
		o.log.Warn("the agent did not hand over the session's descriptors", "err", err)
		o.settle(nil, 0)
		return
	}
	o.settle(files, kind)
}

// settle records what came (files nil: nothing, the link carries the
// bytes) and starts the output copies. Only the first call counts; files of
// a later one are closed.
func (o *offload) settle(files []*os.File, kind fdpass.Kind) {
	used := false
	o.settleOnce.Do(func() {
		used = true
		o.mu.Lock()
		if o.closed {
			fdpass.CloseAll(files)
			files = nil
		}
		if len(files) > 0 {
			o.files, o.pty = files, kind == fdpass.PTY
			o.outputs()
		} else {
			o.linkOutputs()
		}
		o.mu.Unlock()
		o.outWG.Done()
		close(o.ready)
	})
	if !used {
		fdpass.CloseAll(files)
	}
}

// outputs starts the copies from the process to the client; o.mu is held.
func (o *offload) outputs() {
	p := o.p
	if o.pty {
		o.outWG.Add(1)
		go func() {
			defer o.outWG.Done()
			o.copyPTY(o.files[0])
		}()
		return
	}
	o.outWG.Add(2)
	out, errOut := o.files[1], o.files[2]
	go func() {
		defer o.outWG.Done()
		p.copy(p.client, out, &p.bytesOut)
	}()
	go func() {
		defer o.outWG.Done()
		p.copy(p.client.Stderr(), errOut, &p.bytesOut)
	}()
}

// copyPTY forwards terminal output until the slave side is gone (EIO) or,
// once the process exited, until nothing came for o.drain: a background job
// (`setsid sleep 100 &`) may keep the terminal open, and the session must
// end like under sshd anyway.
func (o *offload) copyPTY(master *os.File) {
	p := o.p
	defer p.recoverPanic("pty output")
	chunks := newChunkReader(master) // holds no buffer while quiet (bufpool.go)
	for {
		select {
		case <-o.exit:
			master.SetReadDeadline(time.Now().Add(o.drain))
		default:
		}
		chunk, release, err := chunks.next()
		if n := len(chunk); n > 0 {
			p.bytesOut.Add(int64(n))
			if p.activity != nil {
				p.activity()
			}
			_, werr := p.client.Write(chunk)
			release()
			if werr != nil {
				return
			}
		} else {
			release()
		}
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			select {
			case <-o.exit:
				return
			default:
			}
		default: // EIO: no slave left; ErrClosed: hung up
			return
		}
	}
}

// input copies the client's data to the process and reports true, or
// reports false when no descriptors came (the link carries stdin).
func (o *offload) input(p *pipe) bool {
	<-o.ready
	o.mu.Lock()
	files, pty := o.files, o.pty
	o.mu.Unlock()
	if files == nil {
		return false
	}
	p.copy(files[0], p.client, &p.bytesIn)
	if !pty {
		// Client EOF closes stdin, so cat, sort and sha256sum finish; the
		// output keeps flowing (half-close). A terminal has no half-close:
		// at the client's EOF we just stop writing, like sshd.
		files[0].Close()
	}
	return true
}

// local handles a request the gateway answers itself: window-change on a
// pty master it holds (the kernel sends SIGWINCH to the foreground job).
func (o *offload) local(req *gossh.Request) bool {
	if req.Type != "window-change" {
		return false
	}
	select {
	case <-o.ready:
	default:
		return false // not started: the agent still holds the terminal
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.pty || o.closed {
		return false
	}
	ok := resizePTY(o.files[0], req.Payload) == nil
	if req.WantReply {
		req.Reply(ok, nil)
	}
	return true
}

func resizePTY(master *os.File, payload []byte) error {
	var w sshmsg.WindowChange
	if err := sshmsg.Unmarshal("window-change", payload, &w); err != nil {
		return err
	}
	clamp := func(v uint32) uint16 { return uint16(min(v, 0xffff)) }
	ws := &unix.Winsize{Row: clamp(w.Rows), Col: clamp(w.Cols), Xpixel: clamp(w.Width), Ypixel: clamp(w.Height)}
	rc, err := master.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) { ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, ws) }); err != nil {
		return err
	}
	return ierr
}

// exited marks the process's exit: a pty read that is blocked gets the
// drain bound.
func (o *offload) exited() {
	o.exitOnce.Do(func() {
		close(o.exit)
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.pty && !o.closed {
			o.files[0].SetReadDeadline(time.Now().Add(o.drain))
		}
	})
}

// close releases the descriptors: for a client that went away this is the
// hangup (pipe writers get EPIPE, a terminal is hung up), as under sshd.
func (o *offload) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return
	}
	o.closed = true
	fdpass.CloseAll(o.files)
}

// forwardFD serves a direct-tcpip or direct-streamlocal channel whose socket
// the agent dials inside the container and hands over (fdpass.DirectTCPIP):
// the gateway then copies between the client's channel and the socket,
// with no second crypto hop. A refused dial reaches the client as the same
// refused open as before.
func (st *connState) forwardFD(nc gossh.NewChannel, l *agentLink) {
	fds, t := l.fds, l.t
	typ := fdpass.DirectTCPIP
	if nc.ChannelType() == "direct-streamlocal@openssh.com" {
		typ = fdpass.DirectStreamLocal
	}
	id := fds.Reserve()
	extra := binary.BigEndian.AppendUint64(nil, id)
	ach, areqs, err := l.cl.OpenChannel(typ, append(extra, nc.ExtraData()...))
	if err != nil {
		fds.Forget(id)
		rejectAs(nc, err)
		return
	}
	go gossh.DiscardRequests(areqs)
	ach.Close()
	sc, err := takeSocket(st.life, fds, id)
	if err != nil {
		st.log.Warn("the agent did not hand over a forward's socket", "container", t.Name, "err", err)
		nc.Reject(gossh.ConnectionFailed, "connect failed: the container did not hand the connection over")
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		sc.Close()
		return
	}
	st.proxy(nc.ChannelType(), ch, reqs, sc, sc.done, t, func(_ *pipe, sess *sessions.Session) {
		sess.SetKind(nc.ChannelType(), forwardTarget(nc.ChannelType(), nc.ExtraData()))
	})
}

// takeSocket collects the connected socket the agent sent under id
// (fdpass.Conn, checked by link.FDs) as a socketChannel.
func takeSocket(ctx context.Context, fds *link.FDs, id uint64) (*socketChannel, error) {
	_, files, err := fds.Wait(ctx, id, waitFDs, fdpass.Conn)
	if err != nil {
		return nil, err
	}
	conn, err := net.FileConn(files[0])
	files[0].Close()
	if err != nil {
		return nil, err
	}
	return newSocketChannel(conn), nil
}

// socketChannel lets a pipe join a client channel to a socket as if the
// socket were the agent's channel: reads and writes go to the socket, and
// done (the "request queue") closes once both directions have ended, the
// moment an agent would have closed its channel.
type socketChannel struct {
	conn net.Conn

	mu                sync.Mutex
	readEOF, wroteEOF bool
	closed            bool
	done              chan *gossh.Request
}

func newSocketChannel(c net.Conn) *socketChannel {
	return &socketChannel{conn: c, done: make(chan *gossh.Request)}
}

func (s *socketChannel) Read(b []byte) (int, error) {
	n, err := s.conn.Read(b)
	if err != nil {
		s.mu.Lock()
		s.readEOF = true
		s.finishLocked()
		s.mu.Unlock()
	}
	return n, err
}

func (s *socketChannel) Write(b []byte) (int, error) { return s.conn.Write(b) }

// CloseWrite half-closes the socket: the client sent EOF.
func (s *socketChannel) CloseWrite() error {
	type closeWriter interface{ CloseWrite() error }
	var err error
	if cw, ok := s.conn.(closeWriter); ok {
		err = cw.CloseWrite()
	}
	s.mu.Lock()
	s.wroteEOF = true
	s.finishLocked()
	s.mu.Unlock()
	return err
}

func (s *socketChannel) Close() error {
	err := s.conn.Close()
	s.mu.Lock()
	s.readEOF, s.wroteEOF = true, true
	s.finishLocked()
	s.mu.Unlock()
	return err
}

func (s *socketChannel) finishLocked() {
	if s.readEOF && s.wroteEOF && !s.closed {
		s.closed = true
		close(s.done)
	}
}

// SendRequest: a socket takes no requests.
func (s *socketChannel) SendRequest(string, bool, []byte) (bool, error) { return false, nil }

// Stderr: a socket has no extended data.
func (s *socketChannel) Stderr() io.ReadWriter { return eofReadWriter{} }

type eofReadWriter struct{}

func (eofReadWriter) Read([]byte) (int, error)    { return 0, io.EOF }
func (eofReadWriter) Write(b []byte) (int, error) { return len(b), nil }

// agentChannelFD serves a descriptor variant of a channel the agent opened
// (fdpass.ForwardedTCPIP and friends): the same checks as agentChannel on
// the base type and payload, a twin towards the client, then the socket the
// agent accepted in the container, copied to the client's channel.
func (st *connState) agentChannelFD(nc gossh.NewChannel, base string, id uint64, extra []byte, l *agentLink) {
	fds, t := l.fds, l.t
	if fds == nil {
		nc.Reject(gossh.Prohibited, "no descriptor connection")
		return
	}
	if !fds.ReserveAgent(id) {
		st.log.Warn("the container opened a channel with a descriptor id that is not its own or is in use; refused", "type", nc.ChannelType())
		nc.Reject(gossh.Prohibited, "bad descriptor id")
		return
	}
	ch, reqs, ok := st.openTowardsClient(nc, base, extra)
	if !ok {
		fds.Forget(id)
		return
	}
	ach, areqs, err := nc.Accept()
	if err != nil {
		fds.Forget(id)
		ch.Close()
		return
	}
	go gossh.DiscardRequests(areqs)
	st.chans.Add(1)
	go func() {
		defer st.chans.Done()
		defer st.recoverPanic("agent channel " + base)
		sc, err := takeSocket(st.life, fds, id)
		ach.Close()
		if err != nil {
			st.log.Warn("the agent did not hand over an accepted connection", "type", base, "err", err)
			ch.Close()
			return
		}
		st.proxy(base, ch, reqs, sc, sc.done, t, nil)
	}()
}
