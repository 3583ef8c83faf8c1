package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"
)

// Defaults of the pre-login and per-connection caps (issue 6).
const (
	DefaultMaxStartups          = 64 // handshakes at once (the int form)
	DefaultMaxStartupsQueue     = 512
	DefaultPerSourceMaxStartups = 10
	DefaultKexTimeout           = 15 * time.Second
	DefaultMaxSessions          = 10 // as sshd's MaxSessions
	DefaultMaxForwards          = 100
)

// Startups is server.max_startups: how many connections may be in the SSH
// handshake (accepted, not yet authenticated) at once, in either of two forms.
//
//   - An integer N (the historical form): N handshakes at once; further
//     connections wait for a free slot in a queue of max_startups_queue
//     (within login_grace_time) and only those that find the queue full are
//     refused. A burst of logins waits instead of failing.
//   - "start:rate:full", sshd's MaxStartups: full handshakes at once; once
//     start unauthenticated connections exist (in the handshake or waiting),
//     each new one is refused with probability rate%, rising linearly to 100%
//     at full (random early drop). No queue beyond full: this form trades
//     burst tolerance for sshd's flood behaviour.
type Startups struct {
	Start, Rate, Full int
	Set               bool // the key was present
	Early             bool // the "start:rate:full" form: random early drop
	err               string
}

// Slots is the number of handshakes allowed at once.
func (m Startups) Slots() int { return m.Full }

func (m Startups) String() string {
	if m.Early {
		return fmt.Sprintf("%d:%d:%d", m.Start, m.Rate, m.Full)
	}
	return strconv.Itoa(m.Full)
}

// MarshalText implements encoding.TextMarshaler.
func (m Startups) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalTOML accepts an integer or a "start:rate:full" string. A wrong
// shape is recorded and reported by validate with its line.
func (m *Startups) UnmarshalTOML(raw []byte) error {
	*m = Startups{Set: true}
	var v struct{ V any }
	if err := toml.Unmarshal(append([]byte("V = "), raw...), &v); err != nil {
		m.err = `want a count or "start:rate:full"`
		return nil
	}
	switch x := v.V.(type) {
	case int64:
		if x < 0 || x > 1<<20 {
			m.err = fmt.Sprintf("%d: want a count from 1 to %d", x, 1<<20)
			return nil
		}
		m.Start, m.Rate, m.Full = int(x), 100, int(x)
	case string:
		m.parse(x)
	default:
		m.err = `want a count or "start:rate:full"`
	}
	return nil
}

func (m *Startups) parse(s string) {
	parts := strings.Split(s, ":")
	if len(parts) == 1 {
		n, err := strconv.Atoi(strings.TrimSpace(parts[0]))
		if err != nil || n < 1 || n > 1<<20 {
			m.err = fmt.Sprintf(`%q: want a count or "start:rate:full"`, s)
			return
		}
		m.Start, m.Rate, m.Full = n, 100, n
		return
	}
	if len(parts) != 3 {
		m.err = fmt.Sprintf(`%q: want "start:rate:full", e.g. "10:30:100"`, s)
		return
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || v < 0 {
			m.err = fmt.Sprintf(`%q: want "start:rate:full" with non-negative integers, e.g. "10:30:100"`, s)
			return
		}
		n[i] = v
	}
	switch {
	case n[0] < 1 || n[2] > 1<<20:
		m.err = fmt.Sprintf("%q: start must be at least 1 and full at most %d", s, 1<<20)
	case n[1] > 100:
		m.err = fmt.Sprintf("%q: rate is a percentage (0 to 100)", s)
	case n[2] <= n[0]:
		m.err = fmt.Sprintf("%q: full must be greater than start", s)
	default:
		m.Start, m.Rate, m.Full, m.Early = n[0], n[1], n[2], true
	}
}

// fillStartupDefaults sets the pre-login and per-connection caps that were
// left unset.
func (s *Server) fillStartupDefaults() {
	if !s.MaxStartups.Set || (s.MaxStartups.Full == 0 && s.MaxStartups.err == "") {
		s.MaxStartups = Startups{Start: DefaultMaxStartups, Rate: 100, Full: DefaultMaxStartups, Set: true}
	}
	if s.MaxStartupsQueue == 0 {
		s.MaxStartupsQueue = DefaultMaxStartupsQueue
	}
	if s.PerSourceMaxStartups == 0 {
		s.PerSourceMaxStartups = DefaultPerSourceMaxStartups
	}
	if !s.KexTimeout.Set || s.KexTimeout.D == 0 {
		s.KexTimeout = Duration{DefaultKexTimeout, true}
	}
	if s.MaxSessions == 0 {
		s.MaxSessions = DefaultMaxSessions
	}
	if s.MaxForwards == 0 {
		s.MaxForwards = DefaultMaxForwards
	}
}

// validateStartups checks the caps, naming the key (and so the line).
func validateStartups(s Server) []validationError {
	var errs []validationError
	bad := func(path, format string, args ...any) {
		errs = append(errs, validationError{path, fmt.Sprintf(format, args...)})
	}
	if s.MaxStartups.err != "" {
		bad("server.max_startups", "server.max_startups: %s", s.MaxStartups.err)
	}
	for _, k := range []struct {
		key string
		v   int
	}{
		{"server.max_startups_queue", s.MaxStartupsQueue},
		{"server.per_source_max_startups", s.PerSourceMaxStartups},
		{"server.max_sessions", s.MaxSessions},
		{"server.max_forwards", s.MaxForwards},
	} {
		if k.v < 0 || k.v > 1<<20 {
			bad(k.key, "%s = %d: want a count from 1 to %d (0 or unset: the default)", k.key, k.v, 1<<20)
		}
	}
	return errs
}
