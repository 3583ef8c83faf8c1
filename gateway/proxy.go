package gateway

import (
	"context"
	"github.com/sygaldry/sygaldry/internal/usererr"
	"io"
	"sync"
	"sync/atomic"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// pipe is one client channel joined to its twin on the link. Data, extended
// data, requests, EOF and CLOSE pass through unchanged, in the order the SSH
// clients depend on (RFC 4254 §6.10, reference/openssh-compat.md §0.5):
//
//	all stdout and stderr → exit-status/exit-signal → EOF → CLOSE
//
// x/crypto hands a channel's data and its requests to us on separate queues,
// so an exit-status from the agent can overtake output still buffered on the
// link. The pipe therefore holds every exit-* request until both output
// copies have drained, and (for sessions) holds EOF until the exit-* request
// went out, as sshd does.
type pipe struct {
	client     gossh.Channel
	clientReqs <-chan *gossh.Request
	// moreClientReqs, when set, is where the client's requests continue once
	// clientReqs is closed (nil: they ended); see requestQueue.
	moreClientReqs func() <-chan *gossh.Request
	agent          gossh.Channel
	agentReqs      <-chan *gossh.Request

	// session is true for "session" channels: EOF waits for exit-status.
	session bool
	// term says how the gateway's own lines end on a session (termlines.go).
	term *termMode
	// onRequest sees every client request before it is forwarded; it returns
	// false to refuse it (env allowlist) without asking the agent.
	onRequest func(req *gossh.Request) bool
	// onExit sees the exit-status or exit-signal payload.
	onExit func(kind string, payload []byte)
	// linkLost is closed when the link to the agent is gone (container
	// stopped or killed): a session that ends without an exit status then
	// tells the user why.
	linkLost <-chan struct{}

	bytesIn, bytesOut atomic.Int64 // client→agent, agent→client
	activity          func()       // called on traffic; may be nil

	// off is set when the agent hands the session's descriptors over
	// (offload.go); nil: the link carries the bytes.
	off *offload

	// panicked gets a panic recovered in one of the pipe's goroutines (it
	// ends the connection); nil: the panic goes on.
	panicked func(where string, v any)
	// hook is a test hook (hookPoint); may be nil.
	hook func(point string)
}

// run proxies until both sides have closed or ctx is cancelled. A cancelled
// ctx (admin kill, shutdown, lost container) writes its cause to the client's
// stderr when the channel is a session, then closes both sides.
func (p *pipe) run(ctx context.Context) {
	var wg sync.WaitGroup
	outDone := make(chan struct{}) // both agent→client copies finished
	var eofOnce sync.Once
	sendEOF := func() { eofOnce.Do(func() { p.client.CloseWrite() }) }

	// agent → client: stdout and stderr, to the end. The last output copy
	// to finish marks the output done (no goroutine waits for them).
	outWG := &countdown{fn: func() {
		close(outDone)
		if !p.session {
			// A forwarded connection is half-closed at once: the other
			// direction may still be talking.
			sendEOF()
		}
	}}
	linkOutputs := func() {
		outWG.Add(2)
		go func() {
			defer outWG.Done()
			p.copy(p.client, p.agent, &p.bytesOut)
		}()
		go func() {
			defer outWG.Done()
			p.copy(p.client.Stderr(), p.agent.Stderr(), &p.bytesOut)
		}()
	}
	if p.off != nil {
		// The descriptors' own output copies join outWG once they arrive
		// (offload.go), or the link's if none come; until then the output
		// is not done. A session with descriptors never reads the link's
		// (empty) data, which saves two goroutines and their buffers.
		outWG.Add(1)
		p.off.start(p, outWG, linkOutputs)
	} else {
		linkOutputs()
	}

	// client → agent: stdin until the client's EOF, then half-close. With
	// descriptors, stdin goes to the process's stdin or terminal instead.
	inDone := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(inDone)
		if p.off != nil && p.off.input(p) {
			return
		}
		p.copy(p.agent, p.client, &p.bytesIn)
		p.agent.CloseWrite()
	}()

	// client requests → agent, replies back. When the client closes the
	// channel its request queue closes: tell the agent, which hangs up the
	// processes (no orphans).
	clientGone := make(chan struct{})
	var replied sync.Mutex // held while a client request waits for its reply
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(clientGone)
		defer p.recoverPanic("client requests")
		if p.off != nil {
			defer p.off.settle(nil, 0) // no start came: no descriptors
		}
		for reqs := p.clientReqs; reqs != nil; {
			req, ok := <-reqs
			if !ok {
				reqs = nil
				if more := p.moreClientReqs; more != nil {
					p.moreClientReqs = nil
					reqs = more()
				}
				continue
			}
			p.point("client-request")
			if p.onRequest != nil && !p.onRequest(req) {
				if req.WantReply {
					req.Reply(false, nil)
				}
				continue
			}
			if p.off != nil && p.off.local(req) { // window-change on our pty master
				continue
			}
			// Held until the client has its reply: an exit-status or a close
			// from the agent (a command that ends at once) must not
			// overtake the reply to the exec that started it.
			replied.Lock()
			ok, err := p.agent.SendRequest(req.Type, req.WantReply, req.Payload)
			if req.WantReply {
				req.Reply(ok && err == nil, nil)
			}
			replied.Unlock()
			if p.off != nil && ok && err == nil {
				p.off.started(ctx, req.Type) // collects the process's descriptors
			}
		}
		if !p.session {
			// A forward's client may write, send EOF and close at once
			// (the far side had already half-closed, as with -R): what
			// it sent is still buffered here, and is delivered before
			// the other side is closed, within a bound.
			select {
			case <-inDone:
			case <-time.After(closedChannelDrain):
			}
		}
		if p.off != nil {
			// The client closed the channel: hang the process up the way
			// sshd does, by closing its stdio, before the agent signals it.
			p.off.close()
		}
		p.agent.Close()
	}()

	// agent requests → client, exit-* only after the output has drained.
	agentGone := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(agentGone)
		defer p.recoverPanic("agent requests")
		exited := false
		for req := range p.agentReqs {
			switch req.Type {
			case "exit-status", "exit-signal":
				exited = true
				if p.off != nil {
					p.off.exited() // a pty drains for a moment, then stops
				}
				<-outDone
				replied.Lock() // the reply that started it went out first
				replied.Unlock()
				if p.onExit != nil {
					p.onExit(req.Type, req.Payload)
				}
			}
			ok, err := p.client.SendRequest(req.Type, req.WantReply, req.Payload)
			if req.WantReply {
				req.Reply(ok && err == nil, nil)
			}
		}
		// The agent closed its side: everything it sent has been queued.
		if p.off != nil {
			p.off.settle(nil, 0)
			p.off.exited()
		}
		<-outDone
		if p.session && !exited && p.linkLost != nil {
			select {
			case <-p.linkLost:
				io.WriteString(p.client.Stderr(), p.term.line("lost the connection to your container (it was stopped or removed)", false))
			case <-time.After(200 * time.Millisecond):
			}
		}
		replied.Lock()
		replied.Unlock()
		sendEOF()
		p.client.Close()
	}()

	select {
	case <-agentGone:
	case <-clientGone:
	case <-ctx.Done():
		if p.session {
			if msg := usererr.Message(context.Cause(ctx)); msg != "" {
				io.WriteString(p.client.Stderr(), p.term.line(msg, false))
			}
		}
		if p.off != nil {
			p.off.close()
		}
		p.agent.Close()
		p.client.Close()
	}
	// Whichever side ended first, the other is closed by the goroutines
	// above once its queue closes; closing both again is harmless and makes
	// sure no copy stays blocked on a peer that stopped reading.
	<-agentGone
	p.client.Close()
	<-clientGone
	p.agent.Close()
	if p.off != nil {
		p.off.close()
	}
	wg.Wait()
	<-outDone
}

