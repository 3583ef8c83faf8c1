package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
)

// reloadKeys puts a new configuration in force, as SIGHUP does (parse the
// file, then Reload), with the keys list of each given key's user replaced:
// entries are authorized_keys lines, in order.
func (w *world) reloadKeys(t *testing.T, lines map[sshtest.Key][]string) {
	t.Helper()
	doc := w.doc
	for k, entries := range lines {
		old := fmt.Sprintf("keys = [%q]", k.Authorized)
		if !strings.Contains(doc, old) {
			t.Fatalf("no keys line for %s in the test config", k.Path)
		}
		quoted := make([]string, len(entries))
		for i, e := range entries {
			quoted[i] = fmt.Sprintf("%q", e)
		}
		doc = strings.Replace(doc, old, "keys = ["+strings.Join(quoted, ", ")+"]", 1)
	}
	w.reloadDoc(t, doc)
}

func (w *world) reloadDoc(t *testing.T, doc string) {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(doc))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	w.live.Set(cfg)
	w.gw.Recheck()
}

// opt prefixes k's authorized_keys line with options.
func opt(options string, k sshtest.Key) string { return options + " " + k.Authorized }

func refused(r sshtest.Result) bool {
	return r.Code == 255 && strings.Contains(r.Stderr, "Permission denied")
}

// from= and expiry-time decide whether a key line applies at all; when one
// key has several lines, the first that applies gives its options (sshd).
func TestKeyOptionsFromAndExpiry(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t, 3*time.Minute)
	c := w.client(w.alice)

	for _, o := range []string{
		`from="10.*,192.168.0.0/16"`,
		`from="*,!127.0.0.1"`,
		`from="!127.0.0.0/8"`,
		`expiry-time="20200101"`,
		`from="127.0.0.1",expiry-time="202001011200Z"`,
	} {
		w.reloadKeys(t, map[sshtest.Key][]string{w.alice: {opt(o, w.alice)}})
		if r := sshtest.Run(t, c.SSH(ctx, "true"), nil); !refused(r) {
			t.Errorf("%s: %v, want refused", o, r)
		}
	}

	// The first line does not match the source, the second does: the
	// second's options apply (a pty), not the first's no-pty.
	w.reloadKeys(t, map[sshtest.Key][]string{w.alice: {
		opt(`from="10.0.0.0/8",no-pty`, w.alice),
		opt(`from="127.0.0.?,::1",expiry-time="20991231"`, w.alice),
	}})
	r := sshtest.Run(t, c.SSH(ctx, "-tt", "--", "tty; echo $SYGALDRY_USER"), nil)
	if r.Code != 0 || !strings.Contains(r.Stdout, "/dev/pts/") || !strings.Contains(r.Stdout, "alice") {
		t.Fatalf("matching from= and future expiry: %v", r)
	}
}

