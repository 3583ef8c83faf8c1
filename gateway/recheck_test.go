package gateway_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/admin"
	"github.com/sygaldry/sygaldry/admin/client"
	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/gateway"
	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
	"github.com/sygaldry/sygaldry/sessions"
)

// withLogs tees the gateway's log into b.
func withLogs(b *testenv.SyncBuffer) worldOpt {
	return func(w *worldTOML) { w.logs = b }
}

// withHistory keeps a session history (world.history).
func withHistory() worldOpt {
	return func(w *worldTOML) { w.history = true }
}

func (w *world) parse(doc string) *config.Config {
	w.t.Helper()
	c, err := config.Parse("test.toml", []byte(doc))
	if err != nil {
		w.t.Fatalf("config: %v", err)
	}
	return c
}

func (w *world) reload(doc string) {
	w.t.Helper()
	w.live.Set(w.parse(doc))
	w.gw.Recheck()
}

// waitConn waits for an authenticated connection of user that is not in
// known to show up in the registry, and returns its ID.
func (w *world) waitConn(t *testing.T, user string, known ...string) string {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, in := range w.registry.List() {
			if in.Kind == sessions.KindConnection && in.User == user && !slices.Contains(known, in.ID) {
				return in.ID
			}
		}
	}
	t.Fatalf("no connection of %s in the registry: %+v", user, w.registry.List())
	return ""
}

// startBackground starts an ssh that runs until something ends it (ssh -N,
// a ControlMaster) and waits for its connection to be registered.
func startBackground(t *testing.T, ctx context.Context, w *world, c sshtest.Client, user string, args ...string) (*liveSession, string) {
	t.Helper()
	known := []string{}
	for _, in := range w.registry.List() {
		known = append(known, in.ID, in.Conn)
	}
	s := &liveSession{t: t, cmd: c.SSH(ctx, args...), stderr: &testenv.SyncBuffer{}, done: make(chan struct{})}
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(s.done)
		s.cmd.Wait()
	}()
	t.Cleanup(func() { s.cmd.Process.Kill(); <-s.done })
	return s, w.waitConn(t, user, known...)
}

func (s *liveSession) running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// A reload that removes bob's key ends bob's connections, his `ssh -N`
// tunnel and his running command, with one line on the command's stderr;
// alice's session goes on, and the admin log says what happened.
func TestReloadRevokingKeyEndsConnections(t *testing.T) {
	logs := &testenv.SyncBuffer{}
	w := newWorld(t, withLogs(logs))
	ctx := ctxT(t, 3*time.Minute)
	bob := w.client(w.bob)
	sshtest.Must(t, bob.SSH(ctx, "true"), nil)
	tunnel, _ := startBackground(t, ctx, w, bob, "bob", "-N", "-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:22", freePort(t)), "--")
	shell := startLive(t, ctx, bob)
	alice := startLive(t, ctx, w.client(w.alice))

	w.reload(strings.Replace(w.doc, w.bob.Authorized, w.stranger.Authorized, 1))

	if code := shell.wait(20 * time.Second); code == 0 {
		t.Error("bob's command exited 0 after his key was removed")
	}
	want := "sygaldry: your access to " + w.project + " was withdrawn by the administrator; this connection is closed"
	if !strings.Contains(shell.stderr.String(), want) {
		t.Errorf("bob was not told: %q", shell.stderr.String())
	}
	if strings.Count(shell.stderr.String(), "withdrawn") != 1 {
		t.Errorf("not one line: %q", shell.stderr.String())
	}
	tunnel.wait(20 * time.Second)
	if !alice.running() {
		t.Errorf("alice's session ended too: %q", alice.stderr.String())
	}
	if !strings.Contains(logs.String(), "ending connection: the reloaded config withdrew its access") ||
		!strings.Contains(logs.String(), "no longer authenticates bob") {
		t.Errorf("the admin log does not say why:\n%s", logs)
	}
	if r := sshtest.Run(t, bob.SSH(ctx, "true"), nil); r.Code != 255 {
		t.Errorf("bob's removed key still logs in: %v", r)
	}
}

