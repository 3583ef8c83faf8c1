package gateway_test

import (
	"bufio"
	"context"
	"errors"
	"github.com/sygaldry/sygaldry/internal/bind"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sygaldry/sygaldry/admin"
	"github.com/sygaldry/sygaldry/admin/client"
	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
)

// An admin sees a live session through the admin API (what `sygctl
// sessions` shows) and kills it; the user is told why.
func TestAdminListsAndKillsSession(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t, 2*time.Minute)
	sock := filepath.Join(testenv.ShortTempDir(t), "admin.sock")
	l, err := admin.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &admin.Server{Sessions: admin.FromRegistry(w.registry), Containers: bind.AdminContainers(w.mgr)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	cl := client.New(sock)

	live := startLive(t, ctx, w.client(w.alice))

	list, err := cl.Sessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var id string
	for _, s := range list {
		if s.Kind == "exec" && s.Command == longCommand {
			id = s.ID
			if s.User != "alice" || s.Project != w.project || s.Container != "sygaldry-"+w.project+"-alice" ||
				!strings.HasPrefix(s.RemoteAddr, "127.0.0.1:") || s.Started.IsZero() {
				t.Errorf("session = %+v", s)
			}
		}
	}
	if id == "" {
		t.Fatalf("session not listed: %+v", list)
	}
	cs, err := cl.Containers(ctx)
	if err != nil || len(cs) == 0 {
		t.Fatalf("containers: %v %v", cs, err)
	}

	if err := cl.Kill(ctx, id, "maintenance"); err != nil {
		t.Fatal(err)
	}
	if code := live.wait(20 * time.Second); code == 0 {
		t.Error("killed session exited 0")
	}
	if !strings.Contains(live.stderr.String(), "killed by an administrator: maintenance") {
		t.Errorf("user was not told: %q", live.stderr.String())
	}
	// The session leaves the live list (and enters the history) once its
	// teardown finishes; then it cannot be killed again.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		list, err := cl.Sessions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(list, func(s client.Session) bool { return s.ID == id }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("killed session still listed")
		}
	}
	if err := cl.Kill(ctx, id, ""); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("killing an ended session: %v, want ErrNotFound", err)
	}
}

// The Prometheus metrics follow what users do: connections, refused keys,
// ended sessions by kind, bytes, container start time, and live sessions.
func TestMetrics(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t, 2*time.Minute)
	c := w.client(w.alice)
	sshtest.Must(t, c.SSH(ctx, "head -c 1000 /dev/zero"), nil)
	sshtest.Run(t, w.client(w.stranger).SSH(ctx, "true"), nil)

	startLive(t, ctx, c)

	srv := httptest.NewServer(promhttp.HandlerFor(w.metrics, promhttp.HandlerOpts{}))
	defer srv.Close()
	var body string
	// Ended-session counters are updated when the teardown finishes.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		if strings.Contains(body, `sygaldry_sessions_total{kind="exec"} 1`) {
			break
		}
	}
	for _, want := range []string{
		`sygaldry_sessions_total{kind="exec"} 1`,
		`sygaldry_session_bytes_total{direction="out"} 1000`,
		`sygaldry_sessions_live{kind="exec",project="` + w.project + `"} 1`,
		`sygaldry_ssh_connections_authenticated 1`,
		`sygaldry_container_ensure_seconds_count{outcome="ok"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, re := range []string{`sygaldry_ssh_connections_total [3-9]`, `sygaldry_ssh_key_refusals_total [1-9]`} {
		if !regexp.MustCompile(re).MatchString(body) {
			t.Errorf("metrics do not match %s", re)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
}

// Adding a member is a config edit and a reload (SIGHUP in the daemon): the
// new member gets in, and sessions already running are not cut.
func TestReloadAdmitsNewMemberKeepsSessions(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t, 2*time.Minute)
	if r := sshtest.Run(t, w.client(w.carol).SSH(ctx, "true"), nil); r.Code != 255 {
		t.Fatalf("carol before the reload: %v", r)
	}
	long := w.client(w.alice).SSH(ctx, "echo started; sleep 3; echo still-here")
	stdout, _ := long.StdoutPipe()
	if err := long.Start(); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(stdout)
	rd.ReadString('\n')

	doc := strings.Replace(w.doc, `members = ["alice", "bob"]`, `members = ["alice", "bob", "carol"]`, 1)
	next, err := config.Parse("test.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	w.live.Set(next)
	w.gw.Recheck()
	if r := sshtest.Run(t, w.client(w.carol).SSH(ctx, "id -un"), nil); r.Code != 0 || r.Stdout != "kvothe\n" {
		t.Errorf("carol after the reload: %v", r)
	}
	if line, _ := rd.ReadString('\n'); line != "still-here\n" {
		t.Errorf("alice's session across the reload: %q", line)
	}
	if err := long.Wait(); err != nil {
		t.Errorf("alice's session: %v", err)
	}
}

// A gateway shutdown lets sessions finish for the drain time, then ends the
// rest with a message; the container keeps running.
func TestShutdownTellsUsers(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t, 2*time.Minute)
	live := startLive(t, ctx, w.client(w.alice))
	sctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := w.gw.Shutdown(sctx); err == nil {
		t.Error("Shutdown with a live session returned no deadline error")
	}
	live.wait(20 * time.Second)
	if !strings.Contains(live.stderr.String(), "the gateway is restarting") {
		t.Errorf("user was not told: %q", live.stderr.String())
	}
	if cs := w.containers(ctx, "alice"); len(cs) != 1 || cs[0].State != "running" {
		t.Errorf("container after gateway shutdown: %+v", cs)
	}
}