// restrict, no-pty, no-port-forwarding and no-agent-forwarding, as sshd:
// the pty request is refused and the session goes on without one, forwards
// are refused opens, and no agent socket appears in the session. The same
// checks pass before the restriction, so each refusal is the option's doing.
func TestKeyOptionsRestrict(t *testing.T) {
	sshtest.Require(t, "ssh-agent", "ssh-add")
	w := newWorld(t)
	ctx := ctxT(t, 4*time.Minute)
	c := w.client(w.bob)
	c.AgentSock = sshtest.StartAgent(t, ctx, w.alice)
	sshtest.Must(t, c.SSH(ctx, `mkdir -p ~/www && echo from-container > ~/www/index.html && cd ~/www && { nohup python3 -m http.server --bind 127.0.0.1 8765 >/dev/null 2>&1 & } && sleep 0.5`), nil)

	type outcome struct{ pty, local, remote, agent bool }
	check := func(name string, want outcome) {
		t.Helper()
		got := outcome{
			pty:    hasPTY(t, ctx, c),
			local:  localForwardWorks(t, ctx, c),
			remote: remoteForwardWorks(t, ctx, c),
			agent:  agentInSession(t, ctx, c),
		}
		if got != want {
			t.Errorf("%s: pty, -L, -R, -A = %+v, want %+v", name, got, want)
		}
	}
	check("no options", outcome{true, true, true, true})

	w.reloadKeys(t, map[sshtest.Key][]string{w.bob: {opt("restrict", w.bob)}})
	check("restrict", outcome{false, false, false, false})
	sessionWithoutPTY(t, "127.0.0.1:"+w.port, w.project, w.bob)

	w.reloadKeys(t, map[sshtest.Key][]string{w.bob: {opt("restrict,pty,agent-forwarding", w.bob)}})
	check("restrict,pty,agent-forwarding", outcome{true, false, false, true})

	w.reloadKeys(t, map[sshtest.Key][]string{w.bob: {opt("restrict,port-forwarding", w.bob)}})
	check("restrict,port-forwarding", outcome{false, true, true, false})

	w.reloadKeys(t, map[sshtest.Key][]string{w.bob: {opt("no-pty,no-agent-forwarding", w.bob)}})
	check("no-pty,no-agent-forwarding", outcome{false, true, true, false})

	w.reloadKeys(t, map[sshtest.Key][]string{w.bob: {opt("no-port-forwarding,no-X11-forwarding,no-user-rc", w.bob)}})
	check("no-port-forwarding", outcome{true, false, false, true})
}

// command= runs instead of whatever the client asked (a command, a shell,
// the sftp subsystem), with SSH_ORIGINAL_COMMAND set to the request, as sshd.
func TestKeyOptionCommand(t *testing.T) {
	w := newWorld(t, withServerTOML(`accept_env = ["LANG", "SSH_ORIGINAL_COMMAND"]`))
	ctx := ctxT(t, 3*time.Minute)
	c := w.client(w.alice)
	w.reloadKeys(t, map[sshtest.Key][]string{w.alice: {
		opt(`command="echo orig=${SSH_ORIGINAL_COMMAND-unset} | tee -a /tmp/forced.log"`, w.alice),
	}})

	r := sshtest.Run(t, c.SSH(ctx, "echo hi; id -un"), nil)
	if r.Code != 0 || r.Stdout != "orig=echo hi; id -un\n" {
		t.Errorf("exec under command=: %v", r)
	}
	r = sshtest.Run(t, c.SSH(ctx, "-T", "--"), []byte("echo from-shell\n"))
	if r.Code != 0 || r.Stdout != "orig=unset\n" {
		t.Errorf("shell under command=: %v", r)
	}
	// A client's own SSH_ORIGINAL_COMMAND (SetEnv) never reaches the forced
	// command, even when accept_env lets the name through.
	r = sshtest.Run(t, c.SSH(ctx, "-T", "-o", "SetEnv=SSH_ORIGINAL_COMMAND=lie", "--"), nil)
	if r.Stdout != "orig=unset\n" {
		t.Errorf("client SSH_ORIGINAL_COMMAND with a shell: %v", r)
	}
	r = sshtest.Run(t, c.SSH(ctx, "-o", "SetEnv=SSH_ORIGINAL_COMMAND=lie", "--", "real"), nil)
	if r.Stdout != "orig=real\n" {
		t.Errorf("client SSH_ORIGINAL_COMMAND with a command: %v", r)
	}
	if r := sshtest.Run(t, c.SFTP(ctx, "ls\n"), nil); r.Code == 0 {
		t.Errorf("sftp under command= succeeded: %v", r)
	}
	if log := w.dockerExec("alice", "cat", "/tmp/forced.log"); log != "orig=echo hi; id -un\norig=unset\norig=unset\norig=real\norig=sftp\n" {
		t.Errorf("forced command log:\n%s", log)
	}
}