// countdown is a WaitGroup whose waiter is a callback: fn runs once, in the
// goroutine whose Done brings the count back to zero. As with a WaitGroup,
// every Add happens before the Done it balances.
type countdown struct {
	n  atomic.Int64
	fn func()
}

func (c *countdown) Add(d int) { c.n.Add(int64(d)) }

func (c *countdown) Done() {
	if c.n.Add(-1) == 0 {
		c.fn()
	}
}

// closedChannelDrain bounds the delivery of what a forward's client sent
// before it closed the channel.
const closedChannelDrain = 10 * time.Second

// copy moves bytes until EOF or error, counting them. It holds no large
// buffer while the source is quiet (bufpool.go).
func (p *pipe) copy(dst io.Writer, src io.Reader, n *atomic.Int64) {
	defer p.recoverPanic("copy")
	p.point("copy")
	chunks := newChunkReader(src)
	for {
		chunk, release, err := chunks.next()
		if k := len(chunk); k > 0 {
			n.Add(int64(k))
			if p.activity != nil {
				p.activity()
			}
			if _, werr := dst.Write(chunk); werr != nil {
				release()
				// The reader side must still be drained, or the peer's
				// window never reopens and its writer blocks forever.
				io.Copy(io.Discard, src)
				return
			}
		}
		release()
		if err != nil {
			return
		}
	}
}

func (p *pipe) point(name string) {
	if p.hook != nil {
		p.hook(name)
	}
}
