package gateway

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/internal/sshtest"
)

// sshPair is an SSH connection over loopback TCP (a real handshake, never
// net.Pipe): the client side and the server side's incoming channels.
func sshPair(t *testing.T) (gossh.Conn, <-chan gossh.NewChannel) {
	t.Helper()
	signer := sshtest.NewSigner(t)
	scfg := &gossh.ServerConfig{NoClientAuth: true}
	scfg.AddHostKey(signer)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type srvSide struct {
		chans <-chan gossh.NewChannel
		conn  gossh.Conn
		err   error
	}
	got := make(chan srvSide, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- srvSide{err: err}
			return
		}
		sc, chans, reqs, err := gossh.NewServerConn(c, scfg)
		if err == nil {
			go gossh.DiscardRequests(reqs)
		}
		got <- srvSide{chans, sc, err}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cc, _, creqs, err := gossh.NewClientConn(c, "x", &gossh.ClientConfig{User: "u", HostKeyCallback: gossh.InsecureIgnoreHostKey()})
	if err != nil {
		t.Fatal(err)
	}
	go gossh.DiscardRequests(creqs)
	s := <-got
	if s.err != nil {
		t.Fatal(s.err)
	}
	t.Cleanup(func() { cc.Close(); s.conn.Close() })
	return cc, s.chans
}

// The agent writes a lot, then at once exit-status, EOF and CLOSE. The
// client reads slowly, so most of the output is still on its way when the
// exit-status reaches the gateway. Every byte must arrive, then the status.
func TestPipeExitStatusAfterAllOutput(t *testing.T) {
	const size = 8 << 20
	payload := bytes.Repeat([]byte("0123456789abcdef"), size/16)

	// "agent" side: a server that runs the program.
	gwToAgent, agentChans := sshPair(t)
	go func() {
		for nc := range agentChans {
			ch, reqs, _ := nc.Accept()
			go gossh.DiscardRequests(reqs)
			go func() {
				ch.Write(payload)
				ch.Stderr().Write([]byte("bye\n"))
				ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, 7))
				ch.CloseWrite()
				ch.Close()
			}()
		}
	}()
	// "client" side: the user's SSH client talking to the gateway.
	userConn, gwChans := sshPair(t)

	go func() {
		nc := <-gwChans
		client, clientReqs, _ := nc.Accept()
		agent, agentReqs, err := gwToAgent.OpenChannel("session", nil)
		if err != nil {
			t.Error(err)
			return
		}
		p := &pipe{client: client, clientReqs: clientReqs, agent: agent, agentReqs: agentReqs, session: true}
		p.run(context.Background())
	}()

	ch, reqs, err := userConn.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	var status = -1
	var order []string
	reqDone := make(chan struct{})
	var stdout, stderr bytes.Buffer
	stdoutDone := make(chan struct{})
	go func() {
		defer close(stdoutDone)
		buf := make([]byte, 4096)
		for {
			time.Sleep(50 * time.Microsecond) // a slow reader: the window fills up
			n, err := ch.Read(buf)
			stdout.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	go func() {
		defer close(reqDone)
		for r := range reqs {
			if r.Type == "exit-status" {
				status = int(binary.BigEndian.Uint32(r.Payload))
				// All output must have been sent before the status: it is
				// either read already or sitting in the channel's buffer.
				order = append(order, "exit-status")
			}
		}
	}()
	io.Copy(&stderr, ch.Stderr())
	select {
	case <-stdoutDone:
	case <-time.After(60 * time.Second):
		t.Fatal("stdout never ended")
	}
	<-reqDone
	if stdout.Len() != size || !bytes.Equal(stdout.Bytes(), payload) {
		t.Errorf("stdout: %d bytes, want %d", stdout.Len(), size)
	}
	if stderr.String() != "bye\n" {
		t.Errorf("stderr %q", stderr.String())
	}
	if status != 7 || len(order) != 1 {
		t.Errorf("exit-status %d (%v), want 7 once", status, order)
	}
}

// A request storm before the command must not stall the connection:
// requests are taken off x/crypto's bounded queue at once, in order, and
// the backlog stays bounded (limits.go): a window-change storm collapses to
// its last size, other requests stop at maxQueuedRequests.
func TestQueueRequestsNeverBlocksProducer(t *testing.T) {
	st := &connState{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	in := make(chan *gossh.Request)
	out := st.queueRequests(in, newTermMode()).out
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 1000 {
			in <- &gossh.Request{Type: "window-change", Payload: []byte{byte(i >> 8), byte(i)}}
		}
		for i := range 1000 {
			in <- &gossh.Request{Type: "env", Payload: []byte{byte(i >> 8), byte(i)}}
		}
		close(in)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("producer blocked while nobody consumed")
	}
	var got []*gossh.Request
	for r := range out {
		got = append(got, r)
	}
	if len(got) != 1+maxQueuedRequests-1 {
		t.Fatalf("got %d requests, want 1 window-change and %d env", len(got), maxQueuedRequests-1)
	}
	if got[0].Type != "window-change" || got[0].Payload[0] != 999>>8 || got[0].Payload[1] != 999&0xff {
		t.Errorf("first request %s %v, want the last window-change", got[0].Type, got[0].Payload)
	}
	for i, r := range got[1:] {
		if r.Type != "env" || int(r.Payload[0])<<8|int(r.Payload[1]) != i {
			t.Fatalf("request %d: %s %v out of order", i, r.Type, r.Payload)
		}
	}
}

// Once the consumer runs (startDirect), the queue delivers its backlog,
// then its goroutine ends and the consumer reads the channel's own queue
// (rest): nothing is lost or reordered at the handover, and an open
// session keeps no relay goroutine.
func TestQueueRequestsHandsOver(t *testing.T) {
	st := &connState{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	in := make(chan *gossh.Request)
	q := st.queueRequests(in, newTermMode())
	send := func(from, to int) {
		for i := from; i < to; i++ {
			in <- &gossh.Request{Type: "env", Payload: []byte{byte(i)}}
		}
	}
	send(0, 10) // queued while "the container starts"
	q.startDirect()
	go func() { send(10, 40); close(in) }()
	var got []int
	for reqs := (<-chan *gossh.Request)(q.out); reqs != nil; {
		r, ok := <-reqs
		if !ok {
			if reqs == q.out {
				reqs = q.rest()
				continue
			}
			break
		}
		got = append(got, int(r.Payload[0]))
	}
	if len(got) != 40 {
		t.Fatalf("got %d requests, want 40: %v", len(got), got)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("request %d is %d: out of order: %v", i, v, got)
		}
	}

	// Handed over with the channel still open: the relay is gone.
	in2 := make(chan *gossh.Request)
	q2 := st.queueRequests(in2, newTermMode())
	q2.startDirect()
	select {
	case _, ok := <-q2.out:
		if ok {
			t.Fatal("a request out of nowhere")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the relay did not hand over an empty backlog")
	}
	if q2.rest() == nil {
		t.Fatal("handed over, but rest is nil")
	}
	close(in2)
}

func TestAcceptEnv(t *testing.T) {
	pats := []string{"LANG", "LC_*", "TZ"}
	for name, want := range map[string]bool{
		"LANG": true, "LC_ALL": true, "LC_": true, "TZ": true,
		"LANGUAGE": false, "LD_PRELOAD": false, "BASH_ENV": false, "PATH": false, "": false,
	} {
		if got := acceptEnv(pats, name); got != want {
			t.Errorf("acceptEnv(%q) = %v", name, got)
		}
	}
}
