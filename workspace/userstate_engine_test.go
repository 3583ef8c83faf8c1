package workspace

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/internal/ports"
	"github.com/sygaldry/sygaldry/link"
)

// zephyrPair makes the containers of alice and bob in one project, each
// with their git identity, on the real engine.
func zephyrPair(t *testing.T) (r *rig, p config.Resolved, alice, bob *Instance) {
	r = newRig(t, nil)
	p = r.project()
	p.Members = []string{"alice", "bob"}
	p.Identities = map[string]config.Identity{
		"alice": {Name: "Alice Liddell", Email: "alice@example.com"},
		"bob":   {Name: "Bob Bobson", Email: "bob@example.org"},
	}
	alice, _ = r.ensure(p, "alice")
	bob, _ = r.ensure(p, "bob")
	return r, p, alice, bob
}

// TestUserStateTwoMembers: alice and bob share the project home but not
// their IDE state, shell history or commit identity.
func TestUserStateTwoMembers(t *testing.T) {
	r, p, alice, bob := zephyrPair(t)
	proj := filepath.Join(r.opts.StorageRoot, p.Name)

	// IDE state is private; the monorepo is shared; the per-user mounts
	// left ~/.cache writable for everything else.
	run(t, alice, "echo alice-token > ~/.vscode-server/token && echo monorepo > ~/shared.txt && mkdir -p ~/.cache/JetBrains/x ~/.cache/pip ~/.local/share/JetBrains/y ~/.cursor-server/z")
	if out := run(t, bob, "ls -A ~/.vscode-server ~/.cursor-server ~/.cache/JetBrains ~/.local/share/JetBrains; cat ~/shared.txt; ls -d ~/.cache/pip"); out != "/home/kvothe/.cache/JetBrains:\n\n/home/kvothe/.cursor-server:\n\n/home/kvothe/.local/share/JetBrains:\n\n/home/kvothe/.vscode-server:\nmonorepo\n/home/kvothe/.cache/pip\n" {
		t.Errorf("bob sees:\n%s", out)
	}
	if out := run(t, alice, "cat ~/.vscode-server/token"); out != "alice-token\n" {
		t.Errorf("alice's token: %q", out)
	}
	if b, err := os.ReadFile(filepath.Join(proj, "users", "alice", "home", ".vscode-server", "token")); err != nil || string(b) != "alice-token\n" {
		t.Errorf("alice's state on the host: %q %v", b, err)
	}
	if out := run(t, bob, "stat -c '%U %n' ~/.cache ~/.local ~/.local/share ~/.vscode-server /.sygaldry/user"); out != "kvothe /home/kvothe/.cache\nkvothe /home/kvothe/.local\nkvothe /home/kvothe/.local/share\nkvothe /home/kvothe/.vscode-server\nkvothe /.sygaldry/user\n" {
		t.Errorf("owners in bob's container:\n%s", out)
	}

	// Shell history: each in their own file.
	for _, in := range []*Instance{alice, bob} {
		user := strings.TrimPrefix(in.Name, "sygaldry-"+p.Name+"-")
		run(t, in, "bash -ic 'history -s echo typed-by-"+user+"; history -a' </dev/null 2>/dev/null")
	}
	for _, user := range []string{"alice", "bob"} {
		b, err := os.ReadFile(filepath.Join(proj, "users", user, ".bash_history"))
		if err != nil || !strings.Contains(string(b), "typed-by-"+user) || strings.Count(string(b), "typed-by-") != 1 {
			t.Errorf("%s's history: %q %v", user, b, err)
		}
	}
	if out := run(t, alice, "echo $HISTFILE"); out != HistFile+"\n" {
		t.Errorf("HISTFILE = %q", out)
	}

	// git: one repository in the shared home, a commit from each.
	run(t, alice, "git init -q ~/repo && cd ~/repo && echo a > a && git add a && git commit -q -m from-alice")
	run(t, bob, "cd ~/repo && echo b > b && git add b && git commit -q -m from-bob")
	if out := run(t, alice, "cd ~/repo && git log --format='%s|%an <%ae>|%cn <%ce>'"); out != "from-bob|Bob Bobson <bob@example.org>|Bob Bobson <bob@example.org>\nfrom-alice|Alice Liddell <alice@example.com>|Alice Liddell <alice@example.com>\n" {
		t.Errorf("git log:\n%s", out)
	}
}

