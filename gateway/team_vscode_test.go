package gateway_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
)

// Two members of one project run VS Code at the same time (issue 9). Each
// has a container of their own on the project's one shared home; VS Code's
// bootstrap (a bash script on the stdin of `ssh -T -D PORT host bash`)
// keeps its lock, pid and token files in ~/.vscode-server and starts its
// server on 127.0.0.1 inside the container, then the client reaches it
// through the SOCKS forward of that same connection (or, with
// remote.SSH.enableDynamicForwarding off, through a second connection's
// -L). With ~/.vscode-server shared, the second bootstrap finds the
// first's pid and token files and talks to a server that is not in its
// container (vscode-remote-release#958, #11749). Here both bootstrap at
// once, both servers listen on the same port number in their own
// containers, and each user gets their own server's answer on both paths,
// many requests at once; neither sees the other's ~/.vscode-server files,
// while the rest of the home is shared.
func TestTeamVSCodeSideBySide(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t, 4*time.Minute)
	const port = 8790 // the same in both containers

	users := []*ideUser{
		{name: "alice", c: w.client(w.alice)},
		{name: "bob", c: w.client(w.bob)},
	}
	pa, pb := freePort(t), freePort(t)
	users[0].socks, users[0].local = pa, pa+1
	users[1].socks, users[1].local = pb, pb+1

	// The bootstraps, at once: each connection holds -D for the life of
	// the window, as VS Code's does.
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u.boot = startBootstrap(t, ctx, u.c, vscodeBootstrap(port), "-D", fmt.Sprintf("127.0.0.1:%d", u.socks))
		}()
	}
	wg.Wait()
	for _, u := range users {
		if u.boot == nil {
			t.FailNow() // startBootstrap said why
		}
		if u.boot.value("listeningOn==") != fmt.Sprintf("127.0.0.1:%d", port) || u.boot.token() == "" {
			t.Fatalf("%s: the bootstrap printed no listeningOn==127.0.0.1:%d== or no token:\n%s", u.name, port, u.boot.output())
		}
	}
	if users[0].boot.token() == users[1].boot.token() {
		t.Fatalf("both bootstraps report token %s: the second found the first's server", users[0].boot.token())
	}

	// enableDynamicForwarding=false: a second connection with -L.
	for _, u := range users {
		startForward(t, ctx, u.c, "-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", u.local, port))
	}

	// Both users, both paths, many requests at once: every answer is the
	// asker's own server's.
	errs := make(chan error, 64)
	var reqs sync.WaitGroup
	for _, u := range users {
		want := u.name + " " + u.boot.token() + "\n"
		for i := range 8 {
			for _, via := range []struct {
				name string
				get  func() (string, error)
			}{
				{"-D", func() (string, error) { return getViaSOCKS(ctx, u.socks, "127.0.0.1", port) }},
				{"-L", func() (string, error) { return getDirect(ctx, u.local) }},
			} {
				reqs.Add(1)
				go func() {
					defer reqs.Done()
					got, err := retry(ctx, via.get)
					switch {
					case err != nil:
						errs <- fmt.Errorf("%s through %s (request %d): %v", u.name, via.name, i, err)
					case got != want:
						errs <- fmt.Errorf("%s through %s (request %d) got %q, want %q", u.name, via.name, i, got, want)
					}
				}()
			}
		}
	}
	reqs.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// Seen from inside each container: the pid file names this container's
	// own server, the token file holds this user's token, and nothing of
	// the other's is there. The monorepo home around it is shared.
	home := "/home/kvothe"
	w.dockerExec("alice", "sh", "-c", "echo from-alice > "+home+"/shared-by-alice")
	if got := w.dockerExec("bob", "cat", home+"/shared-by-alice"); got != "from-alice\n" {
		t.Errorf("the project home is not shared: bob reads %q", got)
	}
	for i, u := range users {
		other := users[1-i]
		state := w.dockerExec(u.name, "sh", "-c", `d=`+home+`/.vscode-server; ls -A "$d"; echo "token=$(cat "$d/.token")"; tr '\0' ' ' </proc/$(cat "$d/.pid")/cmdline; echo`)
		if !strings.Contains(state, "token="+u.boot.token()+"\n") || !strings.Contains(state, "http.server") {
			t.Errorf("%s's ~/.vscode-server does not hold their own server's token and pid:\n%s", u.name, state)
		}
		if strings.Contains(state, "written-by-"+other.name) || !strings.Contains(state, "written-by-"+u.name) {
			t.Errorf("%s's ~/.vscode-server shows %s's files (or lacks their own):\n%s", u.name, other.name, state)
		}
	}

	// A reconnect (a window reload): VS Code's script finds its running
	// server by the pid file and reuses its port and token. Both at once
	// again; each finds their own.
	for _, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := startBootstrap(t, ctx, u.c, vscodeBootstrap(port))
			if b == nil {
				return
			}
			if !strings.Contains(b.output(), "found running server") || b.token() != u.boot.token() {
				t.Errorf("%s's reconnect: token %q, want their own %q\n%s", u.name, b.token(), u.boot.token(), b.output())
			}
		}()
	}
	wg.Wait()
}

