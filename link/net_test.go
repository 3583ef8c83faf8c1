package link_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/agent"
	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/link"
)

// serveTCPAgent runs an in-process agent on loopback TCP with host key
// hostKey, admitting the link client keys authorized.
func serveTCPAgent(t *testing.T, hostKey gossh.Signer, authorized ...gossh.PublicKey) string {
	t.Helper()
	l, err := agent.ListenTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &agent.Server{HostKey: hostKey, AuthorizedKeys: authorized, Home: t.TempDir(), Shell: "/bin/sh"}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return l.Addr().String()
}

// closeConn records whether DialConn closed the connection it was given.
type closeConn struct {
	net.Conn
	closed atomic.Bool
}

func (c *closeConn) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}

func dialTCP(t *testing.T, addr string) *closeConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &closeConn{Conn: c}
}

func dialConn(t *testing.T, addr string, hostKey gossh.PublicKey, client gossh.Signer) (*gossh.Client, *closeConn, error) {
	t.Helper()
	c := dialTCP(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := link.DialConn(ctx, c, hostKey, client, "test")
	if cl != nil {
		t.Cleanup(func() { cl.Close() })
	}
	if err != nil && !c.closed.Load() {
		t.Errorf("DialConn failed (%v) and left the connection open", err)
	}
	return cl, c, err
}

func TestDialConn(t *testing.T) {
	host, client := sshtest.NewSigner(t), sshtest.NewSigner(t)
	addr := serveTCPAgent(t, host, client.PublicKey())

	// A short deadline, and a cancel right after: neither may reach the
	// established link.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	cl, err := link.DialConn(ctx, dialTCP(t, addr), host.PublicKey(), client, "test")
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if v := string(cl.ServerVersion()); v != "SSH-2.0-sygaldry-agent" {
		t.Errorf("server version %q", v)
	}
	if v := string(cl.ClientVersion()); v != "SSH-2.0-sygaldry-link" {
		t.Errorf("client version %q", v)
	}
	if u := cl.User(); u != "sygaldry" {
		t.Errorf("user %q", u)
	}
	s, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// A deadline left on the connection would cut the session off here.
	out, err := s.Output("sleep 2.5; echo hi")
	if err != nil || string(out) != "hi\n" {
		t.Fatalf("exec over the link: %q, %v (want \"hi\", exit 0)", out, err)
	}
}

func TestDialConnRefused(t *testing.T) {
	host, client := sshtest.NewSigner(t), sshtest.NewSigner(t)
	addr := serveTCPAgent(t, host, client.PublicKey())

	t.Run("wrong client key", func(t *testing.T) {
		_, _, err := dialConn(t, addr, host.PublicKey(), sshtest.NewSigner(t))
		if err == nil {
			t.Fatal("a client key the agent does not authorize was admitted")
		}
		if errors.Is(err, link.ErrUntrusted) {
			t.Errorf("the agent is the right one, yet err = %v", err)
		}
	})
	t.Run("no client key", func(t *testing.T) {
		if _, _, err := dialConn(t, addr, host.PublicKey(), nil); err == nil {
			t.Fatal("dialled without a client key")
		}
	})
	t.Run("wrong host key", func(t *testing.T) {
		_, _, err := dialConn(t, addr, sshtest.NewSigner(t).PublicKey(), client)
		if !errors.Is(err, link.ErrUntrusted) {
			t.Fatalf("err = %v, want ErrUntrusted", err)
		}
	})
	t.Run("no host key", func(t *testing.T) {
		_, _, err := dialConn(t, addr, nil, client)
		if !errors.Is(err, link.ErrUntrusted) {
			t.Fatalf("err = %v, want ErrUntrusted", err)
		}
	})
}

// An agent that has no key of the pinned type is as wrong as one with
// another key of that type.
func TestDialConnHostKeyOfAnotherType(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	host, err := gossh.NewSignerFromKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	client := sshtest.NewSigner(t)
	addr := serveTCPAgent(t, host, client.PublicKey())
	_, _, err = dialConn(t, addr, sshtest.NewSigner(t).PublicKey(), client)
	if !errors.Is(err, link.ErrUntrusted) {
		t.Fatalf("err = %v, want ErrUntrusted", err)
	}
}

// A pinned RSA key is asked for with SHA-2 signatures (RFC 8332): an agent
// that refuses SHA-1 is reached.
func TestDialConnRSAHostKey(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := gossh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	host, err := gossh.NewSignerWithAlgorithms(rs.(gossh.AlgorithmSigner), []string{gossh.KeyAlgoRSASHA512, gossh.KeyAlgoRSASHA256})
	if err != nil {
		t.Fatal(err)
	}
	client := sshtest.NewSigner(t)
	addr := serveTCPAgent(t, host, client.PublicKey())
	if _, _, err := dialConn(t, addr, host.PublicKey(), client); err != nil {
		t.Fatal(err)
	}
}

// A server with several host keys is asked for the pinned one, not the one
// it or the client would prefer (x/crypto's clients prefer ECDSA).
func TestDialConnAsksForThePinnedKeyType(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecs, err := gossh.NewSignerFromKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	pinned, client := sshtest.NewSigner(t), sshtest.NewSigner(t)
	cfg := &gossh.ServerConfig{
		PublicKeyCallback: func(_ gossh.ConnMetadata, k gossh.PublicKey) (*gossh.Permissions, error) {
			if !bytes.Equal(k.Marshal(), client.PublicKey().Marshal()) {
				return nil, errors.New("not authorized")
			}
			return nil, nil
		},
	}
	cfg.AddHostKey(ecs)
	cfg.AddHostKey(pinned)
	a, b := tcpPair(t)
	served := make(chan error, 1)
	go func() {
		sc, chans, reqs, err := gossh.NewServerConn(b, cfg)
		if err == nil {
			go gossh.DiscardRequests(reqs)
			go func() {
				for range chans {
				}
			}()
			sc.Close()
		}
		served <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := link.DialConn(ctx, a, pinned.PublicKey(), client, "test")
	if err != nil {
		t.Fatal(err)
	}
	cl.Close()
	if err := <-served; err != nil {
		t.Fatalf("server: %v", err)
	}
}

// Without a pinned host key nothing is sent: the peer reads EOF at once.
func TestDialConnNoHostKeySendsNothing(t *testing.T) {
	a, b := tcpPair(t)
	_, err := link.DialConn(context.Background(), a, nil, sshtest.NewSigner(t), "test")
	if !errors.Is(err, link.ErrUntrusted) {
		t.Fatalf("err = %v, want ErrUntrusted", err)
	}
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(b)
	if err != nil || len(got) != 0 {
		t.Fatalf("the peer read %q, %v; want nothing, then EOF", got, err)
	}
}

// tcpPair is a connected loopback TCP pair (a handshake needs a real socket,
// not net.Pipe).
func tcpPair(t *testing.T) (*closeConn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a := dialTCP(t, l.Addr().String())
	b, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return a, b
}

// A peer that accepts and never speaks SSH must not hang DialConn: the
// handshake ends with ctx, by deadline or by cancellation.
func TestDialConnBoundedByContext(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 300*time.Millisecond)
		}},
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(300*time.Millisecond, cancel)
			return ctx, cancel
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := tcpPair(t)
			// The peer sends its version line and then nothing, so the
			// handshake waits for the key exchange.
			if _, err := b.Write([]byte("SSH-2.0-silent\r\n")); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := tc.ctx()
			defer cancel()
			start := time.Now()
			_, err := link.DialConn(ctx, a, sshtest.NewSigner(t).PublicKey(), sshtest.NewSigner(t), "test")
			if err == nil {
				t.Fatal("handshake with a silent peer succeeded")
			}
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want the context's", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("DialConn overran its context: %v", d)
			}
			if !a.closed.Load() {
				t.Error("the connection was left open")
			}
		})
	}
}
