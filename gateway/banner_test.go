package gateway_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/gateway"
	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
	"github.com/sygaldry/sygaldry/link"
)

// noticeContainers is one container, served by a scripted agent whose
// shells and commands print "hello" and exit 0, and whose LoginNotice is
// notice (the container manager's for a container that lost its GPUs).
type noticeContainers struct {
	target gateway.Target
	notice string
}

func (n *noticeContainers) Ensure(context.Context, config.Resolved, string, io.Writer) (gateway.Target, error) {
	return n.target, nil
}
func (*noticeContainers) Acquire(string)                         {}
func (*noticeContainers) Release(string)                         {}
func (n *noticeContainers) LoginNotice(string) string            { return n.notice }
func (n *noticeContainers) setNotice(s string) *noticeContainers { n.notice = s; return n }

func startScriptedAgent(t *testing.T) *noticeContainers {
	t.Helper()
	dir := testenv.ShortTempDir(t)
	host := sshtest.NewKey(t, dir, "agent-host-key")
	ns, err := link.PidNSOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, link.SocketName)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	cfg := &gossh.ServerConfig{NoClientAuth: true}
	cfg.AddHostKey(host.Signer)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serveScripted(c, cfg)
		}
	}()
	return &noticeContainers{target: gateway.Target{Name: "sygaldry-zephyr-alice", SocketPath: sock,
		Peer: link.Peer{Container: "sygaldry-zephyr-alice", PidNS: ns, HostKey: host.Signer.PublicKey()}}}
}

func serveScripted(c net.Conn, cfg *gossh.ServerConfig) {
	sc, chans, reqs, err := gossh.NewServerConn(c, cfg)
	if err != nil {
		c.Close()
		return
	}
	defer sc.Close()
	go gossh.DiscardRequests(reqs)
	for nc := range chans {
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer ch.Close()
			for r := range creqs {
				r.Reply(true, nil)
				if r.Type == "shell" || r.Type == "exec" {
					ch.Write([]byte("hello\r\n"))
					ch.SendRequest("exit-status", false, gossh.Marshal(struct{ Status uint32 }{0}))
					return
				}
			}
		}()
	}
}

// sessionOutput runs a session of the given kind and returns its stdout.
func sessionOutput(t *testing.T, cl *gossh.Client, pty bool, command string) string {
	t.Helper()
	s, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out bytes.Buffer
	s.Stdout = &out
	if pty {
		if err := s.RequestPty("xterm", 24, 80, gossh.TerminalModes{}); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		if command == "" {
			if err := s.Shell(); err != nil {
				done <- err
				return
			}
			done <- s.Wait()
			return
		}
		done <- s.Run(command)
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("session: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("session did not end")
	}
	return out.String()
}

// An interactive login (a shell with a pty) into a container with a notice
// (one that lost its GPUs) starts with that notice as one line before the
// shell's output; commands and shells without a pty get their output
// untouched, and so does every session when there is nothing to say.
func TestLoginBannerNotice(t *testing.T) {
	const notice = "this container lost access to its GPUs"
	for _, tc := range []struct {
		name    string
		notice  string
		pty     bool
		command string
		want    string
	}{
		{"pty shell", notice, true, "", "sygaldry: " + notice + "\r\nhello\r\n"},
		{"pty shell, nothing to say", "", true, "", "hello\r\n"},
		{"shell without pty", notice, false, "", "hello\r\n"},
		{"command with pty", notice, true, "nvidia-smi", "hello\r\n"},
		{"command", notice, false, "nvidia-smi", "hello\r\n"},
		{"notice with control bytes", "lost\x1b[2J\nGPUs", true, "", "sygaldry: lost [2J GPUs\r\nhello\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := startScriptedAgent(t).setNotice(tc.notice)
			addr, alice, _ := bareGateway(t, "", cs)
			cl, err := dialGo(addr, "zephyr", alice.Signer)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			if got := sessionOutput(t, cl, tc.pty, tc.command); got != tc.want {
				t.Errorf("stdout %q, want %q", got, tc.want)
			}
		})
	}
}
