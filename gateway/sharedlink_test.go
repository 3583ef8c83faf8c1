package gateway_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/gateway"
	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
)

// The client connections to one container share one link to its agent
// (agentlink.go), which closes when the last of them leaves; with
// NoSharedLink (what an agent older than the request gets) each has its own.
func TestSharedLinkPerContainer(t *testing.T) {
	for _, shared := range []bool{true, false} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			w := newInprocWith(t, gateway.Options{NoSharedLink: !shared})
			ctx := ctxT(t, time.Minute)
			a := startLive(t, ctx, w.client)
			b := startLive(t, ctx, w.client)
			if r := sshtest.Run(t, w.client.SSH(ctx, "echo third"), nil); r.Code != 0 || r.Stdout != "third\n" {
				t.Fatalf("a third connection: %+v", r)
			}
			want := int64(3)
			if shared {
				want = 1
			}
			if n := w.links.Load(); n != want {
				t.Fatalf("three connections made %d links to the agent, want %d", n, want)
			}
			a.cmd.Process.Kill()
			b.cmd.Process.Kill()
			<-a.done
			<-b.done
			// Once every connection has gone the link is closed: the next
			// connection makes a new one.
			deadline := time.Now().Add(10 * time.Second)
			for {
				before := w.links.Load()
				if r := sshtest.Run(t, w.client.SSH(ctx, "true"), nil); r.Code != 0 {
					t.Fatalf("a later connection: %+v", r)
				}
				if w.links.Load() > before {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the shared link outlived its connections: still in use after %d links", before)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}

// greeter serves one line, name, to every connection: which client's -R a
// connection reached.
func greeter(t *testing.T, name string) string {
	return tcpServer(t, func(c net.Conn) { io.WriteString(c, name+"\n") })
}

// greeting is the line a connection to addr gets, or "" when nothing
// listens there.
func greeting(addr string) string {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

// remoteForward runs ssh -N -R spec as c and returns once the forward is
// up, with the port ssh says was allocated when spec asked for port 0.
func remoteForward(t *testing.T, c sshtest.Client, spec string) (cmd *exec.Cmd, allocated int) {
	t.Helper()
	ctx := ctxT(t, time.Minute)
	// -v: "Allocated port" is an info line, below the client's LogLevel.
	cmd = c.SSH(ctx, "-v", "-N", "-o", "ExitOnForwardFailure=yes", "-R", spec, "--")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// The reader runs to the end of ssh's stderr (the kill in Cleanup),
	// reporting the allocated port once.
	re := regexp.MustCompile(`Allocated port (\d+) for remote forward`)
	ports := make(chan int, 1)
	go func() {
		defer close(ports)
		sc := bufio.NewScanner(stderr)
		found := false
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil && !found {
				found = true
				p, _ := strconv.Atoi(m[1])
				ports <- p
			}
		}
	}()
	if !strings.Contains(spec, ":0:") {
		return cmd, 0
	}
	select {
	case p, ok := <-ports:
		if !ok {
			t.Fatalf("ssh -R %s ended without allocating a port", spec)
		}
		return cmd, p
	case <-time.After(20 * time.Second):
		t.Fatalf("ssh -R %s: no allocated port", spec)
	}
	return nil, 0
}

// waitGreeting waits until addr greets with want ("" : nothing listens).
func waitGreeting(t *testing.T, addr, want string) {
	t.Helper()
	waitGreetingBy(t, addr, func() string { return greeting(addr) }, want)
}

// waitGreetingBy waits until greet (what connecting to where reads) says
// want.
func waitGreetingBy(t *testing.T, where string, greet func() string, want string) {
	t.Helper()
	var got string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got = greet(); got == want {
			return
		}
	}
	t.Fatalf("%s greets with %q, want %q", where, got, want)
}

// On a shared link each connection's remote forwards come back to that
// connection, whether the port was given or allocated (port 0), and a
// connection that leaves takes its forwards with it while the link (and the
// others' forwards) stay: the port is free again inside the container.
func TestSharedLinkRoutesRemoteForwards(t *testing.T) {
	w := newInproc(t, true)
	pa := freePort(t)
	aCmd, _ := remoteForward(t, w.client, fmt.Sprintf("127.0.0.1:%d:%s", pa, greeter(t, "alpha")))
	_, pb := remoteForward(t, w.client, "127.0.0.1:0:"+greeter(t, "beta"))
	addrA, addrB := fmt.Sprintf("127.0.0.1:%d", pa), fmt.Sprintf("127.0.0.1:%d", pb)
	waitGreeting(t, addrA, "alpha")
	waitGreeting(t, addrB, "beta")
	if n := w.links.Load(); n != 1 {
		t.Fatalf("two connections made %d links, want 1", n)
	}

	aCmd.Process.Kill()
	aCmd.Wait()
	waitGreeting(t, addrA, "") // cancelled in the container
	if got := greeting(addrB); got != "beta" {
		t.Fatalf("the other connection's forward greets with %q after the first left", got)
	}
	// The freed port can be forwarded again, by another connection.
	remoteForward(t, w.client, fmt.Sprintf("127.0.0.1:%d:%s", pa, greeter(t, "gamma")))
	waitGreeting(t, addrA, "gamma")
	if n := w.links.Load(); n != 1 {
		t.Fatalf("%d links, want the one shared link throughout", n)
	}
}

// On a shared link an agent-forwarding connection reaches the agent of the
// client whose session it came from, not another connection's.
func TestSharedLinkRoutesAgentForwarding(t *testing.T) {
	w := newInproc(t, true)
	agentsApart(t, w.client)
	if n := w.links.Load(); n != 1 {
		t.Fatalf("two connections made %d links, want 1", n)
	}
}

// agentsApart runs two connections as c at once, each forwarding its own
// ssh-agent with its own key, and fails unless each session lists its own
// key only.
func agentsApart(t *testing.T, c sshtest.Client) {
	t.Helper()
	sshtest.Require(t, "ssh-agent", "ssh-add")
	ctx := ctxT(t, time.Minute)
	dir := testenv.ShortTempDir(t)
	first, second := c, c
	first.AgentSock = sshtest.StartAgent(t, ctx, sshtest.NewKey(t, dir, "first-agent-key"))
	second.AgentSock = sshtest.StartAgent(t, ctx, sshtest.NewKey(t, dir, "second-agent-key"))

	// The first connection lists its agent's keys, then stays.
	live := first.SSH(ctx, "ssh-add -l; echo listed; cat")
	stdin, err := live.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := live.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { live.Process.Kill(); live.Wait() })
	var listed strings.Builder
	rd := bufio.NewReader(stdout)
	for {
		line, err := rd.ReadString('\n')
		listed.WriteString(line)
		if err != nil || line == "listed\n" {
			break
		}
	}
	if !strings.Contains(listed.String(), "first-agent-key") || strings.Contains(listed.String(), "second-agent-key") {
		t.Fatalf("the first connection's ssh-add -l: %q", listed.String())
	}
	// The second, on the same link, sees its own agent only.
	r := sshtest.Run(t, second.SSH(ctx, "ssh-add -l"), nil)
	if r.Code != 0 || !strings.Contains(r.Stdout, "second-agent-key") || strings.Contains(r.Stdout, "first-agent-key") {
		t.Fatalf("the second connection's ssh-add -l: %+v", r)
	}
}

// On a shared link a connection cancels only its own remote forwards, as
// under sshd: another connection of the same user asking to cancel it is
// refused, and the forward keeps working.
func TestSharedLinkCancelOnlyOwnForwards(t *testing.T) {
	w := newInproc(t, true)
	addr := net.JoinHostPort(w.client.Host, w.client.Port)
	owner, err := dialGo(addr, "zephyr", w.client.Key.Signer)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	other, err := dialGo(addr, "zephyr", w.client.Key.Signer)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	port := freePort(t)
	fwd := gossh.Marshal(struct {
		Addr string
		Port uint32
	}{"127.0.0.1", uint32(port)})
	if _, err := owner.ListenTCP(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
		t.Fatalf("tcpip-forward: %v", err)
	}
	// The other connection must be attached to the same link first.
	if _, _, err := other.SendRequest("tcpip-forward", true, gossh.Marshal(struct {
		Addr string
		Port uint32
	}{"127.0.0.1", uint32(freePort(t))})); err != nil {
		t.Fatal(err)
	}
	if n := w.links.Load(); n != 1 {
		t.Fatalf("%d links, want 1 shared", n)
	}
	if ok, _, err := other.SendRequest("cancel-tcpip-forward", true, fwd); ok || err != nil {
		t.Fatalf("another connection cancelled the forward: %v %v", ok, err)
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 2*time.Second); err != nil {
		t.Fatalf("the forward is gone after a refused cancel: %v", err)
	} else {
		c.Close()
	}
	if ok, _, err := owner.SendRequest("cancel-tcpip-forward", true, fwd); !ok || err != nil {
		t.Fatalf("the owner's cancel: %v %v", ok, err)
	}
}