// TestPortsInContainer: a server started in the container shows up in
// `sygaldry ports` (text and JSON) and in the banner of a pty login, and the
// printed ssh -L target is reachable through the agent's forward, the way
// the gateway's -L reaches it.
func TestPortsInContainer(t *testing.T) {
	r := newRig(t, nil)
	p := r.project()
	p.Env[ports.DestEnv] = "-p 2222 " + p.Name + "@127.0.0.1"
	inst, _ := r.ensure(p, "alice")

	if out := run(t, inst, "command -v sygaldry; sygaldry ports"); out != "/usr/local/bin/sygaldry\nNo TCP port is listening in this container.\n" {
		t.Errorf("nothing listening yet:\n%s", out)
	}
	// Detached, its descriptors off the session's pipes, or the exec would
	// wait for it (as with sshd).
	run(t, inst, "setsid sh -c 'cd /tmp && exec python3 -m http.server 8777' >/dev/null 2>&1 </dev/null &")
	var ls []ports.Listener
	deadline := time.Now().Add(20 * time.Second)
	for len(ls) == 0 && time.Now().Before(deadline) {
		if err := json.Unmarshal([]byte(run(t, inst, "sygaldry ports --json")), &ls); err != nil {
			t.Fatal(err)
		}
		if len(ls) == 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	wantSSH := "ssh -L 8777:localhost:8777 -p 2222 " + p.Name + "@127.0.0.1"
	if len(ls) != 1 || ls[0].Port != 8777 || ls[0].Process != "python3" || ls[0].PID == 0 || ls[0].SSH != wantSSH {
		t.Fatalf("sygaldry ports --json = %+v", ls)
	}
	text := run(t, inst, "sygaldry ports")
	if !strings.HasPrefix(text, ports.Header+"\n") || !strings.Contains(text, "8777 python3") || !strings.HasSuffix(text, wantSSH+"\n") {
		t.Errorf("sygaldry ports:\n%s", text)
	}
	// A login shell, whose /etc/profile resets PATH, still finds it.
	if out := run(t, inst, "bash -lc 'command -v sygaldry'"); out != "/usr/local/bin/sygaldry\n" {
		t.Errorf("login shell: %q", out)
	}

	// The banner of an interactive login.
	banner := loginBanner(t, inst)
	if !strings.HasPrefix(banner, ports.Header+"\r\n") || !strings.Contains(banner, "8777 python3") || !strings.Contains(banner, wantSSH+"\r\n") {
		t.Errorf("login banner:\n%q", banner)
	}

	// ssh -L 8777:localhost:8777: the gateway asks the agent for a
	// direct-tcpip to localhost:8777, in the container.
	_, target, _ := strings.Cut(wantSSH, "-L ")
	target, _, _ = strings.Cut(target, " ")
	_, hostport, _ := strings.Cut(target, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := link.Dial(ctx, inst.SocketPath, inst.Peer)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	conn, err := cl.Dial("tcp", hostport)
	if err != nil {
		t.Fatalf("forward to %s: %v", hostport, err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("Directory listing")) {
		t.Errorf("through the forward: %s\n%s", resp.Status, body)
	}
}

// loginBanner opens an interactive login (pty-req + shell) through the
// agent, exits at once, and returns what came before the shell's output.
func loginBanner(t *testing.T, inst *Instance) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := link.Dial(ctx, inst.SocketPath, inst.Peer)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	s, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.RequestPty("xterm", 24, 160, nil); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	s.Stdout = &out
	s.Stdin = strings.NewReader("echo shell-$((6*7)); exit\n")
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatalf("login did not end: %q", out.String())
	}
	if !strings.Contains(out.String(), "shell-42") {
		t.Errorf("the shell did not run: %q", out.String())
	}
	return out.String()
}
