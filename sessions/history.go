package sessions

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
)

// History is an append-only JSON-lines file of ended sessions. It survives
// gateway restarts; one line per session keeps it greppable and makes a torn
// last line (crash mid-write) cost one record, not the file.
type History struct {
	mu   sync.Mutex
	path string
	f    *os.File
	log  *slog.Logger
}

// OpenHistory opens (creating, mode 0600) the history file at path.
func OpenHistory(path string, log *slog.Logger) (*History, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open session history: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &History{path: path, f: f, log: log}, nil
}

// Append writes one ended session. A write failure is logged, not returned:
// losing a history line must not break the user's session teardown.
func (h *History) Append(in Info) {
	b, err := json.Marshal(in)
	if err != nil {
		h.log.Error("encode session history", "err", err)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.f == nil {
		return
	}
	if _, err := h.f.Write(append(b, '\n')); err != nil {
		h.log.Error("write session history", "path", h.path, "err", err)
	}
}

// Read returns the last n ended sessions (all when n <= 0), oldest first.
// Lines that do not decode (a torn write) are skipped.
func (h *History) Read(n int) ([]Info, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f, err := os.Open(h.path)
	if err != nil {
		return nil, fmt.Errorf("read session history: %w", err)
	}
	defer f.Close()
	var out []Info
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var in Info
		if json.Unmarshal(sc.Bytes(), &in) != nil {
			continue
		}
		out = append(out, in)
		if n > 0 && len(out) > 2*n {
			out = append(out[:0], out[len(out)-n:]...)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read session history: %w", err)
	}
	if n > 0 && len(out) > n {
		out = out[len(out)-n:]
	}
	return out, nil
}

// MaxID returns the highest numeric session ID recorded, so new IDs never
// repeat an old one.
func (h *History) MaxID() uint64 {
	all, err := h.Read(0)
	if err != nil {
		return 0
	}
	var max uint64
	for _, in := range all {
		if v, err := strconv.ParseUint(in.ID, 10, 64); err == nil && v > max {
			max = v
		}
	}
	return max
}

// Close closes the file.
func (h *History) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.f == nil {
		return nil
	}
	err := h.f.Close()
	h.f = nil
	return err
}
