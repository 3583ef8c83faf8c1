package api_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/admin/api"
)

// The JSON field names are what `sygctl --json` users and scripts read
// (README, "sygctl"): every field of every wire type, pinned.
func TestJSONFieldNames(t *testing.T) {
	u64, u32, i64 := uint64(5), uint32(7), int64(9)
	tm := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v    any
		want string
	}{
		{api.Status{Version: "v1", Started: tm, LiveSessions: 2},
			`{"version":"v1","started":"2026-12-01T10:00:00Z","live_sessions":2}`},
		{api.ContainerInfo{Name: "n", Project: "p", User: "u", State: "running", Image: "i", Created: tm, UpToDate: true, Sessions: 3,
			Connections:  []api.ContainerConn{{Conn: "c1", User: "u", RemoteAddr: "a", LastActive: tm, IdleSeconds: 9, Channels: 2}},
			Forwards:     []api.ContainerForward{{Session: "4", Conn: "c1", User: "u", Kind: "direct-tcpip", Target: "127.0.0.1:80", LastActive: tm}},
			Jobs:         []api.ContainerJob{{PID: 8, Command: "sleep 9", AgeSeconds: &i64}},
			JobsError:    "e",
			GPUProcesses: []api.ContainerGPUProcess{{GPU: 1, UUID: "GPU-1", PID: 8, UsedMemory: &u64, Command: "sleep 9"}},
			Stop:         api.ContainerStop{Status: api.StopScheduled, At: &tm, IdleStopSeconds: 7200, IdleSince: &tm, Rechecked: true}},
			`{"name":"n","project":"p","user":"u","state":"running","image":"i","created":"2026-12-01T10:00:00Z","up_to_date":true,"sessions":3,` +
				`"connections":[{"conn":"c1","user":"u","remote_addr":"a","last_activity":"2026-12-01T10:00:00Z","idle_seconds":9,"channels":2}],` +
				`"forwards":[{"session":"4","conn":"c1","user":"u","kind":"direct-tcpip","target":"127.0.0.1:80","last_activity":"2026-12-01T10:00:00Z"}],` +
				`"jobs":[{"pid":8,"command":"sleep 9","age_seconds":9}],"jobs_error":"e",` +
				`"gpu_processes":[{"gpu":1,"uuid":"GPU-1","pid":8,"used_memory_bytes":5,"command":"sleep 9"}],` +
				`"stop":{"status":"scheduled","at":"2026-12-01T10:00:00Z","idle_stop_seconds":7200,"idle_since":"2026-12-01T10:00:00Z","rechecked":true}}`},
		{api.ContainerInfo{Stop: api.ContainerStop{Status: api.StopNever}},
			`{"name":"","project":"","user":"","state":"","image":"","created":"0001-01-01T00:00:00Z","up_to_date":false,"sessions":0,` +
				`"connections":null,"forwards":null,"jobs":null,"gpu_processes":null,"stop":{"status":"never","idle_stop_seconds":0}}`},
		{api.GPUReport{Available: true, Message: "m", Driver: "d", GPUs: []api.GPUInfo{{
			Index: 1, UUID: "GPU-1", Name: "H200", MemoryTotal: &u64, MemoryUsed: &u64, Utilization: &u32, Temperature: &u32,
			MIGMode: "disabled", Health: "healthy", HealthReason: "r", Unknown: []string{"x"},
			Processes: []api.GPUProcess{{PID: 4, UsedMemory: &u64, ContainerID: "cid", Container: "c", Project: "p", User: "u"}},
			Holders:   []api.GPUHolder{{Container: "c", User: "u", Project: "p", Mode: "exclusive", IdleSeconds: &i64, NVMLLost: true}},
		}}},
			`{"available":true,"message":"m","driver_version":"d","gpus":[{"index":1,"uuid":"GPU-1","name":"H200","memory_total_bytes":5,"memory_used_bytes":5,"utilization_percent":7,"temperature_celsius":7,"mig_mode":"disabled","health":"healthy","health_reason":"r","processes":[{"pid":4,"used_memory_bytes":5,"container_id":"cid","container":"c","project":"p","user":"u"}],"holders":[{"container":"c","user":"u","project":"p","mode":"exclusive","in_use":false,"idle_seconds":9,"nvml_lost":true}],"unknown":["x"]}]}`},
		{api.GPUReport{GPUs: []api.GPUInfo{{}}},
			`{"available":false,"gpus":[{"index":0,"uuid":"","name":"","health":"","processes":null,"holders":null}]}`},
		{api.KillRequest{Reason: "r", Connection: true}, `{"reason":"r","connection":true}`},
		{api.KillRequest{}, `{"reason":""}`},
		{api.KillResponse{ID: "7", Conn: "c3"}, `{"id":"7","conn":"c3"}`},
		{api.KillResponse{}, `{"id":""}`},
		{api.ReloadReport{Applied: []api.ReloadChange{{Key: "projects.zephyr.gpus", Running: "all", File: "2"}}, NeedsRestart: []api.ReloadChange{{Key: "server.listen"}}, ConnectionsEnded: 1},
			`{"applied":[{"key":"projects.zephyr.gpus","running":"all","file":"2"}],"needs_restart":[{"key":"server.listen"}],"connections_ended":1}`},
		{api.Error{Error: "no"}, `{"error":"no"}`},
	} {
		b, err := json.Marshal(tc.v)
		if err != nil || string(b) != tc.want {
			t.Errorf("%T:\n got %s (%v)\nwant %s", tc.v, b, err, tc.want)
		}
	}
}
