package config

import (
	"errors"
	"sync"
	"sync/atomic"
)

// Live is the one holder of the configuration in force. The gateway, the
// container manager and the admin API read it with Load; a reload (SIGHUP,
// or `sygctl reload`) replaces it with Reload, one at a time.
type Live struct {
	cur atomic.Pointer[Config]
	mu  sync.Mutex // one Reload at a time
}

// NewLive holds c as the configuration in force.
func NewLive(c *Config) *Live {
	l := &Live{}
	l.cur.Store(c)
	return l
}

// Load returns the configuration in force. Callers read it once per
// decision and never modify it.
func (l *Live) Load() *Config { return l.cur.Load() }

// Set puts c in force as it is, with no checks: for a configuration built
// in code (tests). A file goes through Reload.
func (l *Live) Set(c *Config) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cur.Store(c)
}

// Reload reads the file the configuration in force came from again,
// validates it (and with check, when not nil: what only the running gateway
// can judge, such as the host's GPUs), and puts it in force with the
// restart keys' running values kept (restartKeys). It returns what changed,
// each change marked applied or needing a restart. A file that is refused
// leaves the running configuration in force; the error names file:line.
func (l *Live) Reload(check func(*Config) error) ([]Change, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	running := l.cur.Load()
	if running.Path == "" {
		return nil, errors.New("the configuration in force was not read from a file; nothing to reload")
	}
	next, err := Load(running.Path)
	if err != nil {
		return nil, err
	}
	if check != nil {
		if err := check(next); err != nil {
			return nil, err
		}
	}
	changes := Diff(running, next)
	KeepRestartKeys(next, running)
	l.cur.Store(next)
	return changes, nil
}
