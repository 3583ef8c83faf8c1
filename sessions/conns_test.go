package sessions

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// A connection is listed (kind "connection") only while it has no session
// open; its sessions stand for it otherwise.
func TestRegistryListsIdleConnections(t *testing.T) {
	r := NewRegistry(nil)
	c := r.AddConn(Info{ID: "c1", User: "bob", Project: "zephyr", RemoteAddr: "192.0.2.9:4000"}, func(error) {})
	list := r.List()
	if len(list) != 1 || list[0].ID != "c1" || list[0].Conn != "c1" || list[0].Kind != KindConnection ||
		list[0].User != "bob" || list[0].Started.IsZero() {
		t.Fatalf("idle connection: %+v", list)
	}
	s := r.Add(Info{Conn: "c1", User: "bob"}, func(error) {})
	if list := r.List(); len(list) != 1 || list[0].ID != s.ID() {
		t.Fatalf("connection with a session: %+v", list)
	}
	r.End(s, "done")
	if list := r.List(); len(list) != 1 || list[0].ID != "c1" {
		t.Fatalf("after its session ended: %+v", list)
	}
	r.EndConn(c)
	if list := r.List(); len(list) != 0 {
		t.Fatalf("after EndConn: %+v", list)
	}
}

// KillConn ends the connection a session belongs to, or the connection
// named; the cause says the whole connection was closed. Kill with a
// connection ID does the same.
func TestRegistryKillConn(t *testing.T) {
	r := NewRegistry(nil)
	ctx, cancel := context.WithCancelCause(context.Background())
	r.AddConn(Info{ID: "c7", User: "alice"}, cancel)
	s := r.Add(Info{Conn: "c7", User: "alice"}, func(error) { t.Error("the session itself was cancelled, not its connection") })

	id, err := r.KillConn(s.ID(), "rotating keys")
	if err != nil || id != "c7" {
		t.Fatalf("KillConn(session) = %q, %v", id, err)
	}
	<-ctx.Done()
	var ke *KilledError
	if !errors.As(context.Cause(ctx), &ke) || !ke.Connection || ke.Error() != "connection closed by an administrator: rotating keys" {
		t.Fatalf("cause = %v", context.Cause(ctx))
	}

	ctx2, cancel2 := context.WithCancelCause(context.Background())
	r.AddConn(Info{ID: "c8"}, cancel2)
	if err := r.Kill("c8", ""); err != nil {
		t.Fatal(err)
	}
	<-ctx2.Done()
	if got := context.Cause(ctx2).Error(); got != "connection closed by an administrator" {
		t.Fatalf("Kill(connection ID) cause %q", got)
	}

	if _, err := r.KillConn("c99", ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("KillConn unknown: %v", err)
	}
	orphan := r.Add(Info{Conn: "c42"}, func(error) {})
	if _, err := r.KillConn(orphan.ID(), ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("KillConn of a session without a registered connection: %v", err)
	}
}

// Long commands are cut to MaxCommand bytes, marker included, at a character
// boundary, in the live registry and so in the history.
func TestCommandsAreCut(t *testing.T) {
	h, err := OpenHistory(filepath.Join(t.TempDir(), "history.jsonl"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	r := NewRegistry(h)
	long := "echo " + strings.Repeat("é", 3000) // 6005 bytes, 2-byte runes
	s := r.Add(Info{}, func(error) {})
	s.SetKind("exec", long)
	got := s.Info().Command
	prefix, marker, ok := strings.Cut(got, " …[cut: ")
	if !ok || marker != "6005 bytes]" {
		t.Fatalf("no marker: ...%q", got[max(0, len(got)-40):])
	}
	if len(got) > MaxCommand || len(got) < MaxCommand-2 || !strings.HasPrefix(long, prefix) || !utf8.ValidString(got) {
		t.Fatalf("kept %d bytes (valid UTF-8: %v)", len(got), utf8.ValidString(got))
	}
	if CutCommand(got) != got {
		t.Error("cutting a cut command changed it")
	}
	r.End(s, "done")
	all, err := h.Read(0)
	if err != nil || len(all) != 1 || all[0].Command != got {
		t.Fatalf("history: %v %v", all, err)
	}
	short := strings.Repeat("x", MaxCommand)
	if CutCommand(short) != short {
		t.Error("a command of exactly MaxCommand bytes was cut")
	}
}

func TestIsConnID(t *testing.T) {
	for id, want := range map[string]bool{"c1": true, "c42": true, "c": false, "7": false, "cx": false, "c-1": false, "C1": false} {
		if got := IsConnID(id); got != want {
			t.Errorf("IsConnID(%q) = %v", id, got)
		}
	}
}
