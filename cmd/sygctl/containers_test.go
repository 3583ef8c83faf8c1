package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/admin"
	"github.com/sygaldry/sygaldry/admin/api"
	"github.com/sygaldry/sygaldry/sessions"
)

func TestContainers(t *testing.T) {
	created := time.Now().Add(-3 * time.Hour)
	e := startAdmin(t, staticContainers{
		{Name: "sygaldry-zephyr-alice", Project: "zephyr", User: "alice", State: "running", Image: "sygaldry/zephyr:base", Created: created, UpToDate: true},
		{Name: "sygaldry-zephyr-bob", Project: "zephyr", User: "bob", State: "exited", Image: "sygaldry/zephyr:base", Created: created},
	})
	s := e.reg.Add(sessions.Info{User: "alice"}, func(error) {})
	s.SetContainer("sygaldry-zephyr-alice")

	code, out, errs := runAdmin(t, cmdContainers, "--socket", e.sock, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var list []api.ContainerInfo
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 {
		t.Fatalf("%v: %s", err, out)
	}
	if list[0].Name != "sygaldry-zephyr-alice" || list[0].Sessions != 1 || !list[0].UpToDate || list[1].State != "exited" {
		t.Fatalf("list %+v", list)
	}
	if !strings.Contains(out, `"up_to_date"`) {
		t.Errorf("snake_case field missing:\n%s", out)
	}

	code, out, _ = runAdmin(t, cmdContainers, "--socket", e.sock)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if code != 0 || len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "NAME PROJECT USER STATE IMAGE CREATED UP-TO-DATE SESSIONS" {
		t.Fatalf("table:\n%s", out)
	}
	if f := strings.Fields(lines[1]); f[3] != "running" || f[5] != "3h00m" || f[7] != "yes" || f[8] != "1" {
		t.Fatalf("row %q", lines[1])
	}
}

func TestContainersWithoutManager(t *testing.T) {
	e := startAdmin(t, nil)
	code, _, errs := runAdmin(t, cmdContainers, "--socket", e.sock)
	if code != 1 || !strings.Contains(errs, "does not list containers") {
		t.Fatalf("exit %d %q", code, errs)
	}
}

var _ admin.Containers = staticContainers(nil)
