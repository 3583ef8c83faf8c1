package gateway_test

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// muteProxy forwards one client connection to the gateway until muted;
// from then on it drops what the gateway sends, so the client never sees
// (nor answers) a keepalive. gone is closed when the gateway closes its end.
type muteProxy struct {
	addr  string
	muted atomic.Bool
	gone  chan struct{}
}

func startMuteProxy(t *testing.T, gateway string) *muteProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := &muteProxy{addr: l.Addr().String(), gone: make(chan struct{})}
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		g, err := net.Dial("tcp", gateway)
		if err != nil {
			c.Close()
			return
		}
		go func() { io.Copy(g, c); g.(*net.TCPConn).CloseWrite() }()
		buf := make([]byte, 32<<10)
		for {
			n, err := g.Read(buf)
			if n > 0 && !p.muted.Load() {
				c.Write(buf[:n])
			}
			if err != nil {
				break
			}
		}
		close(p.gone)
		c.Close()
		g.Close()
	}()
	return p
}

// The gateway sends keepalives (keepalive_interval) and closes a
// connection whose client stopped answering keepalive_count_max of them in
// a row; a client that answers stays, however idle.
func TestKeepaliveClosesSilentClient(t *testing.T) {
	w := newInproc(t, true)
	w.setServer(t, "keepalive_interval = \"200ms\"\nkeepalive_count_max = 2")
	p := startMuteProxy(t, net.JoinHostPort(w.client.Host, w.client.Port))
	cl, err := dialGo(p.addr, "zephyr", w.client.Key.Signer)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	s, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := s.Output("echo up"); err != nil || string(out) != "up\n" {
		t.Fatalf("session: %q %v", out, err)
	}
	// Answered keepalives (x/crypto's client replies to every global
	// request) keep an idle connection: ten intervals pass.
	select {
	case <-p.gone:
		t.Fatal("the gateway closed a connection whose client answers its keepalives")
	case <-time.After(2 * time.Second):
	}
	p.muted.Store(true)
	start := time.Now()
	select {
	case <-p.gone:
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Fatalf("closed %v after the client went silent, before two keepalives could go unanswered", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway kept a connection whose client stopped answering keepalives")
	}
}
