package sessions

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func openTestHistory(t *testing.T, path string) *History {
	t.Helper()
	h, err := OpenHistory(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestHistoryFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	openTestHistory(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestHistoryReadLastN(t *testing.T) {
	h := openTestHistory(t, filepath.Join(t.TempDir(), "history.jsonl"))
	for i := 1; i <= 25; i++ {
		h.Append(Info{ID: strconv.Itoa(i)})
	}
	for _, tc := range []struct {
		n           int
		first, last string
		count       int
	}{
		{0, "1", "25", 25}, {-1, "1", "25", 25}, {1, "25", "25", 1}, {3, "23", "25", 3},
		{10, "16", "25", 10}, {25, "1", "25", 25}, {100, "1", "25", 25},
	} {
		got, err := h.Read(tc.n)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != tc.count || got[0].ID != tc.first || got[len(got)-1].ID != tc.last {
			t.Errorf("Read(%d): %d records %s..%s, want %d %s..%s", tc.n, len(got), got[0].ID, got[len(got)-1].ID, tc.count, tc.first, tc.last)
		}
	}
	if h.MaxID() != 25 {
		t.Errorf("MaxID %d", h.MaxID())
	}
}

func TestHistoryEmpty(t *testing.T) {
	h := openTestHistory(t, filepath.Join(t.TempDir(), "history.jsonl"))
	got, err := h.Read(50)
	if err != nil || len(got) != 0 {
		t.Fatalf("Read on empty: %v %v", got, err)
	}
	if h.MaxID() != 0 {
		t.Fatal("MaxID on empty")
	}
}

func TestHistorySurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	h, err := OpenHistory(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.Append(Info{ID: "1", User: "alice"})
	h.Close()
	h.Append(Info{ID: "2"}) // after Close: dropped, no panic
	h = openTestHistory(t, path)
	h.Append(Info{ID: "3", User: "bob"})
	got, err := h.Read(0)
	if err != nil || len(got) != 2 || got[0].User != "alice" || got[1].User != "bob" {
		t.Fatalf("after reopen: %+v %v", got, err)
	}
}

// A crash mid-write leaves a torn last line with no newline. It must cost
// that one record only, not the next one appended after the restart.
func TestHistoryTornLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	if err := os.WriteFile(path, []byte(`{"id":"1","user":"alice"}`+"\n"+`{"id":"2","us`), 0o600); err != nil {
		t.Fatal(err)
	}
	h := openTestHistory(t, path)
	h.Append(Info{ID: "3", User: "carol"})
	got, err := h.Read(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != "1" || got[1].ID != "3" {
		t.Fatalf("records %+v, want IDs 1 and 3", got)
	}
	if h.MaxID() != 3 {
		t.Fatalf("MaxID %d, want 3", h.MaxID())
	}
}

// One record too long to read must not make the whole history unreadable
// (and MaxID fall to 0, so IDs would repeat after a restart).
func TestHistoryOverlongLineSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	h := openTestHistory(t, path)
	h.Append(Info{ID: "1"})
	h.Append(Info{ID: "2", Command: strings.Repeat("\x01", maxHistoryLine/6+1)}) // \u0001 escapes
	h.Append(Info{ID: "3"})
	got, err := h.Read(0)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if len(got) != 2 || got[0].ID != "1" || got[1].ID != "3" {
		t.Fatalf("got %d records", len(got))
	}
	if h.MaxID() != 3 {
		t.Fatalf("MaxID %d, want 3", h.MaxID())
	}
}

func TestHistoryLongCommandKept(t *testing.T) {
	h := openTestHistory(t, filepath.Join(t.TempDir(), "history.jsonl"))
	// The longest exec an SSH client can send (256 KiB packet), every
	// byte escaped by JSON: the record must still read back.
	cmd := strings.Repeat("\x01", 256<<10)
	h.Append(Info{ID: "1", Command: cmd})
	got, err := h.Read(0)
	if err != nil || len(got) != 1 || got[0].Command != cmd {
		t.Fatalf("long command lost: %d records, err %v", len(got), err)
	}
}
