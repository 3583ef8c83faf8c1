package sessions

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// KindConnection is the kind of the row List shows for a client connection
// that has no channel open.
const KindConnection = "connection"

// AddConn registers a live client connection. in.ID and in.Conn are the
// connection's ID (the gateway's "c<N>", a namespace apart from the numeric
// session IDs); Kind is set to KindConnection. kill ends the whole
// connection, its cause shown to the user on each open session.
//
// A connection is listed only while it has no session open: its sessions
// stand for it otherwise. It is not written to the history.
func (r *Registry) AddConn(in Info, kill context.CancelCauseFunc) *Session {
	in.Conn = in.ID
	in.Kind = KindConnection
	s := r.newSession(in, kill)
	r.mu.Lock()
	r.conns[in.ID] = s
	r.mu.Unlock()
	return s
}

// EndConn removes a connection registered with AddConn.
func (r *Registry) EndConn(s *Session) {
	r.mu.Lock()
	if r.conns[s.info.ID] == s {
		delete(r.conns, s.info.ID)
	}
	r.mu.Unlock()
}

// KillConn ends the whole client connection that id belongs to: id is a
// session ID or a connection ID. Every session of that connection ends, its
// user told reason, and the connection closes. It returns the connection ID.
func (r *Registry) KillConn(id, reason string) (string, error) {
	r.mu.Lock()
	connID := id
	if s, ok := r.live[id]; ok {
		connID = s.info.Conn
	}
	c, ok := r.conns[connID]
	r.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("connection of %s: %w", id, ErrNotFound)
	}
	if c.cancel == nil {
		return "", fmt.Errorf("connection %s cannot be killed", connID)
	}
	c.cancel(&KilledError{Reason: reason, Connection: true})
	return connID, nil
}

// IsConnID reports whether id names a client connection ("c<N>", as the
// gateway numbers them) rather than a session (a number).
func IsConnID(id string) bool {
	n, ok := strings.CutPrefix(id, "c")
	if !ok || n == "" {
		return false
	}
	_, err := strconv.ParseUint(n, 10, 64)
	return err == nil
}

// MaxCommand bounds a command as the registry, the history and the logs
// keep it: an exec request may carry up to 256 KiB, often with tokens in it.
const MaxCommand = 1024

// CutCommand returns cmd cut (at a character boundary) so that, with a
// marker that says how long it was, it fits in MaxCommand bytes; a command
// that fits is returned as is, so cutting twice changes nothing.
func CutCommand(cmd string) string {
	if len(cmd) <= MaxCommand {
		return cmd
	}
	marker := " …[cut: " + strconv.Itoa(len(cmd)) + " bytes]"
	n := MaxCommand - len(marker)
	for n > 0 && !utf8.RuneStart(cmd[n]) {
		n--
	}
	return cmd[:n] + marker
}
