package gateway_test

// The Docker-free tier of the data plane: a real gateway and the real
// OpenSSH client, with the agent in this process on a temporary socket
// instead of in a container. Every test runs twice: with the agent's
// descriptors handed to the gateway (internal/fdpass, the default) and with
// the bytes on the link (Server.NoFDPass, what an older agent gives).

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/agent"
	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/gateway"
	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
	"github.com/sygaldry/sygaldry/link"
)

// inprocContainers hands every login the one in-process agent.
type inprocContainers struct{ target gateway.Target }

func (c inprocContainers) Ensure(context.Context, config.Resolved, string, io.Writer) (gateway.Target, error) {
	return c.target, nil
}
func (inprocContainers) Acquire(string) {}
func (inprocContainers) Release(string) {}

// lockedBuffer is a log sink read while it is written.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type inproc struct {
	gw       *gateway.Server
	live     *config.Live
	doc      string // the config's text; its [server] table comes first
	client   sshtest.Client
	home     string        // the agent's $HOME
	agentLog *lockedBuffer // what the agent logged
	links    *atomic.Int64 // link connections the agent accepted (nil: not counted)
}

// countingListener counts the connections it accepted.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (c countingListener) Accept() (net.Conn, error) {
	conn, err := c.Listener.Accept()
	if err == nil {
		c.n.Add(1)
	}
	return conn, err
}

// newInproc serves a gateway whose one project lands in an agent running in
// this process. fdpass: whether the gateway takes the agent's descriptors.
func newInproc(t testing.TB, fdpass bool) *inproc {
	t.Helper()
	return newInprocWith(t, gateway.Options{NoFDPass: !fdpass})
}

// newInprocWith is newInproc with the gateway options o (Config,
// Containers and Logger are filled in), the agent set up by configure.
func newInprocWith(t testing.TB, o gateway.Options, configure ...func(*agent.Server)) *inproc {
	t.Helper()
	dir := testenv.ShortTempDir(t)
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, link.SocketName)
	ln, err := agent.ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	fdln, err := agent.ListenUnixPacket(filepath.Join(dir, link.FDSocketName))
	if err != nil {
		t.Fatal(err)
	}
	alog := &lockedBuffer{}
	srv := &agent.Server{
		Logger: slog.New(slog.NewTextHandler(io.MultiWriter(alog, testenv.LogWriter(t)), nil)),
		Home:   home,
		Shell:  "/bin/sh",
		Self:   testenv.AgentBinary(t),
	}
	links := new(atomic.Int64)
	for _, f := range configure {
		f(srv)
	}
	go srv.Serve(countingListener{ln, links})
	go srv.ServeFDs(fdln)
	t.Cleanup(func() { srv.Close() })

	ns, err := link.PidNSOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	w := serveInproc(t, dir, home, sock, ns, o, alog)
	w.links = links
	return w
}

