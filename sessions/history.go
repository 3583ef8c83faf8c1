package sessions

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	// A crash mid-Append leaves a last line without its newline; the next
	// record would be glued onto it and lost with it. End that line first.
	if torn, err := endsTorn(path); err != nil {
		log.Warn("check session history", "path", path, "err", err)
	} else if torn {
		if _, err := f.Write([]byte{'\n'}); err != nil {
			f.Close()
			return nil, fmt.Errorf("open session history: %w", err)
		}
		log.Warn("session history ended in a torn record; it is skipped", "path", path)
	}
	return &History{path: path, f: f, log: log}, nil
}

// endsTorn reports whether the file at path is non-empty and does not end
// in a newline.
func endsTorn(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return false, err
	}
	var last [1]byte
	if _, err := f.ReadAt(last[:], fi.Size()-1); err != nil {
		return false, err
	}
	return last[0] != '\n', nil
}

// maxHistoryLine bounds one record. The longest exec command an SSH client
// can send (a 256 KiB packet) is at most 6x that once JSON-escaped; a longer
// line is skipped rather than failing the whole read.
const maxHistoryLine = 8 << 20

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
//
// It reads through its own file handle without h.mu, so an admin reading a
// long history never holds up Append on a session's teardown; a line being
// appended meanwhile is either complete or skipped as torn.
func (h *History) Read(n int) ([]Info, error) {
	f, err := os.Open(h.path)
	if err != nil {
		return nil, fmt.Errorf("read session history: %w", err)
	}
	defer f.Close()
	var (
		out     []Info
		line    []byte
		tooLong bool
	)
	rd := bufio.NewReaderSize(f, 64<<10)
	for {
		chunk, err := rd.ReadSlice('\n')
		if !tooLong && len(line)+len(chunk) > maxHistoryLine {
			tooLong, line = true, line[:0]
			h.log.Warn("session history: record too long, skipped", "path", h.path)
		}
		if !tooLong {
			line = append(line, chunk...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue // the rest of this line is still to come
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("read session history: %w", err)
		}
		var in Info
		if !tooLong && len(line) > 0 && json.Unmarshal(line, &in) == nil {
			out = append(out, in)
			if n > 0 && len(out) > 2*n {
				out = append(out[:0], out[len(out)-n:]...)
			}
		}
		line, tooLong = line[:0], false
		if err == io.EOF {
			break
		}
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