// hasPTY reports whether ssh -tt gets a terminal. A refused pty-req makes
// OpenSSH's client say "PTY allocation request failed" and, because -tt
// asked for a tty explicitly, close the session (it is the same against
// sshd); sessionWithoutPTY shows the session itself would go on.
func hasPTY(t *testing.T, ctx context.Context, c sshtest.Client) bool {
	t.Helper()
	r := sshtest.Run(t, c.SSH(ctx, "-tt", "--", "tty; echo session-ran"), nil)
	if strings.Contains(r.Stderr, "PTY allocation request failed") {
		if strings.Contains(r.Stdout, "/dev/pts/") {
			t.Errorf("pty refused, yet the command has one: %v", r)
		}
		return false
	}
	if r.Code != 0 || !strings.Contains(r.Stdout, "/dev/pts/") || !strings.Contains(r.Stdout, "session-ran") {
		t.Fatalf("ssh -tt neither got a pty nor was refused one: %v", r)
	}
	return true
}

// sessionWithoutPTY checks, with a client that carries on after a refused
// pty-req, that the refusal leaves the session working without a tty.
func sessionWithoutPTY(t *testing.T, addr, login string, k sshtest.Key) {
	t.Helper()
	cl, err := dialGo(addr, login, k.Signer)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	sess, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.RequestPty("xterm", 24, 80, nil); err == nil {
		t.Fatalf("pty-req granted")
	}
	out, err := sess.Output("tty || true; echo session-ran")
	if err != nil || string(out) != "not a tty\nsession-ran\n" {
		t.Fatalf("session after a refused pty-req: %q, %v", out, err)
	}
}

// localForwardWorks runs ssh -N -L to the container's web server and GETs
// through it.
func localForwardWorks(t *testing.T, ctx context.Context, c sshtest.Client) bool {
	t.Helper()
	lport := freePort(t)
	stderr := &testenv.SyncBuffer{}
	// -v: the client logs a refused open ("open failed: administratively
	// prohibited") only above LogLevel=ERROR.
	fwd := c.SSH(ctx, "-v", "-N", "-L", fmt.Sprintf("127.0.0.1:%d:localhost:8765", lport), "--")
	fwd.Stderr = stderr
	if err := fwd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { fwd.Process.Kill(); fwd.Wait() }()
	client := &http.Client{Timeout: 5 * time.Second}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", lport))
		if err != nil {
			if strings.Contains(stderr.String(), "administratively prohibited") {
				return false
			}
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(b) == "from-container\n"
	}
	t.Fatalf("-L neither worked nor was refused; ssh said %q", stderr.String())
	return false
}

// remoteForwardWorks asks for ssh -R and connects to it from inside.
func remoteForwardWorks(t *testing.T, ctx context.Context, c sshtest.Client) bool {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(conn, "hello-from-client-side\n")
			conn.Close()
		}
	}()
	rport := freePort(t)
	r := sshtest.Run(t, c.SSH(ctx, "-o", "ExitOnForwardFailure=yes", "-R", fmt.Sprintf("127.0.0.1:%d:%s", rport, l.Addr()), "--",
		fmt.Sprintf(`python3 -c 'import socket; s=socket.create_connection(("127.0.0.1", %d)); print(s.makefile().readline().strip())'`, rport)), nil)
	if r.Code == 255 && strings.Contains(r.Stderr, "remote port forwarding failed") {
		return false
	}
	if r.Code != 0 || r.Stdout != "hello-from-client-side\n" {
		t.Fatalf("-R neither worked nor was refused: %v", r)
	}
	return true
}

// agentInSession reports whether ssh -A gives the session a working agent.
func agentInSession(t *testing.T, ctx context.Context, c sshtest.Client) bool {
	t.Helper()
	r := sshtest.Run(t, c.SSH(ctx, `echo "sock=${SSH_AUTH_SOCK-none}"; ssh-add -l`), nil)
	if strings.Contains(r.Stdout, "sock=none") {
		return false
	}
	if !strings.Contains(r.Stdout, "alice") {
		t.Fatalf("agent socket set but not working: %v", r)
	}
	return true
}
