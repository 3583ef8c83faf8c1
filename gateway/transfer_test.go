package gateway_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
)

func randomFile(t *testing.T, path string, size int) []byte {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

func sameFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: %d bytes, differ from the %d expected", path, len(got), len(want))
	}
}

// scp (sftp protocol and legacy -O), sftp and rsync move artifacts in and
// out of the container's home, byte for byte.
func TestFileTransfer(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t, 4*time.Minute)
	c := w.client(w.alice)
	sshtest.Must(t, c.SSH(ctx, "mkdir -p ~/art"), nil)
	dir := testenv.ShortTempDir(t)
	data := randomFile(t, filepath.Join(dir, "model.bin"), 8<<20)
	home := filepath.Join(w.storage, w.project, "monorepo_home")

	// scp, OpenSSH 9's default sftp protocol; "~/x" and "x" both mean $HOME.
	sshtest.Must(t, c.SCP(ctx, filepath.Join(dir, "model.bin"), c.Target("art/a.bin")), nil)
	sameFile(t, filepath.Join(home, "art", "a.bin"), data)
	sshtest.Must(t, c.SCP(ctx, c.Target("~/art/a.bin"), filepath.Join(dir, "back-a.bin")), nil)
	sameFile(t, filepath.Join(dir, "back-a.bin"), data)

	// Legacy scp protocol: `scp -t` through the remote shell.
	sshtest.Must(t, c.SCP(ctx, "-O", filepath.Join(dir, "model.bin"), c.Target("art/b.bin")), nil)
	sameFile(t, filepath.Join(home, "art", "b.bin"), data)
	sshtest.Must(t, c.SCP(ctx, "-O", c.Target("art/b.bin"), filepath.Join(dir, "back-b.bin")), nil)
	sameFile(t, filepath.Join(dir, "back-b.bin"), data)

	// sftp batch: put, ls, rename, get, and a failing command fails the batch.
	r := sshtest.Must(t, c.SFTP(ctx, fmt.Sprintf("put %s art/c.bin\nls art\nrename art/c.bin art/d.bin\nget art/d.bin %s\n",
		filepath.Join(dir, "model.bin"), filepath.Join(dir, "back-d.bin"))), nil)
	if !strings.Contains(r.Stdout, "a.bin") {
		t.Errorf("sftp ls: %q", r.Stdout)
	}
	sameFile(t, filepath.Join(dir, "back-d.bin"), data)
	if r := sshtest.Run(t, c.SFTP(ctx, "get no/such/file "+dir+"\n"), nil); r.Code == 0 {
		t.Errorf("sftp get of a missing file succeeded: %v", r)
	}

	// rsync: a tree up, then down, with a change in between.
	src := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	small := randomFile(t, filepath.Join(src, "sub", "x"), 100<<10)
	os.WriteFile(filepath.Join(src, "y"), []byte("hello\n"), 0o644)
	sshtest.Must(t, c.Rsync(ctx, "-a", src+"/", c.Target("tree/")), nil)
	sameFile(t, filepath.Join(home, "tree", "sub", "x"), small)
	sshtest.Must(t, c.SSH(ctx, "echo changed > ~/tree/y"), nil)
	down := filepath.Join(dir, "down")
	sshtest.Must(t, c.Rsync(ctx, "-a", c.Target("tree/"), down+"/"), nil)
	sameFile(t, filepath.Join(down, "sub", "x"), small)
	sameFile(t, filepath.Join(down, "y"), []byte("changed\n"))
}

// ssh -L reaches services listening on the container's own localhost
// (Jupyter, VS Code's server), never the gateway host's; a forward to a
// closed port is refused without hurting the connection.
func TestLocalForwardReachesContainerLocalhost(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t, 3*time.Minute)
	c := w.client(w.alice)
	// A web server bound to the container's loopback only.
	sshtest.Must(t, c.SSH(ctx, `mkdir -p ~/www && echo from-container > ~/www/index.html && cd ~/www && { nohup python3 -m http.server --bind 127.0.0.1 8765 >/dev/null 2>&1 & } && sleep 0.5`), nil)

	lport := freePort(t)
	fwd := c.SSH(ctx, "-N", "-o", "ExitOnForwardFailure=yes", "-L", fmt.Sprintf("127.0.0.1:%d:localhost:8765", lport),
		"-L", fmt.Sprintf("127.0.0.1:%d:localhost:8766", lport+1), "--")
	if err := fwd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fwd.Process.Kill(); fwd.Wait() })

	var body string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", lport))
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		break
	}
	if body != "from-container\n" {
		t.Fatalf("GET through -L = %q", body)
	}
	// Nothing listens on 8766 in the container: the forwarded connection
	// is closed at once, and the first forward still works afterwards.
	if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", lport+1), 5*time.Second); err == nil {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, rerr := conn.Read(make([]byte, 1))
		conn.Close()
		if n != 0 || rerr == nil {
			t.Errorf("refused forward: read %d, %v", n, rerr)
		}
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", lport))
	if err != nil {
		t.Fatalf("forward broken after a refused one: %v", err)
	}
	resp.Body.Close()
}

