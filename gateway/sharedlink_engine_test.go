package gateway_test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/workspace"
)

// With a real container: one user's connections share the container's link,
// and each still gets its own remote forwards and its own ssh-agent, the
// way they would from separate sshd sessions. A connection that leaves
// takes its forward with it; the other's stays.
func TestSharedLinkInContainer(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t, 3*time.Minute)
	alice := w.client(w.alice)
	sshtest.Must(t, alice.SSH(ctx, "true"), nil) // the container is up

	// inside connects to port in the container and returns the line it
	// reads ("" when nothing listens there).
	name := workspace.ContainerName(w.project, "alice")
	inside := func(port int) string {
		out, _ := exec.Command("docker", "exec", name, "bash", "-c",
			fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d && head -n1 <&3", port)).Output()
		return strings.TrimSpace(string(out))
	}
	waitInside := func(port int, want string) {
		t.Helper()
		waitGreetingBy(t, fmt.Sprintf("port %d in the container", port), func() string { return inside(port) }, want)
	}

	pa := 40000 + freePort(t)%20000
	a, _ := remoteForward(t, alice, fmt.Sprintf("127.0.0.1:%d:%s", pa, greeter(t, "alpha")))
	_, pb := remoteForward(t, alice, "127.0.0.1:0:"+greeter(t, "beta"))
	waitInside(pa, "alpha")
	waitInside(pb, "beta")
	a.Process.Kill()
	a.Wait()
	waitInside(pa, "")
	if got := inside(pb); got != "beta" {
		t.Fatalf("the other connection's forward greets with %q after the first left", got)
	}

	// Two clients, two agents: each session lists its own key.
	agentsApart(t, alice)
}
