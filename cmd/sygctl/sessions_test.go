package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/sygaldry/sygaldry/admin/api"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/admin"
	"github.com/sygaldry/sygaldry/internal/testenv"
	"github.com/sygaldry/sygaldry/sessions"
)

// adminEnv is a real admin server with a real registry and history on a
// unix socket in a short temp dir (sun_path is 108 bytes).
type adminEnv struct {
	sock string
	reg  *sessions.Registry
}

type staticContainers []api.ContainerInfo

func (s staticContainers) List(context.Context) ([]api.ContainerInfo, error) { return s, nil }

func startAdmin(t *testing.T, ctrs admin.Containers) *adminEnv {
	t.Helper()
	dir := testenv.ShortTempDir(t)
	hist, err := sessions.OpenHistory(filepath.Join(dir, "history.jsonl"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hist.Close() })
	e := &adminEnv{sock: filepath.Join(dir, "admin.sock"), reg: sessions.NewRegistry(hist)}
	serveAdmin(t, &admin.Server{Sessions: admin.FromRegistry(e.reg), Containers: ctrs, Version: "test"}, e.sock)
	return e
}

// serveAdmin serves srv on a real unix socket at sock until the test ends.
func serveAdmin(t *testing.T, srv *admin.Server, sock string) {
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
		srv.Shutdown(ctx)
		<-done
	})
}

func runAdmin(t *testing.T, f func([]string, io.Writer, io.Writer) int, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := f(args, &out, &errb)
	return code, out.String(), errb.String()
}

func addSessions(t *testing.T, e *adminEnv) (*sessions.Session, context.Context) {
	t.Helper()
	ctx, cancel := context.WithCancelCause(context.Background())
	t.Cleanup(func() { cancel(nil) })
	s := e.reg.Add(sessions.Info{User: "alice", Project: "zephyr", RemoteAddr: "192.0.2.7:50000",
		Started: time.Now().Add(-90 * time.Minute)}, cancel)
	s.SetContainer("sygaldry-zephyr-alice")
	s.SetKind("exec", "bazel build //very/long/target/path/that/goes/on:and_on_and_on --config=cuda\x1b[2J")
	s2 := e.reg.Add(sessions.Info{User: "bob", Project: "zephyr", RemoteAddr: "192.0.2.8:40000"}, func(error) {})
	s2.SetKind("shell", "")
	return s, ctx
}

func TestSessionsJSON(t *testing.T) {
	e := startAdmin(t, nil)
	s, _ := addSessions(t, e)
	code, out, errs := runAdmin(t, cmdSessions, "--socket", e.sock, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("not a JSON list: %v\n%s", err, out)
	}
	if len(list) != 2 {
		t.Fatalf("%d sessions", len(list))
	}
	for _, f := range []string{"id", "user", "project", "container", "remote_addr", "started", "kind", "command"} {
		if _, ok := list[0][f]; !ok {
			t.Errorf("contract field %q missing: %v", f, list[0])
		}
	}
	if list[0]["id"] != s.ID() || list[0]["user"] != "alice" || list[0]["container"] != "sygaldry-zephyr-alice" ||
		list[0]["remote_addr"] != "192.0.2.7:50000" || list[0]["kind"] != "exec" || !strings.HasPrefix(list[0]["command"].(string), "bazel build //very") {
		t.Errorf("session = %v", list[0])
	}
	if _, err := time.Parse(time.RFC3339Nano, list[0]["started"].(string)); err != nil {
		t.Errorf("started: %v", err)
	}
}

func TestSessionsEmptyJSONIsList(t *testing.T) {
	e := startAdmin(t, nil)
	code, out, _ := runAdmin(t, cmdSessions, "--json", "--socket", e.sock)
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("exit %d, %q; want []", code, out)
	}
}

func TestSessionsTable(t *testing.T) {
	e := startAdmin(t, nil)
	s, _ := addSessions(t, e)
	code, out, errs := runAdmin(t, cmdSessions, "--socket", e.sock)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("table:\n%s", out)
	}
	if h := strings.Fields(lines[0]); strings.Join(h, " ") != "ID USER PROJECT CONTAINER REMOTE KIND STARTED AGE COMMAND" {
		t.Fatalf("header %q", lines[0])
	}
	row := strings.Fields(lines[1])
	if row[0] != s.ID() || row[1] != "alice" || row[2] != "zephyr" || row[3] != "sygaldry-zephyr-alice" ||
		row[4] != "192.0.2.7:50000" || row[5] != "exec" || !strings.Contains(lines[1], "1h30m") {
		t.Fatalf("row %q", lines[1])
	}
	if !strings.Contains(lines[1], "…") || strings.Contains(lines[1], "on_and_on --config") {
		t.Errorf("long command not truncated: %q", lines[1])
	}
	if strings.ContainsRune(out, '\x1b') {
		t.Errorf("escape sequence reached the terminal: %q", out)
	}
	if !strings.HasSuffix(strings.TrimSpace(lines[2]), "-") { // bob's shell has no command
		t.Errorf("empty command not shown as -: %q", lines[2])
	}
}

