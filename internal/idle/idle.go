// Package idle keeps, per container, the count of the gateway's
// connections inside it, the idle timer armed when the last one leaves, and
// since when it has been idle: the bookkeeping both backends' idle stops
// share (workspace/ for Docker, kube/ for Kubernetes).
package idle

import "time"

// Uses is that bookkeeping. It has no lock of its own: its owner calls it
// under the mutex that also guards what it decides with it. The zero value
// is ready to use.
type Uses struct {
	m     map[string]*use
	since map[string]time.Time
}

type use struct {
	n     int
	timer *time.Timer
	gen   uint64 // bumped on every arm and cancel; a firing timer checks it
}

func (u *use) stop() {
	if u.timer != nil {
		u.timer.Stop()
		u.timer = nil
	}
	u.gen++
}

func (s *Uses) get(name string) *use {
	if s.m == nil {
		s.m = map[string]*use{}
	}
	u := s.m[name]
	if u == nil {
		u = &use{}
		s.m[name] = u
	}
	return u
}

// Acquire records a connection inside name: its timer is stopped and it is
// no longer idle.
func (s *Uses) Acquire(name string) {
	u := s.get(name)
	u.n++
	u.stop()
	delete(s.since, name)
}

// Release ends a use recorded by Acquire. ok is false when name held none;
// idle is true when this was the last one (name is idle from now: arm its
// timer).
func (s *Uses) Release(name string) (ok, idle bool) {
	u := s.m[name]
	if u == nil || u.n == 0 {
		return false, false
	}
	u.n--
	if u.n > 0 {
		return true, false
	}
	s.SetSince(name, time.Now())
	return true, true
}

// InUse is the number of connections inside name.
func (s *Uses) InUse(name string) int {
	if u := s.m[name]; u != nil {
		return u.n
	}
	return 0
}

// Tracked reports whether name is held or has been armed (and not
// forgotten since).
func (s *Uses) Tracked(name string) bool {
	_, ok := s.m[name]
	return ok
}

// Armed reports whether name's idle timer is armed.
func (s *Uses) Armed(name string) bool {
	u := s.m[name]
	return u != nil && u.timer != nil
}

// Since is when name's last use ended; zero when not known.
func (s *Uses) Since(name string) time.Time { return s.since[name] }

// SetSince records that name has been idle since t.
func (s *Uses) SetSince(name string, t time.Time) {
	if s.since == nil {
		s.since = map[string]time.Time{}
	}
	s.since[name] = t
}

// MarkIdle records that name is idle from now, unless it already was.
func (s *Uses) MarkIdle(name string) {
	if _, ok := s.since[name]; !ok {
		s.SetSince(name, time.Now())
	}
}

// ForgetSince drops when name became idle (it stopped, or is gone).
func (s *Uses) ForgetSince(name string) { delete(s.since, name) }

// Arm (re)starts name's idle timer: fire(gen) runs after d, at once when d
// is not positive; the fire func checks Current(name, gen) under the
// owner's lock before it acts.
func (s *Uses) Arm(name string, d time.Duration, fire func(gen uint64)) {
	u := s.get(name)
	u.stop()
	gen := u.gen
	u.timer = time.AfterFunc(max(d, 0), func() { fire(gen) })
}

// Current reports whether the timer of generation gen is still name's
// latest and nobody is inside: whether the idle stop it fired may go on.
func (s *Uses) Current(name string, gen uint64) bool {
	u := s.m[name]
	return u != nil && u.n == 0 && u.gen == gen
}

// Forget stops name's timer and drops its use record (not its idle time).
func (s *Uses) Forget(name string) {
	if u := s.m[name]; u != nil {
		u.stop()
		delete(s.m, name)
	}
}

// Idle is the names tracked with nobody inside.
func (s *Uses) Idle() []string {
	var out []string
	for name, u := range s.m {
		if u.n == 0 {
			out = append(out, name)
		}
	}
	return out
}

// StopAll stops every timer (the owner closes).
func (s *Uses) StopAll() {
	for _, u := range s.m {
		u.stop()
	}
}
