package main

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/sygaldry/sygaldry/sessions"
)

// A connection with no channel open is a row of kind "connection" (table
// and --json, with the contract fields); its ID kills it, and --conn kills
// the whole connection of a session.
func TestSessionsConnections(t *testing.T) {
	e := startAdmin(t, nil)
	idleCtx, idleKill := context.WithCancelCause(context.Background())
	defer idleKill(nil)
	e.reg.AddConn(sessions.Info{ID: "c3", User: "bob", Project: "zephyr", RemoteAddr: "192.0.2.9:4000"}, idleKill)
	busyCtx, busyKill := context.WithCancelCause(context.Background())
	defer busyKill(nil)
	e.reg.AddConn(sessions.Info{ID: "c4", User: "alice", Project: "zephyr"}, busyKill)
	s := e.reg.Add(sessions.Info{Conn: "c4", User: "alice", Project: "zephyr"}, func(error) {})
	s.SetKind("shell", "")

	code, out, errs := runAdmin(t, cmdSessions, "--socket", e.sock, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 {
		t.Fatalf("%v:\n%s", err, out)
	}
	var conn map[string]any
	for _, row := range list {
		if row["kind"] == "connection" {
			conn = row
		}
	}
	if conn == nil || conn["id"] != "c3" || conn["user"] != "bob" || conn["remote_addr"] != "192.0.2.9:4000" {
		t.Fatalf("no connection row for c3: %s", out)
	}
	for _, f := range []string{"id", "user", "project", "container", "remote_addr", "started", "kind", "command"} {
		if _, ok := conn[f]; !ok {
			t.Errorf("contract field %q missing: %v", f, conn)
		}
	}
	code, out, _ = runAdmin(t, cmdSessions, "--socket", e.sock)
	if code != 0 || !strings.Contains(out, "c3 ") || !strings.Contains(out, " connection ") {
		t.Fatalf("table (exit %d):\n%s", code, out)
	}

	code, out, errs = runAdmin(t, cmdSessions, "--socket", e.sock, "kill", "c3")
	if code != 0 || !strings.Contains(out, "closed connection c3") {
		t.Fatalf("kill c3: exit %d, %q %q", code, out, errs)
	}
	<-idleCtx.Done()

	code, out, errs = runAdmin(t, cmdSessions, "--socket", e.sock, "kill", "--conn", "--reason", "key rotation", s.ID())
	if code != 0 || !strings.Contains(out, "closed connection c4 (of session "+s.ID()+")") {
		t.Fatalf("kill --conn: exit %d, %q %q", code, out, errs)
	}
	<-busyCtx.Done()
	var ke *sessions.KilledError
	if !errors.As(context.Cause(busyCtx), &ke) || !ke.Connection || ke.Reason != "key rotation" {
		t.Fatalf("cause %v", context.Cause(busyCtx))
	}

	orphan := e.reg.Add(sessions.Info{Conn: "c99"}, func(error) {})
	code, _, errs = runAdmin(t, cmdSessions, "--socket", e.sock, "kill", "--conn", orphan.ID())
	if code != 1 || !strings.Contains(errs, "no live connection for "+orphan.ID()) {
		t.Fatalf("kill --conn without a connection: exit %d, %q", code, errs)
	}
}

// kill --json lists what it killed: {"killed": ID} for a session,
// "connection" too for a connection ID or --conn; an ID that is not live is
// named on stderr, left out of the list, and makes the exit code 1.
func TestSessionsKillJSON(t *testing.T) {
	e := startAdmin(t, nil)
	e.reg.AddConn(sessions.Info{ID: "c3", User: "bob", Project: "zephyr"}, func(error) {})
	e.reg.AddConn(sessions.Info{ID: "c4", User: "alice", Project: "zephyr"}, func(error) {})
	s := e.reg.Add(sessions.Info{Conn: "c4", User: "alice", Project: "zephyr"}, func(error) {})
	s2 := e.reg.Add(sessions.Info{Conn: "c4", User: "alice", Project: "zephyr"}, func(error) {})

	kill := func(args ...string) (int, []map[string]string, string) {
		t.Helper()
		code, out, errs := runAdmin(t, cmdSessions, append([]string{"--socket", e.sock, "kill", "--json"}, args...)...)
		var got []map[string]string
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%q: not a JSON list (%v): %q, stderr %q", args, err, out, errs)
		}
		return code, got, errs
	}
	code, got, errs := kill(s.ID(), "c3", "4711")
	want := []map[string]string{{"killed": s.ID()}, {"killed": "c3", "connection": "c3"}}
	if code != 1 || !reflect.DeepEqual(got, want) || !strings.Contains(errs, "no live session 4711") {
		t.Errorf("exit %d, %v, stderr %q; want exit 1, %v", code, got, errs, want)
	}
	code, got, errs = kill("--conn", s2.ID())
	if want := []map[string]string{{"killed": s2.ID(), "connection": "c4"}}; code != 0 || !reflect.DeepEqual(got, want) {
		t.Errorf("--conn: exit %d, %v, stderr %q; want %v", code, got, errs, want)
	}
	if code, got, _ = kill("4711"); code != 1 || got == nil || len(got) != 0 {
		t.Errorf("nothing killed: exit %d, %#v; want exit 1 and []", code, got)
	}
}