// A reload that removes bob from the project ends his connection to it,
// not his connection to another project he still belongs to.
func TestReloadRemovingMembershipEndsOnlyThatProject(t *testing.T) {
	extra := testenv.UniqueName("x")
	logs := &testenv.SyncBuffer{}
	w := newWorld(t, withLogs(logs), withTailTOML("[projects."+extra+"]\nmembers = [\"bob\"]"))
	ctx := ctxT(t, 3*time.Minute)
	inProject := startLive(t, ctx, w.client(w.bob))
	elsewhere, _ := startBackground(t, ctx, w, w.client(w.bob, extra), "bob", "-N", "--")

	w.reload(strings.Replace(w.doc, `members = ["alice", "bob"]`, `members = ["alice"]`, 1))

	inProject.wait(20 * time.Second)
	if !strings.Contains(inProject.stderr.String(), "your access to "+w.project+" was withdrawn") {
		t.Errorf("bob was not told: %q", inProject.stderr.String())
	}
	if !strings.Contains(logs.String(), "bob is no longer a member of "+w.project) {
		t.Errorf("the admin log does not say why:\n%s", logs)
	}
	time.Sleep(500 * time.Millisecond)
	if !elsewhere.running() {
		t.Errorf("bob's connection to the other project ended too: %q", elsewhere.stderr.String())
	}
}

// masterClient is c with an OpenSSH connection-sharing socket at path.
func masterClient(c sshtest.Client, path string) sshtest.Client {
	c.Extra = append(slices.Clone(c.Extra), "-o", "ControlPath="+path)
	return c
}

// A connection that authenticated before bob left the project can open no
// new channel and make no new global request, even if it is asked in the
// instant before a reload's sweep reaches it (Live.Set swaps the config
// without the sweep); each refused attempt ends that connection.
func TestNewChannelsAndRequestsAreRechecked(t *testing.T) {
	logs := &testenv.SyncBuffer{}
	w := newWorld(t, withLogs(logs))
	ctx := ctxT(t, 3*time.Minute)
	dir := testenv.ShortTempDir(t)
	bob := w.client(w.bob)
	sshtest.Must(t, bob.SSH(ctx, "true"), nil)

	// Three idle ControlMasters: one for a session, one for a remote
	// forward, one that has a remote forward the agent uses.
	m1 := masterClient(bob, filepath.Join(dir, "m1"))
	master1, _ := startBackground(t, ctx, w, m1, "bob", "-N", "-o", "ControlMaster=yes", "--")
	m2 := masterClient(bob, filepath.Join(dir, "m2"))
	master2, _ := startBackground(t, ctx, w, m2, "bob", "-N", "-o", "ControlMaster=yes", "--")
	target := freePort(t)
	inside := 47000 + target%1000 // the remote forward's port in bob's container
	m3 := masterClient(bob, filepath.Join(dir, "m3"))
	master3, _ := startBackground(t, ctx, w, m3, "bob", "-N", "-o", "ControlMaster=yes", "-o", "ExitOnForwardFailure=yes",
		"-R", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", inside, target), "--")
	// The forward is in place once the agent listens on it.
	listening := fmt.Sprintf(":%04X 00000000:0000 0A", inside)
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(w.dockerExec("bob", "cat", "/proc/net/tcp"), listening); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the remote forward never listened in the container")
		}
	}
	if r := sshtest.Must(t, m1.SSH(ctx, "echo via-master"), nil); r.Stdout != "via-master\n" {
		t.Fatalf("the master does not work: %v", r)
	}

	w.live.Set(w.parse(strings.Replace(w.doc, `members = ["alice", "bob"]`, `members = ["alice"]`, 1)))

	// A new session on an old connection.
	r := sshtest.Run(t, m1.SSH(ctx, "echo must-not-run"), nil)
	if r.Code == 0 || strings.Contains(r.Stdout, "must-not-run") || !strings.Contains(r.Stderr, "refused") {
		t.Errorf("new session on the old connection: %v", r)
	}
	master1.wait(20 * time.Second)

	// A new remote forward (a global request) on an old connection.
	r = sshtest.Run(t, m2.SSH(ctx, "-O", "forward", "-R", "127.0.0.1:0:127.0.0.1:9", "--"), nil)
	if r.Code == 0 {
		t.Errorf("new remote forward on the old connection: %v", r)
	}
	master2.wait(20 * time.Second)

	// A connection to bob's existing remote forward, made inside his
	// container: the agent opens a channel towards the client, refused.
	w.dockerExec("bob", "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d; sleep 1", inside))
	master3.wait(20 * time.Second)

	for _, what := range []string{"refused=\"channel session\"", "refused=\"request tcpip-forward\"", "refused=\"agent channel forwarded-tcpip\""} {
		if !strings.Contains(logs.String(), what) {
			t.Errorf("log lacks %s", what)
		}
	}
}