// serveInproc serves a gateway whose one project lands in the agent on
// sock, in pid namespace ns.
func serveInproc(t testing.TB, dir, home, sock string, ns link.NS, o gateway.Options, alog *lockedBuffer) *inproc {
	t.Helper()
	target := gateway.Target{Name: "inproc", SocketPath: sock, Peer: link.Peer{Container: "inproc", PidNS: ns}}
	alice := sshtest.NewKey(t, dir, "alice")
	doc := fmt.Sprintf(`
[server]
state_dir = %q
[projects.zephyr]
members = ["alice"]
[users.alice]
keys = [%q]
`, filepath.Join(dir, "state"), alice.Authorized)
	cfg, err := config.Parse("t.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	live := config.NewLive(cfg)
	o.Config, o.Containers = live, inprocContainers{target}
	o.Logger = slog.New(slog.NewTextHandler(testenv.LogWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
	gw := mustNew(t, o)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gw.Serve(l)
	t.Cleanup(func() { gw.Close() })
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return &inproc{
		gw:       gw,
		live:     live,
		doc:      doc,
		client:   sshtest.Client{Host: "127.0.0.1", Port: port, Login: "zephyr", Key: alice},
		home:     home,
		agentLog: alog,
	}
}

// setServer puts the config in force again with lines added to its
// [server] table.
func (w *inproc) setServer(t testing.TB, lines string) {
	t.Helper()
	cfg, err := config.Parse("t.toml", []byte(strings.Replace(w.doc, "[server]\n", "[server]\n"+lines+"\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	w.live.Set(cfg)
}

// bothPaths runs f with descriptors passed and with the bytes on the link.
func bothPaths(t *testing.T, f func(t *testing.T, w *inproc)) {
	for _, fd := range []bool{true, false} {
		name := "link"
		if fd {
			name = "fdpass"
		}
		t.Run(name, func(t *testing.T) { f(t, newInproc(t, fd)) })
	}
}

// agentClosed finds the bytes_out of every session the agent closed: what
// crossed the link. With descriptors handed over it is 0.
var agentClosed = regexp.MustCompile(`msg="channel closed".* type=session .*bytes_out=(\d+)`)

func agentCarried(w *inproc) []string {
	var out []string
	for _, m := range agentClosed.FindAllStringSubmatch(w.agentLog.String(), -1) {
		out = append(out, m[1])
	}
	return out
}

// checkPath fails unless the bytes took the path the test asked for: none
// through the agent with descriptors, some without.
func checkPath(t *testing.T, w *inproc, fdpass bool) {
	t.Helper()
	var carried []string
	deadline := time.Now().Add(5 * time.Second)
	for len(carried) == 0 && time.Now().Before(deadline) {
		carried = agentCarried(w)
		time.Sleep(20 * time.Millisecond)
	}
	if len(carried) == 0 {
		t.Fatalf("the agent logged no closed session:\n%s", w.agentLog.String())
	}
	some := false
	for _, n := range carried {
		if fdpass && n != "0" {
			t.Errorf("a session sent %s bytes over the link although the gateway holds its descriptors", n)
		}
		some = some || n != "0"
	}
	if !fdpass && !some {
		t.Errorf("no session sent anything over the link although descriptors are off")
	}
}

func TestDataPlaneExec(t *testing.T) {
	bothPaths(t, func(t *testing.T, w *inproc) {
		ctx := ctxT(t, time.Minute)
		r := sshtest.Run(t, w.client.SSH(ctx, "echo out; echo err >&2; exit 7"), nil)
		if r.Code != 7 || r.Stdout != "out\n" || r.Stderr != "err\n" {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 7, out, err", r.Code, r.Stdout, r.Stderr)
		}
		// Output written just before the exit is never cut off, and the
		// exit status is never lost (the classic exit-status race).
		want := strings.Repeat("0123456789abcdef", 2048)
		for i := range 5 {
			r := sshtest.Run(t, w.client.SSH(ctx, fmt.Sprintf("printf '%%s' %s; exit %d", want, i)), nil)
			if r.Code != i || r.Stdout != want {
				t.Fatalf("run %d: exit %d, %d bytes (want %d, %d)", i, r.Code, len(r.Stdout), i, len(want))
			}
		}
		// A signal death is 128+N.
		if r := sshtest.Run(t, w.client.SSH(ctx, "kill -TERM $$"), nil); r.Code != 143 {
			t.Errorf("killed by SIGTERM: exit %d, want 143", r.Code)
		}
		checkPath(t, w, t.Name() == "TestDataPlaneExec/fdpass")
	})
}

func TestDataPlaneStdin(t *testing.T) {
	bothPaths(t, func(t *testing.T, w *inproc) {
		ctx := ctxT(t, time.Minute)
		data := make([]byte, 8<<20)
		rand.Read(data)
		sum := sha256.Sum256(data)
		r := sshtest.Must(t, w.client.SSH(ctx, "sha256sum"), data)
		if got := strings.Fields(r.Stdout); len(got) == 0 || got[0] != hex.EncodeToString(sum[:]) {
			t.Fatalf("sha256 on the far side = %q, want %x", r.Stdout, sum)
		}
		// cat both ways: what goes in comes back, byte for byte.
		r = sshtest.Must(t, w.client.SSH(ctx, "cat"), data)
		if r.Stdout != string(data) {
			t.Fatalf("cat returned %d bytes, want the %d sent", len(r.Stdout), len(data))
		}
		checkPath(t, w, strings.HasSuffix(t.Name(), "/fdpass"))
	})
}

func TestDataPlanePTY(t *testing.T) {
	bothPaths(t, func(t *testing.T, w *inproc) {
		ctx := ctxT(t, time.Minute)
		r := sshtest.Run(t, w.client.SSH(ctx, "-tt", "--", "tty; echo done; exit 3"), nil)
		if r.Code != 3 || !strings.Contains(r.Stdout, "/dev/pts/") || !strings.Contains(r.Stdout, "done\r\n") {
			t.Fatalf("exit %d, output %q; want 3, a /dev/pts name and done\\r\\n (the terminal's ONLCR)", r.Code, r.Stdout)
		}
		// A background job that keeps the terminal open does not hold the
		// session once the command is done (the drain bound).
		start := time.Now()
		r = sshtest.Run(t, w.client.SSH(ctx, "-tt", "--", "setsid sleep 30 & echo bg"), nil)
		if r.Code != 0 || !strings.Contains(r.Stdout, "bg") {
			t.Fatalf("exit %d, output %q", r.Code, r.Stdout)
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("the session waited %v for a background job", d)
		}
		checkPath(t, w, strings.HasSuffix(t.Name(), "/fdpass"))
	})
}

// sftp and scp, with descriptors and over the link, served by OpenSSH's
// sftp-server (what an image that has it gets; CI installs it on the host)
// and by the agent's own (any other image).
func TestDataPlaneSFTP(t *testing.T) {
	for _, server := range []string{agent.SFTPServerInternal, "/usr/lib/openssh/sftp-server"} {
		if _, err := os.Stat(server); server != agent.SFTPServerInternal && err != nil && os.Getenv("CI") != "true" {
			t.Logf("%s is missing: only the agent's own sftp server is tested", server)
			continue
		}
		for _, fd := range []bool{true, false} {
			name := map[bool]string{true: "fdpass", false: "link"}[fd]
			t.Run(filepath.Base(server)+"/"+name, func(t *testing.T) {
				testDataPlaneSFTP(t, newInprocWith(t, gateway.Options{NoFDPass: !fd}, func(s *agent.Server) { s.SFTPServer = server }))
			})
		}
	}
}

func testDataPlaneSFTP(t *testing.T, w *inproc) {
	ctx := ctxT(t, time.Minute)
	local := t.TempDir()
	data := make([]byte, 6<<20)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(local, "up.bin"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	sshtest.Must(t, w.client.SFTP(ctx, fmt.Sprintf("put %s/up.bin up.bin\nget up.bin %s/down.bin\n", local, local)), nil)
	got, err := os.ReadFile(filepath.Join(w.home, "up.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("uploaded file: %d bytes, err %v; want the %d sent", len(got), err, len(data))
	}
	back, err := os.ReadFile(filepath.Join(local, "down.bin"))
	if err != nil || !bytes.Equal(back, data) {
		t.Fatalf("downloaded file: %d bytes, err %v", len(back), err)
	}
	// scp is sftp since OpenSSH 9; relative paths are $HOME's.
	sshtest.Must(t, w.client.SCP(ctx, filepath.Join(local, "up.bin"), w.client.Target("scp.bin")), nil)
	if got, err := os.ReadFile(filepath.Join(w.home, "scp.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("scp upload: %d bytes, err %v", len(got), err)
	}
	if strings.HasSuffix(t.Name(), "/fdpass") {
		// sftp inside the agent writes to the channel itself and counts
		// nothing, so only the descriptor side can be checked.
		checkPath(t, w, true)
	}
}

// tcpServer serves every connection to a new port on 127.0.0.1 with
// handle, in a goroutine of its own that closes it after, until the test
// ends; it returns the address.
func tcpServer(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return l.Addr().String()
}

// echoServer answers every connection with what it read, after the peer's
// half-close, then closes: a forward must carry both directions and the
// half-close between them.
func echoServer(t *testing.T) string {
	return tcpServer(t, func(c net.Conn) {
		b, _ := io.ReadAll(c)
		c.Write(b)
	})
}

// echoThrough sends data to the echo server behind addr (a forward that
// may take a moment to listen), half-closes, and returns what came back.
func echoThrough(addr string, data []byte) []byte {
	var got []byte
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && len(got) == 0; time.Sleep(100 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			continue
		}
		go func() {
			c.Write(data)
			c.(*net.TCPConn).CloseWrite()
		}()
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		got, _ = io.ReadAll(c)
		c.Close()
	}
	return got
}

func TestDataPlaneLocalForward(t *testing.T) {
	bothPaths(t, func(t *testing.T, w *inproc) {
		ctx := ctxT(t, time.Minute)
		echo := echoServer(t)
		lport := freePort(t)
		fwd := w.client.SSH(ctx, "-N", "-o", "ExitOnForwardFailure=yes",
			"-L", fmt.Sprintf("127.0.0.1:%d:%s", lport, echo),
			"-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:1", lport+1), "--")
		if err := fwd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fwd.Process.Kill(); fwd.Wait() })

		data := make([]byte, 4<<20)
		rand.Read(data)
		if got := echoThrough(fmt.Sprintf("127.0.0.1:%d", lport), data); !bytes.Equal(got, data) {
			t.Fatalf("the echo through -L returned %d bytes, want the %d sent", len(got), len(data))
		}
		// Nothing listens on port 1: the forwarded connection is closed at
		// once, and the forward still works afterwards.
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", lport+1), 5*time.Second); err == nil {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, rerr := c.Read(make([]byte, 1))
			c.Close()
			if n != 0 || rerr == nil {
				t.Errorf("refused forward: read %d, %v", n, rerr)
			}
		}
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", lport))
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("again"))
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if b, _ := io.ReadAll(c); string(b) != "again" {
			t.Errorf("after a refused forward: %q", b)
		}
		c.Close()
		handed := strings.Count(w.agentLog.String(), "connection handed to the gateway")
		if fd := strings.HasSuffix(t.Name(), "/fdpass"); fd != (handed > 0) {
			t.Errorf("%d forwards handed to the gateway (descriptors on: %v)", handed, fd)
		}
	})
}

// -R and agent forwarding: connections accepted in the container come back
// to the client. The echo's client writes, half-closes and reads, so the
// client sends its reply, EOF and CLOSE at once: the reply must not be lost
// (it was, before the pipe drained a forward's input on close).
func TestDataPlaneRemoteForwardAndAgent(t *testing.T) {
	bothPaths(t, func(t *testing.T, w *inproc) {
		ctx := ctxT(t, time.Minute)
		// -R: the agent listens "in the container" (here: this host) and
		// each connection comes back to the client, which dials the echo
		// server.
		echo := echoServer(t)
		rport := freePort(t)
		fwd := w.client.SSH(ctx, "-N", "-o", "ExitOnForwardFailure=yes",
			"-R", fmt.Sprintf("127.0.0.1:%d:%s", rport, echo), "--")
		if err := fwd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fwd.Process.Kill(); fwd.Wait() })
		data := make([]byte, 2<<20)
		rand.Read(data)
		if got := echoThrough(fmt.Sprintf("127.0.0.1:%d", rport), data); !bytes.Equal(got, data) {
			t.Fatalf("the echo through -R returned %d bytes, want the %d sent", len(got), len(data))
		}

		// Agent forwarding: ssh-add -l in the session reaches the client's
		// agent through the forwarded socket.
		dir := testenv.ShortTempDir(t)
		sock := filepath.Join(dir, "agent.sock")
		sa := exec.CommandContext(ctx, "ssh-agent", "-D", "-a", sock)
		if err := sa.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sa.Process.Kill(); sa.Wait() })
		for i := 0; i < 100; i++ {
			if _, err := os.Stat(sock); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		add := exec.Command("ssh-add", w.client.Key.Path)
		add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
		if out, err := add.CombinedOutput(); err != nil {
			t.Fatalf("ssh-add: %v %s", err, out)
		}
		c := w.client
		c.AgentSock = sock
		if r := sshtest.Run(t, c.SSH(ctx, "ssh-add -l"), nil); r.Code != 0 || !strings.Contains(r.Stdout, "alice") {
			t.Errorf("ssh-add -l through the forwarded agent: %+v", r)
		}
		handed := strings.Count(w.agentLog.String(), "connection handed to the gateway")
		if fd := strings.HasSuffix(t.Name(), "/fdpass"); fd != (handed >= 2) || (!fd && handed > 0) {
			t.Errorf("%d connections handed to the gateway (descriptors on: %v)", handed, fd)
		}
	})
}