// ssh -R listens inside the container and brings connections back to the
// client side.
func TestRemoteForward(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t, 3*time.Minute)
	c := w.client(w.alice)
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
	cmd := c.SSH(ctx, "-o", "ExitOnForwardFailure=yes", "-R", "127.0.0.1:9777:"+l.Addr().String(), "--",
		`python3 -c 'import socket; s=socket.create_connection(("127.0.0.1", 9777)); print(s.makefile().readline().strip())'`)
	r := sshtest.Run(t, cmd, nil)
	if r.Code != 0 || r.Stdout != "hello-from-client-side\n" {
		t.Errorf("-R: %v", r)
	}
}

// ssh -A: SSH_AUTH_SOCK inside the container reaches the client's agent.
func TestAgentForwarding(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t, 3*time.Minute)
	sock := sshtest.StartAgent(t, ctx, w.bob)
	c := w.client(w.alice)
	c.AgentSock = sock
	cmd := c.SSH(ctx, `ssh-add -l`)
	r := sshtest.Run(t, cmd, nil)
	if r.Code != 0 || !strings.Contains(r.Stdout, "bob") {
		t.Errorf("ssh-add -l in the container: %v", r)
	}
	// Without -A there is no agent inside.
	c.AgentSock = ""
	r = sshtest.Run(t, c.SSH(ctx, `echo "${SSH_AUTH_SOCK-none}"`), nil)
	if strings.TrimSpace(r.Stdout) != "none" {
		t.Errorf("SSH_AUTH_SOCK without -A: %v", r)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		// The test uses port and port+1.
		if l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1)); err == nil {
			l2.Close()
			return port
		}
	}
	t.Fatal("no free port pair")
	return 0
}

// VS Code Remote-SSH: a bootstrap script piped to `bash` with no pty, then
// a SOCKS (-D) tunnel to the server it started, over the same kind of
// connection; plus ControlMaster multiplexing many sessions on one
// connection.
func TestVSCodeStyleFlows(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t, 3*time.Minute)
	c := w.client(w.alice)

	r := sshtest.Must(t, c.SSH(ctx, "-T", "--", "bash"), []byte("echo hello\nuname -s\ncd ~ && pwd\n"))
	if r.Stdout != "hello\nLinux\n/home/kvothe\n" {
		t.Errorf("script on stdin: %v", r)
	}

	// ControlMaster: one connection, several sessions at once.
	sockDir := testenv.ShortTempDir(t)
	mc := c
	mc.Extra = []string{"-o", "ControlPath=" + filepath.Join(sockDir, "cm"), "-o", "ControlMaster=auto", "-o", "ControlPersist=30"}
	sshtest.Must(t, mc.SSH(ctx, "true"), nil)
	t.Cleanup(func() {
		exec.Command("ssh", append(mc.Options(), "-O", "exit", "-p", w.port, mc.Login+"@127.0.0.1")...).Run()
	})
	errs := make(chan string, 8)
	for i := range 8 {
		go func() {
			r := sshtest.Run(t, mc.SSH(ctx, fmt.Sprintf("sleep 0.3; echo %d", i)), nil)
			if r.Code != 0 || r.Stdout != fmt.Sprintf("%d\n", i) {
				errs <- r.String()
				return
			}
			errs <- ""
		}()
	}
	for range 8 {
		if e := <-errs; e != "" {
			t.Errorf("multiplexed session: %s", e)
		}
	}

	if _, err := exec.LookPath("curl"); err != nil {
		t.Log("curl missing: SOCKS check skipped")
		return
	}
	sshtest.Must(t, c.SSH(ctx, `mkdir -p ~/v && echo vscode-server > ~/v/index.html && cd ~/v && { nohup python3 -m http.server --bind 127.0.0.1 8777 >/dev/null 2>&1 & } && sleep 0.5`), nil)
	lport := freePort(t)
	socks := c.SSH(ctx, "-N", "-D", fmt.Sprintf("127.0.0.1:%d", lport), "--")
	if err := socks.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { socks.Process.Kill(); socks.Wait() })
	var out []byte
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var err error
		out, err = exec.CommandContext(ctx, "curl", "-s", "--max-time", "5", "--socks5-hostname", fmt.Sprintf("127.0.0.1:%d", lport), "http://localhost:8777/").Output()
		if err == nil {
			break
		}
	}
	if string(out) != "vscode-server\n" {
		t.Errorf("GET through -D = %q", out)
	}
}