// An idle `ssh -N` connection is listed by the admin API (what `sygctl
// sessions` shows) as a row of kind "connection", and killing its ID ends
// it; killing the connection of a session (`sygctl sessions kill --conn`)
// ends that session with one line and the connection with it.
func TestAdminListsAndKillsConnections(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t, 3*time.Minute)
	sock := filepath.Join(testenv.ShortTempDir(t), "admin.sock")
	l, err := admin.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &admin.Server{Sessions: admin.FromRegistry(w.registry)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	cl := client.New(sock)

	tunnel, connID := startBackground(t, ctx, w, w.client(w.bob), "bob", "-N", "-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:22", freePort(t)), "--")
	list, err := cl.Sessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(list, func(s client.Session) bool { return s.ID == connID })
	if i < 0 {
		t.Fatalf("the -N connection %s is not listed: %+v", connID, list)
	}
	if c := list[i]; c.Kind != "connection" || c.User != "bob" || c.Project != w.project || !strings.HasPrefix(c.RemoteAddr, "127.0.0.1:") ||
		c.Started.IsZero() || !strings.HasPrefix(c.ID, "c") {
		t.Errorf("connection row %+v", c)
	}
	// An idle connection is not a live channel for the metrics.
	mfs, err := w.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if mf.GetName() == "sygaldry_sessions_live" && l.GetName() == "kind" && l.GetValue() == "connection" {
					t.Errorf("sygaldry_sessions_live counts idle connections: %v", m)
				}
			}
		}
	}
	if err := cl.Kill(ctx, connID, "maintenance"); err != nil {
		t.Fatal(err)
	}
	tunnel.wait(20 * time.Second)

	live := startLive(t, ctx, w.client(w.alice))
	list, err = cl.Sessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sid string
	for _, s := range list {
		if s.Command == longCommand {
			sid = s.ID
		}
		if s.Kind == "connection" && s.User == "alice" {
			t.Errorf("alice's connection listed beside its session: %+v", s)
		}
	}
	conn, err := cl.KillConn(ctx, sid, "maintenance")
	if err != nil || !strings.HasPrefix(conn, "c") {
		t.Fatalf("KillConn(%s) = %q, %v", sid, conn, err)
	}
	if code := live.wait(20 * time.Second); code == 0 {
		t.Error("killed connection's command exited 0")
	}
	if !strings.Contains(live.stderr.String(), "sygaldry: connection closed by an administrator: maintenance") {
		t.Errorf("alice was not told: %q", live.stderr.String())
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if len(w.registry.List()) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still listed after the kill: %+v", w.registry.List())
		}
	}
}

// A command longer than 1 KiB is cut, with a marker, in the log and the
// history.
func TestLongCommandsCutInLogAndHistory(t *testing.T) {
	logs := &testenv.SyncBuffer{}
	w := newWorld(t, withLogs(logs), withHistory())
	ctx := ctxT(t, 2*time.Minute)
	long := "true " + strings.Repeat("a", 3000)
	sshtest.Must(t, w.client(w.alice).SSH(ctx, long), nil)
	rec := waitHistory(t, w, 1)[0]
	waitLog(t, logs, `msg="channel closed"`) // logged just after the history line
	if want := " …[cut: 3005 bytes]"; !strings.HasSuffix(rec.Command, want) || len(rec.Command) != sessions.MaxCommand || !strings.HasPrefix(rec.Command, "true aaa") {
		t.Errorf("history command (%d bytes) ends %q", len(rec.Command), rec.Command[max(0, len(rec.Command)-30):])
	}
	if strings.Contains(logs.String(), strings.Repeat("a", sessions.MaxCommand)) {
		t.Error("the log holds the whole command")
	}
	if !strings.Contains(logs.String(), "…[cut: 3005 bytes]") {
		t.Error("the log does not mark the cut")
	}
}

