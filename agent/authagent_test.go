package agent

import (
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/agent"
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
