package gateway_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/gateway"
	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
)

// A panic in any of the places that serve one connection (authentication,
// a channel handler, a global request, the proxy's copies and request
// loops, a channel the agent opens) is recovered and logged with its
// stack; it ends that connection only: alice's session runs on throughout
// and bob logs in again at once.
func TestPanicEndsOnlyThatConnection(t *testing.T) {
	logs := &testenv.SyncBuffer{}
	w := newWorld(t, withLogs(logs))
	ctx := ctxT(t, 4*time.Minute)
	bystander := startLive(t, ctx, w.client(w.alice))
	bob := w.client(w.bob)
	sshtest.Must(t, bob.SSH(ctx, "true"), nil)

	var armed atomic.Value // the point that panics next, once
	armed.Store("")
	gateway.SetTestHook(t, func(point, project string) {
		// "config" runs before the login name is known; nothing else
		// connects meanwhile.
		if (project == w.project || point == "config") && armed.CompareAndSwap(point, "") {
			panic("injected at " + point)
		}
	})
	inside := 47000 + freePort(t)%1000
	for _, tc := range []struct {
		point, where string
		args         []string
		told         bool // a session was open to tell the user
	}{
		{"config", "server config", []string{"echo hi"}, false},
		{"auth", "authentication", []string{"echo hi"}, false},
		{"channel", "channel session", []string{"echo hi"}, false},
		{"client-request", "client requests", []string{"echo hi"}, true},
		{"copy", "copy", []string{"echo hi"}, true},
		{"request", "global request tcpip-forward", []string{"-N", "-o", "ExitOnForwardFailure=yes", "-R", "127.0.0.1:0:127.0.0.1:9", "--"}, false},
		{"agent-channel", "agent channels", []string{"-R", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:9", inside), "--",
			fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d; sleep 30", inside)}, true},
	} {
		t.Run(tc.point, func(t *testing.T) {
			before := len(logs.String())
			armed.Store(tc.point)
			start := time.Now()
			r := sshtest.Run(t, bob.SSH(ctx, tc.args...), nil)
			if armed.Load() != "" {
				t.Fatalf("the hook at %s was not reached: %v", tc.point, r)
			}
			if r.Code == 0 || time.Since(start) > 20*time.Second {
				t.Errorf("the connection went on after the panic (%v): %v", time.Since(start), r)
			}
			if tc.told && !strings.Contains(r.Stderr, "sygaldry: the gateway hit an internal error") {
				t.Errorf("bob was not told: %q", r.Stderr)
			}
			log := logs.String()[before:]
			for _, want := range []string{`msg="panic while serving a connection; it is closed"`, `panic="injected at ` + tc.point + `"`,
				"in=" + quoteIfSpace(tc.where), `stack="goroutine `, "gateway.(*"} {
				if !strings.Contains(log, want) {
					t.Errorf("log lacks %s:\n%s", want, log)
				}
			}
			if r := sshtest.Must(t, bob.SSH(ctx, "echo alive"), nil); r.Stdout != "alive\n" {
				t.Errorf("next login: %v", r)
			}
		})
	}
	if !bystander.running() {
		t.Errorf("alice's session ended: %q", bystander.stderr.String())
	}
}

func quoteIfSpace(s string) string {
	if strings.Contains(s, " ") {
		return `"` + s + `"`
	}
	return s
}
