package admin_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sygaldry/sygaldry/admin"
	"github.com/sygaldry/sygaldry/admin/api"
	"github.com/sygaldry/sygaldry/admin/client"
	"github.com/sygaldry/sygaldry/internal/testenv"
)

// fakeReloader answers every Reload with rep and err, counting the calls.
type fakeReloader struct {
	rep   api.ReloadReport
	err   error
	calls atomic.Int32
}

func (f *fakeReloader) Reload(context.Context) (api.ReloadReport, error) {
	f.calls.Add(1)
	return f.rep, f.err
}

// startReload serves the admin API with rl (nil: no Reloader); it returns
// the socket and the server's log.
func startReload(t *testing.T, rl admin.Reloader) (string, *bytes.Buffer) {
	t.Helper()
	sock := filepath.Join(testenv.ShortTempDir(t), "admin.sock")
	var log bytes.Buffer
	srv := &admin.Server{Version: "test", Logger: slog.New(slog.NewTextHandler(&log, nil))}
	if rl != nil {
		srv.Reloader = rl
	}
	serveOn(t, srv, sock)
	return sock, &log
}

func TestReloadReport(t *testing.T) {
	want := api.ReloadReport{
		Applied:          []api.ReloadChange{{Key: "projects.zephyr.gpus", Running: "all", File: "2"}},
		NeedsRestart:     []api.ReloadChange{{Key: "server.listen", Running: ":22", File: ":2222"}},
		ConnectionsEnded: 3,
	}
	rl := &fakeReloader{rep: want}
	sock, log := startReload(t, rl)
	got, err := client.New(sock).Reload(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Reload = %+v, want %+v", got, want)
	}
	if n := rl.calls.Load(); n != 1 {
		t.Errorf("Reloader called %d times, want 1", n)
	}
	if !strings.Contains(log.String(), "configuration reloaded by admin") || !strings.Contains(log.String(), "connections_ended=3") {
		t.Errorf("no log line for the reload:\n%s", log)
	}
}

// A reload that changed nothing still answers lists, never null.
func TestReloadNoChangeIsEmptyLists(t *testing.T) {
	sock, _ := startReload(t, &fakeReloader{})
	code, m := raw(t, sock, http.MethodPost, "/v1/reload", "")
	if code != http.StatusOK {
		t.Fatalf("%d %v", code, m)
	}
	for _, k := range []string{"applied", "needs_restart"} {
		if l, ok := m[k].([]any); !ok || len(l) != 0 {
			t.Errorf("%s = %#v, want []", k, m[k])
		}
	}
	if m["connections_ended"] != float64(0) {
		t.Errorf("connections_ended = %#v, want 0", m["connections_ended"])
	}
}

// A refused file is 422 with the file's own error text (file:line).
func TestReloadRefusedFile(t *testing.T) {
	msg := "/etc/sygaldry/gateway.toml:12: server.listen: missing port"
	sock, log := startReload(t, &fakeReloader{err: errors.New(msg)})
	_, err := client.New(sock).Reload(ctx(t))
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusUnprocessableEntity || ae.Message != msg {
		t.Fatalf("err = %#v, want a 422 APIError saying %q", err, msg)
	}
	if !strings.Contains(log.String(), "configuration reload refused") {
		t.Errorf("no log line for the refused reload:\n%s", log)
	}
}

func TestReloadWithoutReloader(t *testing.T) {
	sock, _ := startReload(t, nil)
	_, err := client.New(sock).Reload(ctx(t))
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusNotImplemented || !strings.Contains(ae.Message, "SIGHUP") {
		t.Fatalf("err = %#v, want a 501 APIError that points to SIGHUP", err)
	}
}

func TestReloadIsPOSTOnly(t *testing.T) {
	rl := &fakeReloader{}
	sock, _ := startReload(t, rl)
	if code, m := raw(t, sock, http.MethodGet, "/v1/reload", ""); code != http.StatusMethodNotAllowed || m["error"] == nil {
		t.Errorf("GET /v1/reload: %d %v", code, m)
	}
	if n := rl.calls.Load(); n != 0 {
		t.Errorf("a GET reloaded %d times", n)
	}
}