// server.log_commands = false keeps commands out of the log, the live list
// and the history.
func TestLogCommandsOff(t *testing.T) {
	logs := &testenv.SyncBuffer{}
	w := newWorld(t, withLogs(logs), withHistory(), withServerTOML("log_commands = false"))
	ctx := ctxT(t, 2*time.Minute)
	const secret = "token-5b7e0c1d9a"
	sshtest.Must(t, w.client(w.alice).SSH(ctx, "true "+secret), nil)
	startLive(t, ctx, w.client(w.alice))
	for _, in := range w.registry.List() {
		if in.Command != "" {
			t.Errorf("live list shows the command %q", in.Command)
		}
	}
	rec := waitHistory(t, w, 1)[0]
	waitLog(t, logs, `msg="channel closed"`) // logged just after the history line
	if rec.Command != "" || rec.Kind != "exec" {
		t.Errorf("history record %+v", rec)
	}
	if strings.Contains(logs.String(), secret) || strings.Contains(logs.String(), longCommand) {
		t.Errorf("the log holds a command:\n%s", logs)
	}
}

func waitLog(t *testing.T, logs *testenv.SyncBuffer, s string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), s); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the log never said %s", s)
		}
	}
}

func waitHistory(t *testing.T, w *world, n int) []sessions.Info {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		h, err := w.history.Read(0)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) >= n {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("history has %d records, want %d", len(h), n)
		}
	}
}

// A reload that stops trusting a CA ends the connections its certificates
// authenticated; the same user's key-authenticated session goes on.
func TestReloadDistrustingCAEndsCertificateConnections(t *testing.T) {
	sshtest.Require(t, "ssh-keygen")
	dir := testenv.ShortTempDir(t)
	ca, caPub := newCA(t, dir, "team-ca")
	trust := `trusted_user_ca_keys = [` + strconvQuote(caPub) + `]`
	w := newWorld(t, withServerTOML(trust))
	ctx := ctxT(t, 3*time.Minute)
	cert := certKey(t, dir, "alice-laptop", ca, "-n", "alice", "-V", "-5m:+1h")
	byKey := startLive(t, ctx, w.client(w.alice))
	byCert := startLive(t, ctx, w.client(cert))
	tunnel, _ := startBackground(t, ctx, w, w.client(cert), "alice", "-N", "--")

	w.reload(strings.Replace(w.doc, trust, "trusted_user_ca_keys = []", 1))

	byCert.wait(20 * time.Second)
	tunnel.wait(20 * time.Second)
	if !strings.Contains(byCert.stderr.String(), "your access to "+w.project+" was withdrawn") {
		t.Errorf("the certificate's user was not told: %q", byCert.stderr.String())
	}
	time.Sleep(500 * time.Millisecond)
	if !byKey.running() {
		t.Errorf("alice's key-authenticated session ended too: %q", byKey.stderr.String())
	}
}

// A reload that lands after a login was authorized but before its
// handshake is over still refuses it: an `ssh -N`, which opens nothing
// that a later re-check would catch, is turned away at login.
func TestReloadDuringHandshakeRefusesLogin(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t, 2*time.Minute)
	revoked := w.parse(strings.Replace(w.doc, w.bob.Authorized, w.stranger.Authorized, 1))
	var once sync.Once
	gateway.SetTestHook(t, func(point, project string) {
		if point == "authorized" && project == w.project {
			once.Do(func() {
				w.live.Set(revoked)
				w.gw.Recheck()
			})
		}
	})
	cmd := w.client(w.bob).SSH(ctx, "-N", "--")
	var stderr testenv.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("bob's ssh -N is still connected after a reload removed his key mid-handshake")
	}
	if cmd.ProcessState.ExitCode() != 255 || !strings.Contains(stderr.String(), "Permission denied") {
		t.Errorf("exit %d, stderr %q; want a refused login", cmd.ProcessState.ExitCode(), stderr.String())
	}
	for _, in := range w.registry.List() {
		if in.User == "bob" {
			t.Errorf("bob is listed: %+v", in)
		}
	}
}
