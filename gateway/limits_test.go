package gateway_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/sygaldry/sygaldry/internal/bind"
	"github.com/sygaldry/sygaldry/internal/usererr"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/gateway"
	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
	"github.com/sygaldry/sygaldry/workspace"
)

// noContainers fails every Ensure: the tests here never get that far, or
// check what the user sees when the engine fails.
type noContainers struct{ err error }

func (n noContainers) Ensure(context.Context, config.Resolved, string, io.Writer) (gateway.Target, error) {
	return gateway.Target{}, n.err
}
func (noContainers) Acquire(string) {}
func (noContainers) Release(string) {}

// bareGateway serves cfgExtra's [server] settings with the given containers.
func bareGateway(t *testing.T, serverTOML string, cs gateway.Containers) (addr string, alice sshtest.Key, cfg *config.Config) {
	t.Helper()
	addr, alice, cfg, _ = bareGatewayLog(t, serverTOML, cs, testenv.LogWriter(t))
	return addr, alice, cfg
}

// bareGatewayLog is bareGateway with its log written to logw.
func bareGatewayLog(t *testing.T, serverTOML string, cs gateway.Containers, logw io.Writer) (addr string, alice sshtest.Key, cfg *config.Config, gw *gateway.Server) {
	t.Helper()
	dir := testenv.ShortTempDir(t)
	alice = sshtest.NewKey(t, dir, "alice")
	cfg, err := config.Parse("t.toml", []byte(fmt.Sprintf(`
[server]
state_dir = %q
%s
[projects.zephyr]
members = ["alice"]
[users.alice]
keys = [%q]
`, filepath.Join(dir, "state"), serverTOML, alice.Authorized)))
	if err != nil {
		t.Fatal(err)
	}
	gw = mustNew(t, gateway.Options{Config: config.NewLive(cfg), Containers: cs, Logger: slog.New(slog.NewTextHandler(logw, nil))})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gw.Serve(l)
	t.Cleanup(func() { gw.Close() })
	return l.Addr().String(), alice, cfg, gw
}

// waitStartups waits until gw has active connections in the handshake and
// waiting ones in the queue: connections are admitted on their own
// goroutines, in no set order.
func waitStartups(t *testing.T, gw *gateway.Server, active, waiting int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		a, w := gateway.StartupCounts(gw)
		if a == active && w == waiting {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d in the handshake and %d waiting, want %d and %d", a, w, active, waiting)
		}
	}
}

// closedWithin reports whether the server closes c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 256)
	for {
		if _, err := c.Read(buf); err != nil {
			ne, ok := err.(net.Error)
			return !(ok && ne.Timeout())
		}
	}
}

func TestLoginGraceTime(t *testing.T) {
	addr, _, _ := bareGateway(t, `login_grace_time = "1s"`, noContainers{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Say nothing after the banner: the gateway must hang up by itself.
	if !closedWithin(c, 5*time.Second) {
		t.Fatal("a silent unauthenticated connection was kept past login_grace_time")
	}
}

// hasBanner reports whether the server sent its version line on c within d:
// the connection has a handshake slot.
func hasBanner(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-2.0-")
}

// silent opens n TCP connections from the local address src that never
// say anything.
func silent(t *testing.T, src, addr string, n int) []net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	var cs []net.Conn
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cs = append(cs, c)
	}
	return cs
}

// With max_startups = 2 and a queue of 3, two connections are in the
// handshake, three wait (no banner), the sixth is refused; a freed slot goes
// to a waiter, and logins work again once the silent ones are gone.
func TestMaxStartups(t *testing.T) {
	addr, alice, _, gw := bareGatewayLog(t, "max_startups = 2\nmax_startups_queue = 3\nper_source_max_startups = 5", noContainers{}, testenv.LogWriter(t))
	held := silent(t, "127.0.0.1", addr, 2)
	for i, c := range held {
		if !hasBanner(c, 10*time.Second) {
			t.Fatalf("connection %d got no slot", i)
		}
	}
	waiting := silent(t, "127.0.0.1", addr, 3)
	waitStartups(t, gw, 2, 3)
	for i, c := range waiting {
		if hasBanner(c, 300*time.Millisecond) {
			t.Fatalf("waiting connection %d got a slot past max_startups = 2", i)
		}
	}
	over := silent(t, "127.0.0.1", addr, 1)[0]
	if !closedWithin(over, 3*time.Second) {
		t.Fatal("a connection past max_startups_queue was kept")
	}
	held[0].Close()
	waitStartups(t, gw, 2, 2)
	got := 0
	for _, c := range waiting {
		if hasBanner(c, 300*time.Millisecond) {
			got++
		}
	}
	if got != 1 {
		t.Fatalf("%d waiters got the one freed slot", got)
	}
	for _, c := range append(held, waiting...) {
		c.Close()
	}
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var cl *gossh.Client
		if cl, err = dialGo(addr, "zephyr", alice.Signer); err == nil {
			cl.Close()
			break
		}
	}
	if err != nil {
		t.Fatalf("login after the slots freed: %v", err)
	}
}

