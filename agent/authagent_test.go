package agent

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/sygaldry/sygaldry/internal/fdpass"
)

func TestAgentForwarding(t *testing.T) {
	t.Parallel()
	c := startAgent(t).dial(t)
	_, key, err := ed25519.GenerateKey(rand.Reader)
	must(t, err, "key")
	keyring := agent.NewKeyring()
	must(t, keyring.Add(agent.AddedKey{PrivateKey: key, Comment: "sygaldry-test"}), "add key")
	// The client side of auth-agent@openssh.com channels the agent opens.
	must(t, agent.ForwardToAgent(c, keyring), "forward to agent")

	s := newSession(t, c)
	must(t, agent.RequestAgentForwarding(s), "auth-agent-req")
	out, err := s.StdoutPipe()
	must(t, err, "stdout")
	in, err := s.StdinPipe()
	must(t, err, "stdin")
	// Print the socket and its type, then hold the session open until stdin EOF.
	must(t, s.Start(`echo "$SSH_AUTH_SOCK"; stat -c %F "$SSH_AUTH_SOCK"; stat -c %a "$(dirname "$SSH_AUTH_SOCK")"; cat >/dev/null`), "start")
	lines := readLines(t, out, 3)
	sock := lines[0]
	if !strings.HasPrefix(sock, os.TempDir()) || lines[1] != "socket" || lines[2] != "700" {
		t.Fatalf("SSH_AUTH_SOCK %q type %q dir mode %q", sock, lines[1], lines[2])
	}

	// A process in the "container" talks to the forwarded agent.
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	must(t, err, "dial agent socket")
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	keys, err := agent.NewClient(conn).List()
	conn.Close()
	must(t, err, "list keys through the forwarded agent")
	if len(keys) != 1 || keys[0].Comment != "sygaldry-test" {
		t.Fatalf("keys %v", keys)
	}

	in.Close()
	must(t, waitSession(t, s, 10*time.Second), "wait")
	// The socket goes away with the session.
	if !waitFor(3*time.Second, func() bool { _, err := os.Stat(filepath.Dir(sock)); return os.IsNotExist(err) }) {
		t.Fatal("agent socket directory left behind")
	}
}

func TestNoAgentForwardingWithoutRequest(t *testing.T) {
	t.Parallel()
	c := startAgent(t).dial(t)
	r := run(t, c, `echo "${SSH_AUTH_SOCK:-none}"`)
	if r.stdout != "none\n" {
		t.Fatalf("SSH_AUTH_SOCK = %q without auth-agent-req", r.stdout)
	}
}

// On a link the gateway shares (fdpass.SharedRequest) a session takes one
// tag (fdpass.TagRequest) before it starts, and every agent-forwarding
// channel it opens carries that tag, so the gateway can tell whose agent to
// ask. Without sharing, or a second time, or malformed, the tag is refused.
func TestAgentForwardingTag(t *testing.T) {
	t.Parallel()
	c := startAgent(t).dial(t)
	tag := []byte{0, 0, 0, 0, 0, 0, 0, 42}

	early := newSession(t, c)
	if ok, err := early.SendRequest(fdpass.TagRequest, true, tag); ok || err != nil {
		t.Fatalf("a tag on a link not shared: %v %v, want refused", ok, err)
	}
	if ok, _, err := c.SendRequest(fdpass.SharedRequest, true, nil); !ok || err != nil {
		t.Fatalf("shared@sygaldry: %v %v", ok, err)
	}
	opens := c.HandleChannelOpen("auth-agent@openssh.com")
	s := newSession(t, c)
	if ok, err := s.SendRequest(fdpass.TagRequest, true, []byte{0, 0, 0, 0, 0, 0, 0, 0}); ok || err != nil {
		t.Fatalf("a zero tag: %v %v, want refused", ok, err)
	}
	if ok, err := s.SendRequest(fdpass.TagRequest, true, tag); !ok || err != nil {
		t.Fatalf("tag: %v %v", ok, err)
	}
	if ok, err := s.SendRequest(fdpass.TagRequest, true, []byte{0, 0, 0, 0, 0, 0, 0, 43}); ok || err != nil {
		t.Fatalf("a second tag: %v %v, want refused", ok, err)
	}
	must(t, agent.RequestAgentForwarding(s), "auth-agent-req")
	out, err := s.StdoutPipe()
	must(t, err, "stdout")
	in, err := s.StdinPipe()
	must(t, err, "stdin")
	must(t, s.Start(`echo "$SSH_AUTH_SOCK"; cat >/dev/null`), "start")
	sock := readLines(t, out, 1)[0]
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	must(t, err, "dial agent socket")
	defer conn.Close()
	select {
	case nc := <-opens:
		if !bytes.Equal(nc.ExtraData(), tag) {
			t.Fatalf("auth-agent@openssh.com extra data %x, want the tag %x", nc.ExtraData(), tag)
		}
		nc.Reject(ssh.ConnectionFailed, "test")
	case <-time.After(10 * time.Second):
		t.Fatal("no auth-agent@openssh.com channel")
	}
	in.Close()
	must(t, waitSession(t, s, 10*time.Second), "wait")
}