// ideUser is one member's side of a VS Code-style test.
type ideUser struct {
	name         string
	c            sshtest.Client
	socks, local int // the client's -D and -L ports
	boot         *bootstrap
}

// vscodeBootstrap is a stand-in for VS Code Remote-SSH's install script
// (piped to `bash` on stdin, no pty): it keeps a lock, a pid and a token
// file in ~/.vscode-server, reuses a running server it finds by the pid
// file, or starts one on 127.0.0.1:port (python3's http.server serving
// "USER TOKEN"), waits until it listens, and prints the markers VS Code
// parses between "<id>: start" and "<id>: end".
func vscodeBootstrap(port int) string {
	return fmt.Sprintf(`set -e
id=a1b2c3
d="$HOME/.vscode-server"
bin="$d/bin/0123456789abcdef"
mkdir -p "$bin"
exec 8>"$d/.lock"
flock 8
touch "$d/written-by-$SYGALDRY_USER"
if [ -s "$d/.pid" ] && kill -0 "$(cat "$d/.pid")" 2>/dev/null; then
  echo "found running server (pid $(cat "$d/.pid"))"
else
  head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$d/.token"
  echo "$SYGALDRY_USER $(cat "$d/.token")" >"$bin/index.html"
  cd "$bin"
  setsid nohup python3 -m http.server --bind 127.0.0.1 %[1]d >"$d/.log" 2>&1 </dev/null &
  echo $! >"$d/.pid"
fi
flock -u 8
for i in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/%[1]d) 2>/dev/null && break
  sleep 0.1
done
echo "$id: start"
echo "listeningOn==127.0.0.1:%[1]d=="
echo "connectionToken==$(cat "$d/.token")=="
echo "$id: end"
`, port)
}

// bootstrap is a bash-on-stdin session that printed its markers and stays
// open (its stdin is never closed), as VS Code's does.
type bootstrap struct {
	mu    sync.Mutex
	lines []string
}

func (b *bootstrap) output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

// value returns X of the first line "PREFIXX==" the script printed, or "".
func (b *bootstrap) value(prefix string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.lines {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			return strings.TrimSuffix(v, "==")
		}
	}
	return ""
}

func (b *bootstrap) token() string { return b.value("connectionToken==") }

