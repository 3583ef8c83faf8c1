package agent

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/sygaldry/sygaldry/internal/ports"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// countServer answers each connection, after the client's EOF, with the
// number of bytes it read: it only works if half-close is propagated
// (the compat notes' hc.py).
func countServer(t *testing.T, network, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen(network, addr)
	must(t, err, "listen")
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				n, _ := io.Copy(io.Discard, c)
				fmt.Fprintf(c, "%d\n", n)
			}()
		}
	}()
	return ln
}

type closeWriter interface{ CloseWrite() error }

// halfCloseRoundTrip sends n bytes, half-closes, and reads the reply.
func halfCloseRoundTrip(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	_, err := c.Write(bytes.Repeat([]byte("x"), n))
	must(t, err, "write")
	cw, ok := c.(closeWriter)
	if !ok {
		t.Fatalf("%T cannot half-close", c)
	}
	must(t, cw.CloseWrite(), "close write")
	reply, err := io.ReadAll(c)
	must(t, err, "read reply")
	return string(reply)
}

func TestDirectTCPIPHalfClose(t *testing.T) {
	t.Parallel()
	c := startAgent(t).dial(t)
	ln := countServer(t, "tcp", "127.0.0.1:0")
	conn, err := c.Dial("tcp", ln.Addr().String())
	must(t, err, "direct-tcpip")
	defer conn.Close()
	if got := halfCloseRoundTrip(t, conn, 100000); got != "100000\n" {
		t.Fatalf("reply %q, want 100000", got)
	}
}

func TestDirectTCPIPDialFailureRejected(t *testing.T) {
	t.Parallel()
	c := startAgent(t).dial(t)
	// A port that was just free: connection refused.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	_, err := c.Dial("tcp", addr)
	var oce *ssh.OpenChannelError
	if !errors.As(err, &oce) || oce.Reason != ssh.ConnectionFailed || !strings.Contains(oce.Message, "connection refused") {
		t.Fatalf("err = %v, want ConnectionFailed with 'connection refused'", err)
	}
}

func TestDirectStreamLocalHalfClose(t *testing.T) {
	t.Parallel()
	e := startAgent(t)
	c := e.dial(t)
	path := filepath.Join(filepath.Dir(e.home), "t.sock")
	countServer(t, "unix", path)
	conn, err := c.Dial("unix", path)
	must(t, err, "direct-streamlocal")
	defer conn.Close()
	if got := halfCloseRoundTrip(t, conn, 5); got != "5\n" {
		t.Fatalf("reply %q, want 5", got)
	}
}

// serveForwarded accepts forwarded channels on the client side and runs the
// count protocol on them.
func serveForwarded(ln net.Listener) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				n, _ := io.Copy(io.Discard, c)
				fmt.Fprintf(c, "%d\n", n)
			}()
		}
	}()
}

func TestTCPIPForwardPortZeroAndCancel(t *testing.T) {
	t.Parallel()
	// GatewayPorts lets each run use a loopback address of its own, so a
	// port freed by the cancel cannot be taken by another test's listener
	// before the "not listening any more" check.
	c := startAgent(t, func(s *Server) { s.GatewayPorts = true }).dial(t)
	host := fmt.Sprintf("127.%d.%d.%d", 64+mrand.IntN(64), mrand.IntN(256), 1+mrand.IntN(254))
	ln, err := c.Listen("tcp", host+":0")
	must(t, err, "tcpip-forward")
	port := ln.Addr().(*net.TCPAddr).Port
	if port == 0 {
		t.Fatal("no port allocated")
	}
	serveForwarded(ln)
	// The agent listens "inside the container": here, this machine.
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", host, port), 5*time.Second)
	must(t, err, "dial forwarded port")
	if got := halfCloseRoundTrip(t, conn, 70000); got != "70000\n" {
		t.Fatalf("reply %q", got)
	}
	conn.Close()

	must(t, ln.Close(), "cancel-tcpip-forward")
	// No socket listens on exactly host:port any more. (A dial would not
	// tell: a listener of another process or test on 0.0.0.0 may take the
	// freed port, and a dial can connect to itself.) The agent closed it
	// before it replied; but a process another test forks at that moment
	// holds a copy of every descriptor until it execs, and the kernel keeps
	// the socket listening for those few milliseconds. A cancel that did
	// not close it keeps it for good.
	listening := func() bool {
		data, err := os.ReadFile("/proc/net/tcp")
		must(t, err, "read /proc/net/tcp")
		for _, s := range ports.ParseNetTCP(data, false) {
			if s.Addr.String() == host && int(s.Port) == port {
				return true
			}
		}
		return false
	}
	if !waitFor(2*time.Second, func() bool { return !listening() }) {
		t.Fatalf("%s:%d still listening after cancel", host, port)
	}
}

func TestTCPIPForwardClosedWithLink(t *testing.T) {
	t.Parallel()
	e := startAgent(t)
	c := e.dial(t)
	ln, err := c.Listen("tcp", "127.0.0.1:0")
	must(t, err, "tcpip-forward")
	port := ln.Addr().(*net.TCPAddr).Port
	c.Close()
	ok := waitFor(3*time.Second, func() bool {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
	if !ok {
		t.Fatal("forward listener outlived its link")
	}
}

func TestStreamLocalForward(t *testing.T) {
	t.Parallel()
	e := startAgent(t)
	c := e.dial(t)
	path := filepath.Join(filepath.Dir(e.home), "r.sock")
	ln, err := c.ListenUnix(path)
	must(t, err, "streamlocal-forward")
	fi, err := os.Stat(path)
	must(t, err, "forwarded socket")
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("forwarded socket mode %v, want 0600", fi.Mode().Perm())
	}
	serveForwarded(ln)
	conn, err := net.DialTimeout("unix", path, 5*time.Second)
	must(t, err, "dial forwarded socket")
	if got := halfCloseRoundTrip(t, conn, 12345); got != "12345\n" {
		t.Fatalf("reply %q", got)
	}
	conn.Close()
	must(t, ln.Close(), "cancel-streamlocal-forward")
	if _, err := net.DialTimeout("unix", path, time.Second); err == nil {
		t.Fatal("socket still answering after cancel")
	}
}

func TestShortNetError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&net.OpError{Op: "dial", Err: &net.DNSError{Name: "nohost"}}, "name resolution failed for nohost"},
		{fmt.Errorf("x: %w", errConnRefused()), "connection refused"},
		{errors.New("odd"), "connection failed"},
	} {
		if got := shortNetError(tc.err); got != tc.want {
			t.Errorf("shortNetError(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func errConnRefused() error {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	_, err := net.Dial("tcp", addr)
	return err
}
