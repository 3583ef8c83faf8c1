package gateway_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/internal/sshtest"
)

// The gateway's own lines (the progress of a first login) end in "\r\n" on
// a pty session, so each starts at column 0 of the client's raw terminal,
// and in a plain "\n" on an exec session's stderr.
func TestGatewayLinesOnPtyAndExec(t *testing.T) {
	sshtest.Require(t, "ssh")
	w := newWorld(t)
	ctx := ctxT(t, 2*time.Minute)

	r := sshtest.Run(t, w.client(w.alice).SSH(ctx, "-tt", "--", "true"), nil)
	if r.Code != 0 || !strings.Contains(r.Stderr, "Creating container") {
		t.Fatalf("first pty login: %v", r)
	}
	if strings.Count(r.Stderr, "\n") != strings.Count(r.Stderr, "\r\n") || !strings.HasSuffix(r.Stderr, "\r\n") {
		t.Errorf("pty session: a gateway line ends in a bare \\n: %q", r.Stderr)
	}

	r = sshtest.Run(t, w.client(w.bob).SSH(ctx, "true"), nil)
	if r.Code != 0 || !strings.Contains(r.Stderr, "Creating container") {
		t.Fatalf("first exec login: %v", r)
	}
	if strings.Contains(r.Stderr, "\r") {
		t.Errorf("exec session: a gateway line has a \\r: %q", r.Stderr)
	}
}