// startBootstrap runs `ssh -T [flags] host bash` with script on stdin and
// returns once the script printed "<id>: end"; nil (with the test marked
// failed) when it did not. The connection is killed at cleanup.
func startBootstrap(t *testing.T, ctx context.Context, c sshtest.Client, script string, flags ...string) *bootstrap {
	t.Helper()
	args := append([]string{"-T", "-o", "ExitOnForwardFailure=yes"}, flags...)
	cmd := c.SSH(ctx, append(args, "--", "bash")...)
	// Called from goroutines: errors are t.Errorf, never t.Fatal.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Error(err)
		return nil
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Error(err)
		return nil
	}
	stderr := &testenv.SyncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Error(err)
		return nil
	}
	done := make(chan struct{})
	b := &bootstrap{}
	ended := make(chan bool, 2) // "end" seen, then the session's end
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			b.mu.Lock()
			b.lines = append(b.lines, line)
			b.mu.Unlock()
			if strings.HasSuffix(line, ": end") {
				ended <- true
			}
		}
		io.Copy(io.Discard, stdout)
		cmd.Wait()
		ended <- false
	}()
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); <-done })
	if _, err := io.WriteString(stdin, script); err != nil {
		t.Errorf("write the bootstrap: %v", err)
		return nil
	}
	select {
	case ok := <-ended:
		if ok {
			return b
		}
	case <-ctx.Done():
	}
	t.Errorf("the bootstrap did not finish:\nstdout: %s\nstderr: %s", b.output(), stderr.String())
	return nil
}

// startForward runs `ssh -N [flags]` until cleanup.
func startForward(t *testing.T, ctx context.Context, c sshtest.Client, flags ...string) {
	t.Helper()
	cmd := c.SSH(ctx, append(append([]string{"-N", "-o", "ExitOnForwardFailure=yes"}, flags...), "--")...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}

// retry calls get until it succeeds (a forward's listener may not be up
// yet) or 20 seconds pass.
func retry(ctx context.Context, get func() (string, error)) (string, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := get()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return s, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// getDirect is GET / from 127.0.0.1:port on this host (an -L listener).
func getDirect(ctx context.Context, port int) (string, error) {
	return getVia(ctx, func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	})
}

// getViaSOCKS is GET / from host:port through the SOCKS5 proxy of `ssh -D`
// on 127.0.0.1:socks, the way VS Code's forwarding server reaches its
// remote server.
func getViaSOCKS(ctx context.Context, socks int, host string, port int) (string, error) {
	return getVia(ctx, func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dialSOCKS5(ctx, fmt.Sprintf("127.0.0.1:%d", socks), host, port)
	})
}

func getVia(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error)) (string, error) {
	cl := &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}, Timeout: 10 * time.Second}
	req, err := http.NewRequestWithContext(ctx, "GET", "http://ide.invalid/", nil)
	if err != nil {
		return "", err
	}
	resp, err := cl.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return string(b), err
}

// dialSOCKS5 opens a connection to host:port through a SOCKS5 proxy (RFC
// 1928: no authentication, CONNECT, the host as a domain name, as curl's
// --socks5-hostname sends it).
func dialSOCKS5(ctx context.Context, proxy, host string, port int) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", proxy)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fail := func(err error) (net.Conn, error) { conn.Close(); return nil, err }
	if _, err := conn.Write([]byte{5, 1, 0}); err != nil {
		return fail(err)
	}
	var hello [2]byte
	if _, err := io.ReadFull(conn, hello[:]); err != nil {
		return fail(err)
	}
	if hello != [2]byte{5, 0} {
		return fail(fmt.Errorf("socks: method reply %v", hello))
	}
	req := append([]byte{5, 1, 0, 3, byte(len(host))}, host...)
	req = binary.BigEndian.AppendUint16(req, uint16(port))
	if _, err := conn.Write(req); err != nil {
		return fail(err)
	}
	var head [4]byte
	if _, err := io.ReadFull(conn, head[:]); err != nil {
		return fail(err)
	}
	if head[1] != 0 {
		return fail(errors.New("socks: connect refused, reply " + strconv.Itoa(int(head[1]))))
	}
	var skip int
	switch head[3] {
	case 1:
		skip = 4
	case 4:
		skip = 16
	case 3:
		var n [1]byte
		if _, err := io.ReadFull(conn, n[:]); err != nil {
			return fail(err)
		}
		skip = int(n[0])
	default:
		return fail(fmt.Errorf("socks: address type %d", head[3]))
	}
	if _, err := io.ReadFull(conn, make([]byte, skip+2)); err != nil {
		return fail(err)
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}
