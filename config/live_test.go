package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func liveDoc(key, listen, idle, gpus string) string {
	return `
[server]
listen = "` + listen + `"
idle_stop = "` + idle + `"

[projects.zephyr]
members = ["alice"]
gpus = ` + gpus + `

[users.alice]
keys = ["` + key + `"]
`
}

func writeConfig(t *testing.T, path, doc string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
}

func changeKeys(cs []Change) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Key)
	}
	return out
}

func findChange(t *testing.T, cs []Change, key string) Change {
	t.Helper()
	for _, c := range cs {
		if c.Key == key {
			return c
		}
	}
	t.Fatalf("no change for %s in %v", key, changeKeys(cs))
	return Change{}
}

// liveFromFile writes a config (listen :2022, idle_stop 2h, one GPU) with a
// fresh key for alice and holds it in a Live, as the gateway does at start.
func liveFromFile(t *testing.T) (key, path string, first *Config, live *Live) {
	t.Helper()
	_, key = newKey(t)
	path = filepath.Join(t.TempDir(), "gateway.toml")
	writeConfig(t, path, liveDoc(key, "127.0.0.1:2022", "2h", "1"))
	first, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return key, path, first, NewLive(first)
}

func TestLiveReloadAppliesLiveKeysAndKeepsRestartKeys(t *testing.T) {
	key, path, _, live := liveFromFile(t)

	writeConfig(t, path, liveDoc(key, "127.0.0.1:2099", "15m", `"none"`))
	changes, err := live.Reload(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := changeKeys(changes), []string{"projects.zephyr.gpus", "server.idle_stop", "server.listen"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("changes = %v, want %v", got, want)
	}
	if c := findChange(t, changes, "server.listen"); !c.Restart || c.Running != "127.0.0.1:2022" || c.File != "127.0.0.1:2099" {
		t.Errorf("server.listen change = %+v, want a restart from :2022 to :2099", c)
	}
	if c := findChange(t, changes, "server.idle_stop"); c.Restart || c.Running != "2h0m0s" || c.File != "15m0s" {
		t.Errorf("server.idle_stop change = %+v, want applied, 2h0m0s -> 15m0s", c)
	}
	if c := findChange(t, changes, "projects.zephyr.gpus"); c.Restart {
		t.Errorf("projects.zephyr.gpus change = %+v, want applied", c)
	}

	now := live.Load()
	if now.Server.Listen != "127.0.0.1:2022" {
		t.Errorf("listen in force = %q: a restart key must keep its running value", now.Server.Listen)
	}
	if now.Server.IdleStop.D.Minutes() != 15 {
		t.Errorf("idle_stop in force = %v, want 15m", now.Server.IdleStop.D)
	}
	if p, _ := now.Project("zephyr"); !p.GPUs.None() {
		t.Errorf("zephyr gpus in force = %v, want none", p.GPUs)
	}

	// The same file again: nothing changes, and the kept listen is no change.
	again, err := live.Reload(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 1 || again[0].Key != "server.listen" {
		t.Errorf("second reload of the same file = %v, want only the pending server.listen", changeKeys(again))
	}
}

func TestLiveReloadRefusedKeepsRunningConfig(t *testing.T) {
	key, path, first, live := liveFromFile(t)

	writeConfig(t, path, liveDoc(key, "127.0.0.1:2022", "2h", "1")+"\n[server]\nimagee = 1\n")
	if _, err := live.Reload(nil); err == nil || !strings.Contains(err.Error(), path+":") {
		t.Fatalf("reload of a bad file: err = %v, want one naming %s:line", err, path)
	}
	if live.Load() != first {
		t.Error("a refused file replaced the configuration in force")
	}

	writeConfig(t, path, liveDoc(key, "127.0.0.1:2022", "5m", "1"))
	refuse := errors.New("projects.zephyr.gpus: this host has no GPU 7")
	if _, err := live.Reload(func(*Config) error { return refuse }); !errors.Is(err, refuse) {
		t.Fatalf("reload refused by check: err = %v", err)
	}
	if live.Load() != first {
		t.Error("a file the check refused replaced the configuration in force")
	}

	built := NewLive(&Config{})
	if _, err := built.Reload(nil); err == nil {
		t.Error("reload of a configuration built in code: want an error")
	}
}

// Every key of the restart table names a real key: changing the field it
// points at shows up in Diff under that key, marked as a restart.
func TestRestartKeysNameRealKeys(t *testing.T) {
	for _, k := range restartKeys {
		a, b := &Config{}, &Config{}
		reflect.ValueOf(k.ptr(b)).Elem().SetString("changed")
		cs := Diff(a, b)
		if len(cs) != 1 || cs[0].Key != k.key || !cs[0].Restart {
			t.Errorf("%s: Diff = %+v, want one restart change under that key", k.key, cs)
		}
	}
}

func TestDiffTablesAndValues(t *testing.T) {
	_, keyA := newKey(t)
	_, keyB := newKey(t)
	a, err := Parse("a.toml", []byte(liveDoc(keyA, "127.0.0.1:2022", "2h", "1")))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse("b.toml", []byte(liveDoc(keyB, "127.0.0.1:2022", "2h", "1")+`
[projects.torch]
members = ["alice"]
`))
	if err != nil {
		t.Fatal(err)
	}
	cs := Diff(a, b)
	if got, want := changeKeys(cs), []string{"projects.torch", "users.alice.keys"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("changes = %v, want %v", got, want)
	}
	if c := findChange(t, cs, "projects.torch"); c.File != "added" {
		t.Errorf("added project = %+v", c)
	}
	if c := findChange(t, cs, "users.alice.keys"); len(c.File) > maxValueText || len(c.Running) > maxValueText {
		t.Errorf("a long value is not cut: %+v", c)
	}
	if back := Diff(b, a); findChange(t, back, "projects.torch").File != "removed" {
		t.Errorf("removed project = %+v", back)
	}
	if cs := Diff(a, a); len(cs) != 0 {
		t.Errorf("Diff of a config with itself = %v", cs)
	}
}
