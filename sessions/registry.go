// Package sessions keeps the gateway's live session registry and the
// persisted history that `sygctl sessions` reads.
//
// A session is one SSH channel a user opened through the gateway: a shell, a
// command, an sftp subsystem, a port forward. Live entries can be killed; an
// ended entry is appended to the history file with its exit status.
//
// The registry also holds the client connections (conns.go): one with no
// channel open is listed as a row of kind "connection", and an admin can end
// a whole connection. Commands are kept cut to MaxCommand bytes.
package sessions

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNotFound is returned by Kill for an unknown or ended session.
var ErrNotFound = errors.New("no such session")

// Info is what the admin API reports for a session. Field names are the
// `sygctl sessions --json` contract.
type Info struct {
	ID         string    `json:"id"`
	Conn       string    `json:"conn"`
	User       string    `json:"user"`
	Project    string    `json:"project"`
	Container  string    `json:"container"`
	RemoteAddr string    `json:"remote_addr"`
	Started    time.Time `json:"started"`
	Ended      time.Time `json:"ended,omitzero"`
	LastActive time.Time `json:"last_activity"`
	Kind       string    `json:"kind"` // shell, exec, sftp, subsystem, direct-tcpip, direct-streamlocal, forwarded-tcpip, ...
	Command    string    `json:"command"`
	PTY        bool      `json:"pty"`
	BytesIn    int64     `json:"bytes_in"`  // client → container
	BytesOut   int64     `json:"bytes_out"` // container → client
	ExitStatus *int      `json:"exit_status,omitempty"`
	ExitSignal string    `json:"exit_signal,omitempty"`
	EndReason  string    `json:"end_reason,omitempty"`
}

// Session is a live registry entry. Its setters are safe for concurrent use.
type Session struct {
	mu   sync.Mutex
	info Info

	bytesIn, bytesOut *atomic.Int64
	lastActive        atomic.Int64 // unix nanos
	cancel            context.CancelCauseFunc
}

// SetKind records what the channel turned out to be (known only once the
// shell/exec/subsystem request arrives). A command longer than MaxCommand
// is cut (CutCommand).
func (s *Session) SetKind(kind, command string) {
	command = CutCommand(command)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.info.Kind, s.info.Command = kind, command
}

// SetPTY records that a terminal was requested.
func (s *Session) SetPTY() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.info.PTY = true
}

// SetContainer records which container serves the session.
func (s *Session) SetContainer(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.info.Container = name
}

// SetExit records the exit status or the signal that ended the command.
func (s *Session) SetExit(status *int, signal string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if status != nil {
		s.info.ExitStatus = status
	}
	if signal != "" {
		s.info.ExitSignal = signal
	}
}

// CountBytes makes Info report these counters.
func (s *Session) CountBytes(in, out *atomic.Int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bytesIn, s.bytesOut = in, out
}

// Touch marks activity now.
func (s *Session) Touch() { s.lastActive.Store(time.Now().UnixNano()) }

// ID returns the session's registry ID.
func (s *Session) ID() string { return s.info.ID }

// Info returns a snapshot.
func (s *Session) Info() Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.info
	if s.bytesIn != nil {
		in.BytesIn, in.BytesOut = s.bytesIn.Load(), s.bytesOut.Load()
	}
	in.LastActive = time.Unix(0, s.lastActive.Load()).UTC()
	return in
}

// Registry holds the live sessions and writes ended ones to the history.
type Registry struct {
	mu      sync.Mutex
	live    map[string]*Session
	conns   map[string]*Session // client connections, by connection ID (conns.go)
	next    atomic.Uint64
	history *History // nil: no history kept
	now     func() time.Time
}

// NewRegistry returns a registry appending ended sessions to h (may be nil).
func NewRegistry(h *History) *Registry {
	return &Registry{live: map[string]*Session{}, conns: map[string]*Session{}, history: h, now: time.Now}
}

