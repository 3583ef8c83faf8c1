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
	if code != 0 || len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") != "NAME PROJECT USER STATE IMAGE CREATED UP-TO-DATE SESSIONS STOP" {
		t.Fatalf("table:\n%s", out)
	}
	if f := strings.Fields(lines[1]); f[3] != "running" || f[5] != "3h00m" || f[7] != "yes" || f[8] != "1" || strings.Join(f[9:], " ") != "in use" {
		t.Fatalf("row %q", lines[1])
	}
	if !strings.HasPrefix(lines[2], "    connection ") || !strings.HasPrefix(lines[3], "sygaldry-zephyr-bob ") {
		t.Fatalf("details:\n%s", out)
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

// The table says when each container stops, and under each running one
// why it is up. No engine: the answer is made up.
func TestContainerTableExplains(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.Local)
	old := adminNow
	adminNow = func() time.Time { return now }
	t.Cleanup(func() { adminNow = old })
	at := now.Add(90 * time.Minute)
	age := int64(2*3600 + 3*60)
	mem := uint64(3 << 30)
	list := []api.ContainerInfo{
		{Name: "in-use", State: "running", Sessions: 2, Stop: api.ContainerStop{Status: api.StopInUse, IdleStopSeconds: 7200},
			Connections:  []api.ContainerConn{{Conn: "c4", User: "alice", RemoteAddr: "192.0.2.7:50000", LastActive: now.Add(-2 * time.Minute), Channels: 2}},
			Forwards:     []api.ContainerForward{{Session: "12", Conn: "c4", Kind: "direct-tcpip", Target: "127.0.0.1:8888", LastActive: now.Add(-5 * time.Second)}},
			Jobs:         []api.ContainerJob{{PID: 4242, Command: "python3 train.py\x1b[2J", AgeSeconds: &age}},
			GPUProcesses: []api.ContainerGPUProcess{{GPU: 1, PID: 4242, Command: "python3 train.py", UsedMemory: &mem}}},
		{Name: "scheduled", State: "running", Stop: api.ContainerStop{Status: api.StopScheduled, At: &at, IdleStopSeconds: 7200}},
		{Name: "rechecked", State: "running", Stop: api.ContainerStop{Status: api.StopScheduled, At: &at, IdleStopSeconds: 5400, Rechecked: true}},
		{Name: "postponed", State: "running", Stop: api.ContainerStop{Status: api.StopPostponed, IdleStopSeconds: 7200},
			Jobs: []api.ContainerJob{{Command: "a"}, {Command: "b"}, {Command: "c"}, {Command: "d"}, {Command: "e"}, {Command: "f"}, {Command: "g"}}},
		{Name: "never", State: "running", Stop: api.ContainerStop{Status: api.StopNever}},
		{Name: "untracked", State: "running", Stop: api.ContainerStop{Status: api.StopUntracked, IdleStopSeconds: 60}, JobsError: "context deadline exceeded"},
		{Name: "exited", State: "exited", Stop: api.ContainerStop{Status: api.StopNotRunning}},
	}
	var b strings.Builder
	writeContainerTable(&b, list)
	out := b.String()
	stops := map[string]string{}
	var details []string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n")[1:] {
		if d, ok := strings.CutPrefix(l, "    "); ok {
			details = append(details, d)
			continue
		}
		f := strings.Fields(l)
		stops[f[0]] = stopColumn(t, out, l)
	}
	want := map[string]string{
		"in-use":    "in use",
		"scheduled": "stops at 13:30 (idle_stop 2h after the last connection)",
		"rechecked": "stops at 13:30 (next idle check; idle_stop 1h30m)",
		"postponed": "stop postponed: 7 jobs running",
		"never":     "never (idle_stop = 0)",
		"untracked": "no idle timer (started outside the gateway)",
		"exited":    "-",
	}
	for k, v := range want {
		if stops[k] != v {
			t.Errorf("%s: STOP = %q, want %q\n%s", k, stops[k], v, out)
		}
	}
	wantDetails := []string{
		"connection c4 alice from 192.0.2.7:50000, 2 channels open, last activity 2m ago",
		"forward direct-tcpip 127.0.0.1:8888 (session 12 of c4), last activity 5s ago",
		"job 4242 python3 train.py?[2J, running 2h03m",
		"gpu 1 pid 4242 python3 train.py, 3.0 GiB used",
		"job a", "job b", "job c", "job d", "job e",
		"… and 2 more jobs (--json lists all)",
		"jobs: cannot list the processes: context deadline exceeded",
	}
	if strings.Join(details, "\n") != strings.Join(wantDetails, "\n") {
		t.Errorf("details:\n%s\nwant:\n%s", strings.Join(details, "\n"), strings.Join(wantDetails, "\n"))
	}

	// Another day: the date too.
	later := now.Add(26 * time.Hour)
	if s := stopText(api.ContainerInfo{Stop: api.ContainerStop{Status: api.StopScheduled, At: &later, IdleStopSeconds: 93600}}, now); s != "stops at Mar 02 14:00 (idle_stop 26h after the last connection)" {
		t.Errorf("stop on another day: %q", s)
	}
}

// stopColumn is row's STOP column: the text from where the header's STOP
// starts.
func stopColumn(t *testing.T, table, row string) string {
	t.Helper()
	i := strings.Index(table, "STOP")
	if i < 0 || len(row) < i {
		t.Fatalf("no STOP column in\n%s", table)
	}
	return row[i:]
}
