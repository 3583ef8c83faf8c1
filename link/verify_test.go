package link_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/agent"
	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
	"github.com/sygaldry/sygaldry/link"
)

// selfPeer is the peer an agent run by this test process proves to be.
func selfPeer(t *testing.T, key gossh.PublicKey) link.Peer {
	t.Helper()
	ns, err := link.PidNSOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return link.Peer{Container: "test", PidNS: ns, HostKey: key}
}

// countingListener counts the connections the agent accepted: a refused
// socket must not even be connected to... except where the check needs the
// connection (peer credentials, the host key), and then nothing is sent.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// serveAgent runs an in-process agent with key on dir/name.
func serveAgent(t *testing.T, dir, name string, key gossh.Signer) (string, *countingListener) {
	t.Helper()
	sock := filepath.Join(dir, name)
	l, err := agent.ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: l}
	srv := &agent.Server{HostKey: key}
	go srv.Serve(cl)
	t.Cleanup(func() { srv.Close() })
	return sock, cl
}

func dialQuick(sock string, want link.Peer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := link.WaitReady(ctx, sock, want)
	if c != nil {
		c.Close()
	}
	return err
}

func TestDialVerifiesThePeer(t *testing.T) {
	dir := testenv.ShortTempDir(t)
	mine, other := sshtest.NewSigner(t), sshtest.NewSigner(t)
	minePath, mineL := serveAgent(t, dir, "mine.sock", mine)
	otherDir := testenv.ShortTempDir(t)
	otherPath, otherL := serveAgent(t, otherDir, link.SocketName, other)
	want := selfPeer(t, mine.PublicKey())

	if err := dialQuick(minePath, want); err != nil {
		t.Fatalf("the right agent was refused: %v", err)
	}

	rel, err := filepath.Rel(dir, otherPath)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		setup func(sock string) // makes sock
		// reached: whether the bad socket's listener may see a connection
		// (a socket has to be connected to read its peer's credentials).
		reached bool
	}{
		{"relative symlink to another agent", func(sock string) { must(t, os.Symlink(rel, sock)) }, false},
		{"absolute symlink to another agent", func(sock string) { must(t, os.Symlink(otherPath, sock)) }, false},
		{"hard link", func(sock string) { must(t, os.Link(minePath, sock)) }, false},
		{"regular file", func(sock string) { must(t, os.WriteFile(sock, nil, 0o600)) }, false},
		{"fifo", func(sock string) { must(t, syscall.Mkfifo(sock, 0o600)) }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sock := filepath.Join(dir, link.SocketName)
			os.Remove(sock)
			c.setup(sock)
			before := otherL.n.Load()
			start := time.Now()
			err := dialQuick(sock, want)
			if !errors.Is(err, link.ErrUntrusted) {
				t.Fatalf("err = %v, want ErrUntrusted", err)
			}
			if time.Since(start) > 2*time.Second {
				t.Errorf("a tampered socket took %v to refuse; it must not be waited on", time.Since(start))
			}
			if otherL.n.Load() != before {
				t.Errorf("the other container's agent was connected to")
			}
		})
	}

	t.Run("another agent's socket in place", func(t *testing.T) {
		// The path is a real socket, but its agent has another key.
		err := dialQuick(otherPath, want)
		if !errors.Is(err, link.ErrUntrusted) {
			t.Fatalf("err = %v, want ErrUntrusted", err)
		}
	})
	t.Run("listener in another pid namespace", func(t *testing.T) {
		w := want
		w.PidNS.Ino++
		err := dialQuick(minePath, w)
		if !errors.Is(err, link.ErrUntrusted) {
			t.Fatalf("err = %v, want ErrUntrusted", err)
		}
	})
	t.Run("no pid namespace to check", func(t *testing.T) {
		err := dialQuick(minePath, link.Peer{HostKey: mine.PublicKey()})
		if !errors.Is(err, link.ErrUntrusted) {
			t.Fatalf("err = %v, want ErrUntrusted", err)
		}
	})
	_ = mineL
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestDialChecksTheContainerCgroup(t *testing.T) {
	dir := testenv.ShortTempDir(t)
	key := sshtest.NewSigner(t)
	sock, _ := serveAgent(t, dir, link.SocketName, key)
	want := selfPeer(t, key.PublicKey())
	// This test process is in no container with that ID.
	want.ContainerID = "b77bc4eb2b6a6c735e749c0e57af4b97181185d8bdf1452faaada7dd06b3701c"
	if err := dialQuick(sock, want); !errors.Is(err, link.ErrUntrusted) {
		t.Fatalf("err = %v, want ErrUntrusted", err)
	}
}
