package admin_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/admin/client"
	"github.com/sygaldry/sygaldry/sessions"
)

// A connection with no channel is listed as kind "connection" but not
// counted as a live session; "connection": true ends the connection a
// session belongs to, and is logged as such.
func TestKillConnection(t *testing.T) {
	e := start(t, nil)
	cctx, ccancel := context.WithCancelCause(context.Background())
	defer ccancel(nil)
	e.reg.AddConn(sessions.Info{ID: "c5", User: "bob", Project: "zephyr"}, ccancel)
	idle := e.reg.AddConn(sessions.Info{ID: "c6", User: "carol", Project: "zephyr"}, func(error) {})
	defer e.reg.EndConn(idle)
	s := e.reg.Add(sessions.Info{Conn: "c5", User: "bob", Project: "zephyr"}, func(error) { t.Error("session cancelled instead of its connection") })

	list, err := e.cl.Sessions(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "c6" && list[1].ID != "c6" {
		t.Fatalf("Sessions = %+v", list)
	}
	st, err := e.cl.Status(ctx(t))
	if err != nil || st.LiveSessions != 1 {
		t.Fatalf("Status = %+v, %v; want 1 live session", st, err)
	}

	conn, err := e.cl.KillConn(ctx(t), s.ID(), "rotating keys")
	if err != nil || conn != "c5" {
		t.Fatalf("KillConn = %q, %v", conn, err)
	}
	select {
	case <-cctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection not ended")
	}
	var ke *sessions.KilledError
	if !errors.As(context.Cause(cctx), &ke) || !ke.Connection || ke.Reason != "rotating keys" {
		t.Fatalf("cause = %v", context.Cause(cctx))
	}
	if !strings.Contains(e.log.String(), "connection killed by admin") || !strings.Contains(e.log.String(), "conn=c5") {
		t.Errorf("not logged: %s", e.log)
	}
	if _, err := e.cl.KillConn(ctx(t), "4711", ""); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("KillConn unknown: %v", err)
	}
}
