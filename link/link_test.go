package link_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/agent"
	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
	"github.com/sygaldry/sygaldry/link"
)

func TestWaitReadyTimesOutWithoutAgent(t *testing.T) {
	sock := filepath.Join(testenv.ShortTempDir(t), link.SocketName)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := link.WaitReady(ctx, sock, selfPeer(t, nil))
	if !errors.Is(err, link.ErrNotReady) {
		t.Fatalf("err = %v, want ErrNotReady", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("WaitReady overran its context: %v", time.Since(start))
	}
}

// A socket that accepts but never speaks SSH must not hang Dial.
func TestDialBoundedByContext(t *testing.T) {
	sock := filepath.Join(testenv.ShortTempDir(t), link.SocketName)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := link.Dial(ctx, sock, selfPeer(t, nil)); err == nil {
		t.Fatal("handshake with a silent peer succeeded")
	}
}

// An agent that starts late is found as soon as its socket answers.
func TestWaitReadyFindsLateAgent(t *testing.T) {
	sock := filepath.Join(testenv.ShortTempDir(t), link.SocketName)
	signer := sshtest.NewSigner(t)
	srv := &agent.Server{HostKey: signer}
	t.Cleanup(func() { srv.Close() })
	go func() {
		time.Sleep(200 * time.Millisecond)
		l, err := agent.ListenUnix(sock)
		if err != nil {
			t.Error(err)
			return
		}
		srv.Serve(l)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := link.WaitReady(ctx, sock, selfPeer(t, signer.PublicKey()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Output("echo linked")
	if err != nil || string(out) != "linked\n" {
		t.Fatalf("exec over the link: %q %v", out, err)
	}
}
