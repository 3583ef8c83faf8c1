package gateway_test

import (
	"bufio"
	"context"
	"fmt"
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
	sygcontainer "github.com/sygaldry/sygaldry/container"
	"github.com/sygaldry/sygaldry/gateway"
	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
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
	gw := &gateway.Server{Config: cfg, Containers: cs, Logger: slog.New(slog.NewTextHandler(testenv.LogWriter(t), nil))}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gw.Serve(l)
	t.Cleanup(func() { gw.Close() })
	return l.Addr().String(), alice, cfg
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

func TestMaxStartups(t *testing.T) {
	addr, alice, _ := bareGateway(t, "max_startups = 2", noContainers{})
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// The server's version line proves it admitted the connection.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasPrefix(line, "SSH-2.0-") {
			t.Fatalf("no banner: %q %v", line, err)
		}
		held = append(held, c)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !closedWithin(c, 3*time.Second) {
		t.Fatal("a third unauthenticated connection was accepted with max_startups = 2")
	}
	// Once the pre-auth connections go, logins work again.
	for _, h := range held {
		h.Close()
	}
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
	mgr, err := sygcontainer.NewManager(sygcontainer.Options{
		Host: "unix://" + filepath.Join(dir, "no-docker.sock"), StorageRoot: filepath.Join(dir, "s"),
		StateDir: filepath.Join(dir, "st"), AgentPath: "/bin/true",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mgr.Close() })
	addr, alice, _ := bareGateway(t, "", gateway.ManagerContainers(mgr))
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