func TestSessionsKill(t *testing.T) {
	e := startAdmin(t, nil)
	s, ctx := addSessions(t, e)
	// Flags after the ID work too.
	code, out, errs := runAdmin(t, cmdSessions, "--socket", e.sock, "kill", s.ID(), "--reason", "GPU maintenance")
	if code != 0 || !strings.Contains(out, "killed session "+s.ID()) {
		t.Fatalf("exit %d, out %q, err %q", code, out, errs)
	}
	<-ctx.Done()
	var ke *sessions.KilledError
	if !errors.As(context.Cause(ctx), &ke) || ke.Reason != "GPU maintenance" {
		t.Fatalf("cause %v", context.Cause(ctx))
	}

	code, _, errs = runAdmin(t, cmdSessions, "kill", "--socket", e.sock, "4711")
	if code != 1 || !strings.Contains(errs, "no live session 4711") {
		t.Fatalf("unknown ID: exit %d, %q", code, errs)
	}
	code, _, errs = runAdmin(t, cmdSessions, "kill", "--socket", e.sock)
	if code != 2 || !strings.Contains(errs, "which session?") {
		t.Fatalf("no ID: exit %d, %q", code, errs)
	}
}

func TestSessionsHistoryAndAll(t *testing.T) {
	e := startAdmin(t, nil)
	for i := range 3 {
		s := e.reg.Add(sessions.Info{User: "carol", Project: "zephyr"}, func(error) {})
		s.SetKind("exec", "make")
		code := i
		s.SetExit(&code, "")
		e.reg.End(s, "client closed")
	}
	addSessions(t, e)

	code, out, errs := runAdmin(t, cmdSessions, "history", "-n", "2", "--json", "--socket", e.sock)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var hist []sessions.Info
	if err := json.Unmarshal([]byte(out), &hist); err != nil || len(hist) != 2 || hist[0].ID != "2" || hist[1].ID != "3" {
		t.Fatalf("history -n 2: %v %+v", err, hist)
	}
	if hist[1].Ended.IsZero() || *hist[1].ExitStatus != 2 {
		t.Fatalf("history record %+v", hist[1])
	}

	code, out, _ = runAdmin(t, cmdSessions, "--socket", e.sock, "history")
	if code != 0 || !strings.Contains(out, "STATUS") || !strings.Contains(out, "exit 2, client closed") {
		t.Fatalf("history table (exit %d):\n%s", code, out)
	}

	code, out, _ = runAdmin(t, cmdSessions, "--socket", e.sock, "--all", "--json")
	var all []sessions.Info
	if err := json.Unmarshal([]byte(out), &all); code != 0 || err != nil || len(all) != 5 {
		t.Fatalf("--all: exit %d, %v, %d sessions", code, err, len(all))
	}
	code, out, _ = runAdmin(t, cmdSessions, "--socket", e.sock, "--all")
	if code != 0 || strings.Count(out, " live ") != 2 || strings.Count(out, "client closed") != 3 {
		t.Fatalf("--all table:\n%s", out)
	}
}

func TestSessionsSocketResolution(t *testing.T) {
	e := startAdmin(t, nil)
	addSessions(t, e)

	t.Setenv(envAdminSocket, e.sock)
	if code, out, errs := runAdmin(t, cmdSessions, "--json"); code != 0 || !strings.Contains(out, "alice") {
		t.Fatalf("from $%s: exit %d %s", envAdminSocket, code, errs)
	}

	// --config beats the environment.
	t.Setenv(envAdminSocket, "/nonexistent/admin.sock")
	cfg := filepath.Join(t.TempDir(), "gateway.toml")
	os.WriteFile(cfg, []byte("[server]\nadmin_socket = \""+e.sock+"\"\n"), 0o600)
	if code, out, errs := runAdmin(t, cmdSessions, "--config", cfg, "--json"); code != 0 || !strings.Contains(out, "alice") {
		t.Fatalf("from --config: exit %d %s", code, errs)
	}

	// A bad config is reported with its file.
	os.WriteFile(cfg, []byte("[server]\nadmin_sockett = \"x\"\n"), 0o600)
	if code, _, errs := runAdmin(t, cmdSessions, "--config", cfg); code != 1 || !strings.Contains(errs, cfg) {
		t.Fatalf("bad config: exit %d %q", code, errs)
	}
}

func TestSessionsUnreachable(t *testing.T) {
	code, _, errs := runAdmin(t, cmdSessions, "--socket", "/nonexistent/admin.sock")
	if code != 1 || !strings.Contains(errs, "cannot reach the gateway at /nonexistent/admin.sock: is sygaldry-gateway running?") {
		t.Fatalf("exit %d, %q", code, errs)
	}
}

func TestSessionsUsage(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"kill", "-h"}, {"history", "--help"}} {
		code, out, _ := runAdmin(t, cmdSessions, args...)
		if code != 0 || !strings.HasPrefix(out, "usage: sygctl sessions") || !strings.Contains(out, "-socket") {
			t.Errorf("%v: exit %d\n%s", args, code, out)
		}
	}
	code, _, errs := runAdmin(t, cmdSessions, "--bogus")
	if code != 2 || !strings.Contains(errs, "usage:") {
		t.Errorf("bad flag: exit %d %q", code, errs)
	}
	code, _, errs = runAdmin(t, cmdSessions, "frobnicate")
	if code != 2 || !strings.Contains(errs, `unknown subcommand "frobnicate"`) {
		t.Errorf("bad subcommand: exit %d %q", code, errs)
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 42 * time.Second: "42s", 17 * time.Minute: "17m",
		3*time.Hour + 5*time.Minute: "3h05m", 50 * time.Hour: "2d",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
