package gateway_test

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
)

func envPayload(name, value string) []byte {
	return gossh.Marshal(struct{ Name, Value string }{name, value})
}

// The per-connection caps like sshd's (issue 6), with the real engine:
// requests queued while the container starts, env entries per session,
// open forwards, and (with the OpenSSH client) sessions per connection.
func TestPerConnectionCaps(t *testing.T) {
	w := newWorld(t, withServerTOML("max_forwards = 2"))
	ctx := ctxT(t, 3*time.Minute)
	addr := "127.0.0.1:" + w.port
	cl, err := dialGo(addr, w.project, w.alice.Signer)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	// A flood of requests while the container is being created: the
	// backlog stops at its bound and the next request is refused at once.
	ch, reqs, err := cl.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	go gossh.DiscardRequests(reqs)
	for range 1000 {
		if _, err := ch.SendRequest("keepalive@openssh.com", false, nil); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	ok, err := ch.SendRequest("env", true, envPayload("LANG", "C.UTF-8"))
	if err != nil || ok {
		t.Fatalf("a request past the backlog while the container starts: ok=%v err=%v, want refused", ok, err)
	}
	t.Logf("request past the backlog refused after %v", time.Since(start).Round(time.Millisecond))
	ch.Close()

	// Env entries per session: 64 accepted, the rest refused.
	s, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	accepted := 0
	for i := range 100 {
		if s.Setenv(fmt.Sprintf("LC_X%d", i), "v") == nil {
			accepted++
		}
	}
	out, err := s.Output("env | grep -c '^LC_X'")
	if accepted != 64 || strings.TrimSpace(string(out)) != "64" {
		t.Fatalf("env: %d accepted, %q in the session (%v); want 64", accepted, out, err)
	}

	// Forwards: two -R listeners fill max_forwards = 2; a third, and a -L
	// channel, are refused until one is cancelled.
	var ls []net.Listener
	for i := range 2 {
		l, err := cl.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listener %d: %v", i, err)
		}
		ls = append(ls, l)
	}
	if l, err := cl.Listen("tcp", "127.0.0.1:0"); err == nil {
		l.Close()
		t.Fatal("a third -R listener past max_forwards = 2")
	}
	if c, err := cl.Dial("tcp", "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "max_forwards") {
		if c != nil {
			c.Close()
		}
		t.Fatalf("-L past max_forwards: %v, want a refusal naming max_forwards", err)
	}
	ls[0].Close() // cancel-tcpip-forward
	l, err := cl.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listener after a cancel: %v", err)
	}
	l.Close()
	ls[1].Close()

	// OpenSSH: three -R on one connection with max_forwards = 2 fail.
	c := w.client(w.alice)
	r := sshtest.Run(t, c.SSH(ctx, "-N", "-o", "ExitOnForwardFailure=yes",
		"-R", "127.0.0.1:0:127.0.0.1:1", "-R", "127.0.0.1:0:127.0.0.1:2", "-R", "127.0.0.1:0:127.0.0.1:3", "--"), nil)
	if r.Code == 0 || !strings.Contains(r.Stderr, "forwarding failed") {
		t.Errorf("three -R with max_forwards = 2: %v", r)
	}

	// OpenSSH ControlMaster: ten sessions on one connection, the eleventh
	// is refused (max_sessions = 10, as sshd).
	sockDir := testenv.ShortTempDir(t)
	mc := c
	mc.Extra = []string{"-o", "ControlPath=" + filepath.Join(sockDir, "cm"), "-o", "ControlMaster=auto", "-o", "ControlPersist=60"}
	sshtest.Must(t, mc.SSH(ctx, "true"), nil)
	t.Cleanup(func() {
		exec.Command("ssh", append(mc.Options(), "-O", "exit", "-p", w.port, mc.Login+"@127.0.0.1")...).Run()
	})
	for range 10 {
		startLive(t, ctx, mc)
	}
	// ssh then falls back to a connection of its own (ControlMaster=auto).
	r = sshtest.Run(t, mc.SSH(ctx, "echo eleventh"), nil)
	if !strings.Contains(r.Stderr, "Session open refused by peer") {
		t.Fatalf("an eleventh session on one connection was not refused: %v", r)
	}
}