// Add registers a live session; cancel is called (with a cause the user
// sees) when an admin kills it. The ID is filled in.
func (r *Registry) Add(in Info, cancel context.CancelCauseFunc) *Session {
	in.ID = strconv.FormatUint(r.next.Add(1), 10)
	s := r.newSession(in, cancel)
	r.mu.Lock()
	r.live[in.ID] = s
	r.mu.Unlock()
	return s
}

// SetIDBase makes IDs continue after base (the history's highest), so an ID
// names one session across gateway restarts.
func (r *Registry) SetIDBase(base uint64) {
	for {
		cur := r.next.Load()
		if cur >= base || r.next.CompareAndSwap(cur, base) {
			return
		}
	}
}

// End removes the session and appends it to the history with reason.
func (r *Registry) End(s *Session, reason string) {
	r.mu.Lock()
	_, ok := r.live[s.info.ID]
	delete(r.live, s.info.ID)
	r.mu.Unlock()
	if !ok {
		return
	}
	in := s.Info()
	in.Ended = r.now().UTC()
	in.EndReason = reason
	if r.history != nil {
		r.history.Append(in)
	}
}

// List returns the live sessions, oldest first, and a row of kind
// KindConnection for each client connection that has no channel open (an
// `ssh -N -L` tunnel, an idle ControlMaster).
func (r *Registry) List() []Info {
	r.mu.Lock()
	out := make([]Info, 0, len(r.live))
	busy := map[string]bool{}
	for _, s := range r.live {
		in := s.Info()
		busy[in.Conn] = true
		out = append(out, in)
	}
	for id, c := range r.conns {
		if !busy[id] {
			out = append(out, c.Info())
		}
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b Info) int {
		if c := a.Started.Compare(b.Started); c != 0 {
			return c
		}
		return compareIDs(a.ID, b.ID)
	})
	return out
}

// Kill ends a live session, telling its user reason. A connection ID ends
// that whole connection (see KillConn).
func (r *Registry) Kill(id, reason string) error {
	r.mu.Lock()
	s, ok := r.live[id]
	conn := false
	if !ok {
		s, ok = r.conns[id]
		conn = ok
	}
	r.mu.Unlock()
	if !ok {
		return fmt.Errorf("session %s: %w", id, ErrNotFound)
	}
	if s.cancel == nil {
		return fmt.Errorf("session %s cannot be killed", id)
	}
	s.cancel(&KilledError{Reason: reason, Connection: conn})
	return nil
}

// CancelAll ends every live session with cause (shown to its user).
func (r *Registry) CancelAll(cause error) {
	r.mu.Lock()
	live := make([]*Session, 0, len(r.live))
	for _, s := range r.live {
		live = append(live, s)
	}
	r.mu.Unlock()
	for _, s := range live {
		if s.cancel != nil {
			s.cancel(cause)
		}
	}
}

// newSession is a registry entry for in, started now unless in says when,
// and active now.
func (r *Registry) newSession(in Info, cancel context.CancelCauseFunc) *Session {
	now := r.now().UTC()
	if in.Started.IsZero() {
		in.Started = now
	}
	s := &Session{info: in, cancel: cancel}
	s.lastActive.Store(now.UnixNano())
	return s
}

// History returns the persisted history (nil when none is kept).
func (r *Registry) History() *History { return r.history }

// KilledError is the cancel cause of a session an admin killed.
type KilledError struct {
	Reason     string
	Connection bool // the admin ended the whole connection (KillConn)
}

// UserMessage is what the session's user is told (usererr.Error): the
// same text as Error.
func (e *KilledError) UserMessage() string { return e.Error() }

func (e *KilledError) Error() string {
	msg := "session killed by an administrator"
	if e.Connection {
		msg = "connection closed by an administrator"
	}
	if e.Reason == "" {
		return msg
	}
	return msg + ": " + e.Reason
}

func compareIDs(a, b string) int {
	x, _ := strconv.ParseUint(a, 10, 64)
	y, _ := strconv.ParseUint(b, 10, 64)
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}