// sshd's "start:rate:full": with rate 100, every connection from start on
// is refused at once (random early drop), none waits.
func TestMaxStartupsEarlyDrop(t *testing.T) {
	addr, _, _, gw := bareGatewayLog(t, `max_startups = "2:100:5"`, noContainers{}, testenv.LogWriter(t))
	for i, c := range silent(t, "127.0.0.1", addr, 2) {
		if !hasBanner(c, 10*time.Second) {
			t.Fatalf("connection %d below start got no slot", i)
		}
	}
	waitStartups(t, gw, 2, 0)
	if c := silent(t, "127.0.0.1", addr, 1)[0]; !closedWithin(c, 3*time.Second) {
		t.Fatal("a connection at start with rate 100% was not dropped")
	}
}

// A flood of silent connections from one address takes its source's share
// of slots and waits for the rest; an OpenSSH login from another address
// gets a slot at once and logs in.
func TestSilentFloodDoesNotLockOutOthers(t *testing.T) {
	sshtest.Require(t, "ssh")
	addr, alice, cfg := bareGateway(t, "", noContainers{err: usererr.New("no containers in this test", nil)})
	flood := silent(t, "127.0.0.1", addr, 80) // more than the 64 slots
	banners := make(chan bool, len(flood))
	for _, c := range flood {
		go func() { banners <- hasBanner(c, time.Second) }()
	}
	served := 0
	for range flood {
		if <-banners {
			served++
		}
	}
	if served != cfg.Server.PerSourceMaxStartups {
		t.Fatalf("%d of the flood's connections got a slot, want per_source_max_startups = %d", served, cfg.Server.PerSourceMaxStartups)
	}
	host, port, _ := net.SplitHostPort(addr)
	c := sshtest.Client{Host: host, Port: port, Login: "zephyr", Key: alice, Extra: []string{"-b", "127.0.0.2"}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	r := sshtest.Run(t, c.SSH(ctx, "true"), nil)
	// The session fails (no containers here) after a successful login.
	if !strings.Contains(r.Stderr, "sygaldry: no containers in this test") {
		t.Fatalf("login from 127.0.0.2 during the flood: %v", r)
	}
	t.Logf("login from 127.0.0.2 during a flood of 80 silent connections from 127.0.0.1: %v", time.Since(start).Round(time.Millisecond))
}

// A silent connection in a slot is closed after kex_timeout, long before
// login_grace_time; a login that has begun authenticating is not.
func TestKexTimeout(t *testing.T) {
	addr, alice, _ := bareGateway(t, "login_grace_time = \"60s\"\nkex_timeout = \"1s\"", noContainers{})
	c := silent(t, "127.0.0.1", addr, 1)[0]
	if !hasBanner(c, 10*time.Second) {
		t.Fatal("no banner")
	}
	start := time.Now()
	if !closedWithin(c, 10*time.Second) {
		t.Fatal("a silent connection outlived kex_timeout")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("closed after %v, want about kex_timeout (1s)", d)
	}
	// A client that is slow to authenticate (a passphrase to type) is past
	// the key exchange: kex_timeout no longer applies, login_grace_time does.
	cl, err := gossh.Dial("tcp", addr, &gossh.ClientConfig{
		User: "zephyr",
		Auth: []gossh.AuthMethod{gossh.PublicKeysCallback(func() ([]gossh.Signer, error) {
			time.Sleep(2 * time.Second) // after the "none" request, past kex_timeout
			return []gossh.Signer{alice.Signer}, nil
		})},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("a login slow to authenticate was cut by kex_timeout: %v", err)
	}
	defer cl.Close()
	time.Sleep(1500 * time.Millisecond) // past kex_timeout again, authenticated
	if _, _, err := cl.SendRequest("keepalive@openssh.com", true, nil); err != nil {
		t.Fatalf("an authenticated connection was closed by kex_timeout: %v", err)
	}
}

// 200 simultaneous logins from one address all get in with the default
// settings: past the slots they wait instead of being refused.
func TestLoginBurstWaits(t *testing.T) {
	addr, alice, _ := bareGateway(t, "", noContainers{})
	const n = 200
	errs := make(chan error, n)
	start := time.Now()
	for range n {
		go func() {
			c, err := gossh.Dial("tcp", addr, &gossh.ClientConfig{
				User: "zephyr", Auth: []gossh.AuthMethod{gossh.PublicKeys(alice.Signer)},
				HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 30 * time.Second,
			})
			if err == nil {
				c.Close()
			}
			errs <- err
		}()
	}
	failed := 0
	for range n {
		if err := <-errs; err != nil {
			if failed == 0 {
				t.Errorf("login: %v", err)
			}
			failed++
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d simultaneous logins failed", failed, n)
	}
	t.Logf("%d simultaneous logins from 127.0.0.1: all in after %v", n, time.Since(start).Round(time.Millisecond))
}

// Refusals of unauthenticated connections are logged at a bounded rate,
// with a count of the lines left out.
func TestPreLoginLogIsRateLimited(t *testing.T) {
	var logs testenv.SyncBuffer
	addr, _, _, gw := bareGatewayLog(t, "max_startups = 1\nmax_startups_queue = 1", noContainers{}, &logs)
	silent(t, "127.0.0.1", addr, 2) // one in the handshake, one waiting
	waitStartups(t, gw, 1, 1)
	for _, c := range silent(t, "127.0.0.1", addr, 120) {
		if !closedWithin(c, 5*time.Second) {
			t.Fatal("a connection past the queue was kept")
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "suppressed=") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	out := logs.String()
	refused := strings.Count(out, "refusing connection")
	if refused >= 120 || refused == 0 {
		t.Fatalf("%d refusal lines for 120 refused connections", refused)
	}
	if !strings.Contains(out, "suppressed=") {
		t.Fatalf("no line counts the suppressed ones:\n%s", out)
	}
	t.Logf("%d of 120 refusal lines logged", refused)
}

func dialGo(addr, user string, signers ...gossh.Signer) (*gossh.Client, error) {
	return gossh.Dial("tcp", addr, &gossh.ClientConfig{
		User:            user,
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(signers...)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(),
		Timeout:         10 * time.Second,
	})
}

// Only public keys authenticate: no password, no "none", and a client that
// offers many wrong keys is cut off after max_auth_tries.
func TestOnlyPublicKeyAuth(t *testing.T) {
	addr, alice, _ := bareGateway(t, "max_auth_tries = 3", noContainers{})
	_, err := gossh.Dial("tcp", addr, &gossh.ClientConfig{
		User: "zephyr", Auth: []gossh.AuthMethod{gossh.Password("x")},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second,
	})
	if err == nil {
		t.Fatal("password login succeeded")
	}
	_, err = gossh.Dial("tcp", addr, &gossh.ClientConfig{
		User: "zephyr", HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second,
	})
	if err == nil {
		t.Fatal("login without credentials succeeded")
	}
	// Strangers' keys before alice's: alice's is never reached. x/crypto
	// lets the first max_auth_tries refused key *queries* go unpenalised (so
	// a client with several agent keys still gets in) and counts the rest.
	dir := testenv.ShortTempDir(t)
	var signers []gossh.Signer
	for i := range 3 + 3 + 1 {
		signers = append(signers, sshtest.NewKey(t, dir, fmt.Sprintf("k%d", i)).Signer)
	}
	if _, err := dialGo(addr, "zephyr", append(signers, alice.Signer)...); err == nil {
		t.Fatal("authenticated after more than max_auth_tries keys")
	}
	c, err := dialGo(addr, "zephyr", alice.Signer)
	if err != nil {
		t.Fatalf("alice: %v", err)
	}
	c.Close()
}

// Host keys are generated once (0600) and reused across restarts.
func TestHostKeysPersist(t *testing.T) {
	dir := testenv.ShortTempDir(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	first, err := gateway.LoadHostKeys(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	again, err := gateway.LoadHostKeys(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) == 0 || len(first) != len(again) {
		t.Fatalf("%d then %d keys", len(first), len(again))
	}
	for i := range first {
		if gossh.FingerprintSHA256(first[i].PublicKey()) != gossh.FingerprintSHA256(again[i].PublicKey()) {
			t.Errorf("host key %d changed on reload", i)
		}
	}
	entries, _ := filepath.Glob(filepath.Join(dir, "ssh_host_*_key"))
	for _, p := range entries {
		fi, _ := os.Stat(p)
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", p, fi.Mode().Perm())
		}
	}
	os.Chmod(entries[0], 0o644)
	if _, err := gateway.LoadHostKeys(dir, log); err == nil || !strings.Contains(err.Error(), "too open") {
		t.Errorf("world-readable host key accepted: %v", err)
	}
}

// With the Docker engine down, the user gets a short explanation on stderr
// and ssh exits 255; nothing hangs.
func TestEngineDownTellsTheUser(t *testing.T) {
	sshtest.Require(t, "ssh")
	dir := testenv.ShortTempDir(t)
	mgr, err := workspace.NewManager(workspace.Options{
		Host: "unix://" + filepath.Join(dir, "no-docker.sock"), StorageRoot: filepath.Join(dir, "s"),
		StateDir: filepath.Join(dir, "st"), AgentPath: "/bin/true",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mgr.Close() })
	addr, alice, _ := bareGateway(t, "", bind.Containers(mgr))
	host, port, _ := net.SplitHostPort(addr)
	c := sshtest.Client{Host: host, Port: port, Login: "zephyr", Key: alice}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := sshtest.Run(t, c.SSH(ctx, "true"), nil)
	if r.Code != 255 || !strings.Contains(r.Stderr, "sygaldry: ") {
		t.Fatalf("engine down: %v", r)
	}
	if strings.Contains(r.Stderr, "goroutine") || strings.Contains(r.Stderr, ".go:") {
		t.Errorf("internals leaked to the user: %q", r.Stderr)
	}
}

// A login name a client chose reaches the log escaped and cut.
func TestPreLoginLogCutsLoginNames(t *testing.T) {
	var logs testenv.SyncBuffer
	addr, _, _, _ := bareGatewayLog(t, "", noContainers{}, &logs)
	stranger := sshtest.NewKey(t, testenv.ShortTempDir(t), "stranger")
	login := "\x1b[31mroot\n" + strings.Repeat("a", 2000)
	if _, err := dialGo(addr, login, stranger.Signer); err == nil {
		t.Fatal("a stranger logged in")
	}
	var line string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "key refused") {
				line = l
			}
		}
		if line != "" {
			break
		}
	}
	if line == "" {
		t.Fatalf("no key refused line:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "\x1b") || strings.Contains(line, strings.Repeat("a", 100)) {
		t.Fatalf("login name not escaped and cut: %q", line)
	}
	if !strings.Contains(line, `x1b[31mroot`) || !strings.Contains(line, "(2010 bytes)") {
		t.Errorf("the cut login does not show its start and length: %q", line)
	}
}

// Closing the gateway ends the connections in the handshake and those
// waiting for a slot at once, not after kex_timeout or login_grace_time.
func TestCloseEndsUnauthenticatedConnections(t *testing.T) {
	addr, _, _, gw := bareGatewayLog(t, "max_startups = 1", noContainers{}, testenv.LogWriter(t))
	cs := silent(t, "127.0.0.1", addr, 2)
	waitStartups(t, gw, 1, 1)
	start := time.Now()
	gw.Close()
	for i, c := range cs {
		if !closedWithin(c, 3*time.Second) {
			t.Fatalf("connection %d (0: in the handshake, 1: waiting) outlived Close", i)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Close took %v", d)
	}
}

// An Ensure failure without a user's text (usererr) reaches the user as
// the gateway's one generic line, never as the Go error with host paths.
func TestEnsureErrorWithoutUserTextIsGeneric(t *testing.T) {
	sshtest.Require(t, "ssh")
	addr, alice, _ := bareGateway(t, "", noContainers{err: errors.New("dial unix /var/lib/secret/agent.sock: connection refused")})
	host, port, _ := net.SplitHostPort(addr)
	c := sshtest.Client{Host: host, Port: port, Login: "zephyr", Key: alice}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := sshtest.Run(t, c.SSH(ctx, "true"), nil)
	if r.Code == 0 || !strings.Contains(r.Stderr, "sygaldry: your container could not be started") || strings.Contains(r.Stderr, "/var/lib/secret") {
		t.Fatalf("session after an Ensure error with no user's text: %v", r)
	}
}
