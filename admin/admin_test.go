package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/admin"
	"github.com/sygaldry/sygaldry/admin/api"
	"github.com/sygaldry/sygaldry/admin/client"
	"github.com/sygaldry/sygaldry/internal/testenv"
	"github.com/sygaldry/sygaldry/sessions"
)

type fakeContainers struct {
	list []api.ContainerInfo
	err  error
}

func (f *fakeContainers) List(context.Context) ([]api.ContainerInfo, error) { return f.list, f.err }

type env struct {
	sock string
	reg  *sessions.Registry
	hist *sessions.History
	srv  *admin.Server
	cl   *client.Client
	log  *bytes.Buffer
}

// start serves a real registry (with a real history file) on a real socket;
// cleanup shuts down and checks Serve's return and the socket's removal.
func start(t *testing.T, ctrs admin.Containers) *env {
	t.Helper()
	dir := testenv.ShortTempDir(t)
	hist, err := sessions.OpenHistory(filepath.Join(dir, "history.jsonl"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hist.Close() })
	e := &env{sock: filepath.Join(dir, "run", "admin.sock"), reg: sessions.NewRegistry(hist), hist: hist, log: &bytes.Buffer{}}
	e.srv = &admin.Server{
		Sessions:   admin.FromRegistry(e.reg),
		Containers: ctrs,
		Version:    "v1.2.3-test",
		Logger:     slog.New(slog.NewTextHandler(e.log, nil)),
	}
	serveOn(t, e.srv, e.sock)
	e.cl = client.New(e.sock)
	return e
}

func serveOn(t *testing.T, srv *admin.Server, sock string) {
	t.Helper()
	l, err := admin.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, admin.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket still there after Shutdown: %v", err)
		}
	})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestSessionsListAndKill(t *testing.T) {
	e := start(t, nil)
	kctx, kcancel := context.WithCancelCause(context.Background())
	defer kcancel(nil)
	s1 := e.reg.Add(sessions.Info{User: "alice", Project: "zephyr", RemoteAddr: "192.0.2.7:50000", Conn: "c1"}, kcancel)
	s1.SetKind("exec", "bazel build //...")
	s1.SetContainer("sygaldry-zephyr-alice")
	s2 := e.reg.Add(sessions.Info{User: "bob", Project: "zephyr"}, func(error) {})
	s2.SetKind("shell", "")

	got, err := e.cl.Sessions(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != s1.ID() || got[1].ID != s2.ID() {
		t.Fatalf("Sessions = %+v", got)
	}
	g := got[0]
	if g.User != "alice" || g.Project != "zephyr" || g.Container != "sygaldry-zephyr-alice" || g.RemoteAddr != "192.0.2.7:50000" ||
		g.Kind != "exec" || g.Command != "bazel build //..." || g.Started.IsZero() {
		t.Fatalf("session 1 = %+v", g)
	}

	if err := e.cl.Kill(ctx(t), s1.ID(), "GPU maintenance"); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	select {
	case <-kctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("session context not cancelled")
	}
	var ke *sessions.KilledError
	if !errors.As(context.Cause(kctx), &ke) || ke.Reason != "GPU maintenance" {
		t.Fatalf("cause = %v, want KilledError{GPU maintenance}", context.Cause(kctx))
	}
	if !strings.Contains(e.log.String(), "session killed by admin") {
		t.Errorf("kill not logged: %s", e.log)
	}

	st, err := e.cl.Status(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != "v1.2.3-test" || st.LiveSessions != 2 || st.Started.IsZero() {
		t.Fatalf("Status = %+v", st)
	}
}

func TestKillUnknown(t *testing.T) {
	e := start(t, nil)
	err := e.cl.Kill(ctx(t), "999", "x")
	if !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Kill unknown: %v, want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "999") {
		t.Errorf("message %q does not name the session", err)
	}
	// On the wire: 404 with a JSON error.
	code, body := raw(t, e.sock, http.MethodPost, "/v1/sessions/999/kill", `{"reason":"x"}`)
	if code != http.StatusNotFound || body["error"] == "" {
		t.Fatalf("raw kill: %d %v", code, body)
	}
}

func TestHistoryRoundTrip(t *testing.T) {
	e := start(t, nil)
	for i := range 5 {
		s := e.reg.Add(sessions.Info{User: "alice", Project: "zephyr"}, func(error) {})
		s.SetKind("exec", "step "+string(rune('a'+i)))
		code := i
		s.SetExit(&code, "")
		e.reg.End(s, "client closed")
	}
	got, err := e.cl.History(ctx(t), 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].ID != "3" || got[2].ID != "5" || got[2].Command != "step e" ||
		got[2].ExitStatus == nil || *got[2].ExitStatus != 4 || got[2].Ended.IsZero() || got[2].EndReason != "client closed" {
		t.Fatalf("History(3) = %+v", got)
	}
	all, err := e.cl.History(ctx(t), 0)
	if err != nil || len(all) != 5 {
		t.Fatalf("History(0): %d, %v", len(all), err)
	}
	// Default n, and a bad n.
	code, _ := rawBytes(t, e.sock, http.MethodGet, "/v1/sessions/history", "")
	if code != http.StatusOK {
		t.Fatalf("history without n: %d", code)
	}
	code, body := raw(t, e.sock, http.MethodGet, "/v1/sessions/history?n=-3", "")
	if code != http.StatusBadRequest || body["error"] == "" {
		t.Fatalf("n=-3: %d %v", code, body)
	}
}

func TestNoHistoryKept(t *testing.T) {
	sock := filepath.Join(testenv.ShortTempDir(t), "admin.sock")
	serveOn(t, &admin.Server{Sessions: admin.FromRegistry(sessions.NewRegistry(nil))}, sock)
	_, err := client.New(sock).History(ctx(t), 10)
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusServiceUnavailable || !strings.Contains(ae.Message, "history") {
		t.Fatalf("History without a history: %v", err)
	}
	// And the empty live list is [], not null.
	_, body := rawBytes(t, sock, http.MethodGet, "/v1/sessions", "")
	if strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("empty list = %q", body)
	}
}

