package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/internal/sshtest"
)

// idle_disconnect ends a connection with no channel traffic, telling its
// session why; client keepalives (ServerAliveInterval) do not count as
// traffic, and a session whose output flows is left alone.
func TestIdleDisconnect(t *testing.T) {
	sshtest.Require(t, "ssh")
	w := newInproc(t, true)
	w.setServer(t, `idle_disconnect = "1500ms"`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	busy := w.client.SSH(ctx, "-o", "ServerAliveInterval=1", "--", "for i in $(seq 20); do echo tick; sleep 0.25; done; echo done")
	busyOut := &strings.Builder{}
	busy.Stdout = busyOut
	if err := busy.Start(); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	r := sshtest.Run(t, w.client.SSH(ctx, "-o", "ServerAliveInterval=1", "--", "sleep 20"), nil)
	took := time.Since(start)
	if r.Code == 0 || !strings.Contains(r.Stderr, "sygaldry: closing this connection after 1.5s without traffic (the gateway's idle_disconnect)\n") {
		t.Fatalf("quiet session: %v", r)
	}
	if took > 10*time.Second {
		t.Errorf("quiet session ended after %v, want about 1.5s", took)
	}

	if err := busy.Wait(); err != nil || !strings.HasSuffix(busyOut.String(), "done\n") {
		t.Errorf("a session with traffic was ended: %v, %q", err, busyOut.String())
	}

	// Off again (a reload): a quiet session outlives the old limit.
	w.setServer(t, "")
	if r := sshtest.Run(t, w.client.SSH(ctx, "sleep 3; echo ok"), nil); r.Code != 0 || r.Stdout != "ok\n" {
		t.Errorf("with idle_disconnect off: %v", r)
	}
}
