package main

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sygaldry/sygaldry/admin"
	"github.com/sygaldry/sygaldry/admin/api"
	"github.com/sygaldry/sygaldry/internal/testenv"
)

// staticReloader answers every reload with rep and err.
type staticReloader struct {
	rep api.ReloadReport
	err error
}

func (s staticReloader) Reload(context.Context) (api.ReloadReport, error) { return s.rep, s.err }

// startReloadAdmin serves the admin API with rl on a real unix socket and
// returns the socket.
func startReloadAdmin(t *testing.T, rl admin.Reloader) string {
	t.Helper()
	sock := filepath.Join(testenv.ShortTempDir(t), "admin.sock")
	serveAdmin(t, &admin.Server{Reloader: rl, Version: "test"}, sock)
	return sock
}

var reloadChanges = api.ReloadReport{
	Applied: []api.ReloadChange{
		{Key: "projects.zephyr.gpus", Running: "all", File: "2"},
		{Key: "users.carol", File: "1 key"},
	},
	NeedsRestart:     []api.ReloadChange{{Key: "server.listen", Running: ":22", File: ":2222"}},
	ConnectionsEnded: 1,
}

func TestReload(t *testing.T) {
	sock := startReloadAdmin(t, staticReloader{rep: reloadChanges})
	code, out, errs := runMain("--socket", sock, "reload")
	want := "applied  projects.zephyr.gpus: all -> 2\n" +
		"applied  users.carol: (unset) -> 1 key\n" +
		"needs a restart  server.listen: :22 -> :2222\n" +
		"configuration reloaded: 2 applied, 1 needs a restart, 1 connection ended\n"
	if code != 0 || out != want || errs != "" {
		t.Errorf("exit %d, err %q, out:\n%s\nwant:\n%s", code, errs, out, want)
	}

	code, out, errs = runMain("reload", "--json", "--socket", sock)
	var got api.ReloadReport
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || !reflect.DeepEqual(got, reloadChanges) {
		t.Errorf("--json: exit %d, err %q, out:\n%s", code, errs, out)
	}
}

func TestReloadNoChanges(t *testing.T) {
	sock := startReloadAdmin(t, staticReloader{})
	code, out, errs := runMain("reload", "--socket", sock)
	if code != 0 || out != "configuration reloaded: no changes\n" || errs != "" {
		t.Errorf("exit %d, out %q, err %q", code, out, errs)
	}
	code, out, _ = runMain("reload", "--socket", sock, "--json")
	var m map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &m) != nil {
		t.Fatalf("--json: exit %d, %q", code, out)
	}
	for _, k := range []string{"applied", "needs_restart"} {
		if l, ok := m[k].([]any); !ok || len(l) != 0 {
			t.Errorf("%s = %#v, want []", k, m[k])
		}
	}
	if m["connections_ended"] != float64(0) {
		t.Errorf("connections_ended = %#v", m["connections_ended"])
	}
}

// A refused file: its error (file:line) and exit 1, nothing on stdout.
func TestReloadRefused(t *testing.T) {
	msg := "/etc/sygaldry/gateway.toml:12: server.listen: missing port"
	sock := startReloadAdmin(t, staticReloader{err: errors.New(msg)})
	for _, args := range [][]string{{"reload", "--socket", sock}, {"reload", "--socket", sock, "--json"}} {
		code, out, errs := runMain(args...)
		if code != 1 || errs != "sygctl reload: "+msg+"\n" || out != "" {
			t.Errorf("%q: exit %d, out %q, err %q", args, code, out, errs)
		}
	}
}

func TestReloadUnsupported(t *testing.T) {
	sock := startReloadAdmin(t, nil)
	code, _, errs := runMain("reload", "--socket", sock)
	if code != 1 || !strings.HasPrefix(errs, "sygctl reload: ") || !strings.Contains(errs, "SIGHUP") {
		t.Errorf("exit %d, err %q", code, errs)
	}
}