func TestContainers(t *testing.T) {
	created := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	fc := &fakeContainers{list: []api.ContainerInfo{
		{Name: "sygaldry-zephyr-alice", Project: "zephyr", User: "alice", State: "running", Image: "sygaldry/zephyr:base", Created: created, UpToDate: true},
		{Name: "sygaldry-zephyr-bob", Project: "zephyr", User: "bob", State: "exited", Image: "sygaldry/zephyr:base", Created: created},
	}}
	e := start(t, fc)
	for range 2 {
		s := e.reg.Add(sessions.Info{User: "alice"}, func(error) {})
		s.SetContainer("sygaldry-zephyr-alice")
	}
	got, err := e.cl.Containers(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []api.ContainerInfo{
		{Name: "sygaldry-zephyr-alice", Project: "zephyr", User: "alice", State: "running", Image: "sygaldry/zephyr:base", Created: created, UpToDate: true, Sessions: 2,
			Stop: api.ContainerStop{Status: api.StopInUse}},
		{Name: "sygaldry-zephyr-bob", Project: "zephyr", User: "bob", State: "exited", Image: "sygaldry/zephyr:base", Created: created},
	}
	for i := range got { // what explains each container: containers_test.go
		got[i].Connections, got[i].Forwards, got[i].Jobs, got[i].GPUProcesses = nil, nil, nil, nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Containers = %+v\nwant %+v", got, want)
	}

	fc.err = errors.New("dial unix /var/run/docker.sock: connect: no such file or directory")
	_, err = e.cl.Containers(ctx(t))
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadGateway || strings.Contains(ae.Message, "docker.sock") {
		t.Fatalf("engine down: %v (the detail belongs in the log, not the answer)", err)
	}
	if !strings.Contains(e.log.String(), "docker.sock") {
		t.Errorf("engine error not logged: %s", e.log)
	}
}

func TestNoContainerManager(t *testing.T) {
	e := start(t, nil)
	_, err := e.cl.Containers(ctx(t))
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("Containers without a manager: %v", err)
	}
}

func TestErrorsAreJSON(t *testing.T) {
	e := start(t, nil)
	for _, tc := range []struct {
		method, path, body string
		code               int
	}{
		{http.MethodGet, "/v2/nothing", "", http.StatusNotFound},
		{http.MethodGet, "/v1/sessions/1/kill", "", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/v1/sessions", "", http.StatusMethodNotAllowed},
		{http.MethodPost, "/v1/sessions/1/kill", "{not json", http.StatusBadRequest},
	} {
		code, body := raw(t, e.sock, tc.method, tc.path, tc.body)
		if code != tc.code || body["error"] == "" {
			t.Errorf("%s %s: %d %v, want %d with a JSON error", tc.method, tc.path, code, body, tc.code)
		}
	}
}

func rawBytes(t *testing.T, sock, method, path, body string) (int, []byte) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx(t), method, "http://x"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func raw(t *testing.T, sock, method, path, body string) (int, map[string]any) {
	t.Helper()
	code, b := rawBytes(t, sock, method, path, body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: not a JSON object: %q", method, path, b)
	}
	return code, m
}

// Even with the socket's mode loosened by mistake, another user is refused
// (SO_PEERCRED). Needs root, setpriv and curl.
func TestOtherUserRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as another user")
	}
	setpriv, err1 := exec.LookPath("setpriv")
	curl, err2 := exec.LookPath("curl")
	if err1 != nil || err2 != nil {
		t.Skip("needs setpriv and curl")
	}
	e := start(t, nil)
	for _, p := range []string{filepath.Dir(filepath.Dir(e.sock)), filepath.Dir(e.sock)} {
		os.Chmod(p, 0o755)
	}
	os.Chmod(e.sock, 0o666)
	out, err := exec.CommandContext(ctx(t), setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
		curl, "-sS", "-w", "\n%{http_code}", "--unix-socket", e.sock, "http://x/v1/sessions").CombinedOutput()
	if err != nil {
		t.Fatalf("curl as nobody: %v: %s", err, out)
	}
	if !strings.HasSuffix(strings.TrimSpace(string(out)), "403") || !strings.Contains(string(out), "root only") {
		t.Fatalf("as nobody: %s, want 403 permission denied", out)
	}
	if !strings.Contains(e.log.String(), "admin request refused") {
		t.Errorf("refusal not logged: %s", e.log)
	}
}
