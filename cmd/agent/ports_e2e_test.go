package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/internal/ports"
	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
)

// TestPortsThroughGateway is `sygaldry ports` as a user meets it: the real
// gateway and container, the OpenSSH client. A server started in the
// container is listed (with the destination the gateway set), shows in the
// banner of an interactive login and not on exec, and the printed ssh -L
// line, pasted, forwards it to this machine.
func TestPortsThroughGateway(t *testing.T) {
	sshtest.Require(t, "ssh")
	image := testenv.Image(t)
	docker := testenv.Docker(t)
	agentBin := testenv.AgentBinary(t)
	gateway := testenv.Binary(t, "./cmd/gateway", "sygaldry-gateway")
	dir := testenv.ShortTempDir(t)
	alice := sshtest.NewKey(t, dir, "alice")
	project := testenv.UniqueName("pt")
	port := freePort(t)
	cfg := filepath.Join(dir, "gateway.toml")
	doc := fmt.Sprintf(`[server]
listen = "127.0.0.1:%d"
state_dir = %q
admin_socket = %q
agent_path = %q
[docker]
storage_root = %q
[defaults]
image = %q
gpus = "none"
[projects.%s]
members = ["alice"]
[users.alice]
keys = [%q]
`, port, filepath.Join(dir, "state"), filepath.Join(dir, "admin.sock"), agentBin, filepath.Join(dir, "storage"), image, project, alice.Authorized)
	if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testenv.RemoveLabelledProject(t, docker, project) })
	startGateway(t, gateway, cfg, port)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := sshtest.Client{Host: "127.0.0.1", Port: strconv.Itoa(port), Login: project, Key: alice}
	// The port the server listens on in the container is the one the
	// pasted line forwards on this machine: pick one free here.
	srvPort := freePort(t)
	sshtest.Must(t, c.SSH(ctx, fmt.Sprintf("setsid sh -c 'cd /tmp && exec python3 -m http.server %d' >/dev/null 2>&1 </dev/null &", srvPort)), nil)

	var ls []ports.Listener
	for deadline := time.Now().Add(30 * time.Second); len(ls) == 0 && time.Now().Before(deadline); {
		out := sshtest.Must(t, c.SSH(ctx, "sygaldry ports --json"), nil).Stdout
		if err := json.Unmarshal([]byte(out), &ls); err != nil {
			t.Fatalf("sygaldry ports --json: %v\n%s", err, out)
		}
		if len(ls) == 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	wantSSH := fmt.Sprintf("ssh -L %d:localhost:%d -p %d %s@127.0.0.1", srvPort, srvPort, port, project)
	if len(ls) != 1 || int(ls[0].Port) != srvPort || ls[0].Process != "python3" || ls[0].SSH != wantSSH {
		t.Fatalf("sygaldry ports --json = %+v, want %d python3 %q", ls, srvPort, wantSSH)
	}
	if out := sshtest.Must(t, c.SSH(ctx, "sygaldry ports"), nil).Stdout; !strings.Contains(out, fmt.Sprintf("%d python3", srvPort)) || !strings.HasSuffix(out, wantSSH+"\n") {
		t.Errorf("sygaldry ports:\n%s", out)
	}

	// The banner: on an interactive login, before the prompt; its lines
	// start at column 0 of the raw terminal; not on exec, even with -tt.
	r := sshtest.Run(t, c.SSH(ctx, "-tt"), []byte("echo shell-$((6*7)); exit\n"))
	i := strings.Index(r.Stdout, ports.Header+"\r\n")
	if i < 0 || !strings.Contains(r.Stdout, fmt.Sprintf("%d python3", srvPort)) || !strings.Contains(r.Stdout, wantSSH+"\r\n") ||
		strings.Index(r.Stdout, "shell-42") < i {
		t.Errorf("interactive login:\n%q", r.Stdout)
	}
	if r := sshtest.Run(t, c.SSH(ctx, "-tt", "--", "echo only"), nil); strings.Contains(r.Stdout, ports.Header) {
		t.Errorf("exec with -tt printed the banner: %q", r.Stdout)
	}
	if r := sshtest.Run(t, c.SSH(ctx, "echo only"), nil); r.Stdout != "only\n" {
		t.Errorf("exec printed %q", r.Stdout)
	}

	// Paste the line: ssh, then the user's own options, then the rest.
	args := strings.Fields(wantSSH)[1:]
	fwd := exec.CommandContext(ctx, "ssh", append(append(c.Options(), "-N", "-o", "ExitOnForwardFailure=yes"), args...)...)
	fwd.Stderr = os.Stderr
	if err := fwd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fwd.Process.Kill(); fwd.Wait() })
	var body []byte
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var resp *http.Response
		resp, err = http.Get(fmt.Sprintf("http://127.0.0.1:%d/", srvPort))
		if err != nil {
			continue
		}
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode == 200 {
			break
		}
	}
	if err != nil || !strings.Contains(string(body), "Directory listing") {
		t.Fatalf("through the pasted forward: %v\n%s", err, body)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startGateway runs the gateway binary and returns once it listens; the
// cleanup stops it and, when the test failed, logs what it wrote.
func startGateway(t *testing.T, bin, cfg string, port int) {
	t.Helper()
	logs := &testenv.SyncBuffer{}
	gw := exec.Command(bin, "--config", cfg)
	gw.Stdout, gw.Stderr = logs, logs
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- gw.Wait() }()
	t.Cleanup(func() {
		gw.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("gateway exited: %v\n%s", err, logs.String())
		default:
		}
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("nothing listens on %s", addr)
}
