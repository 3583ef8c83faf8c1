package gateway

import "github.com/sygaldry/sygaldry/config"

// SetTestHook makes hookPoint call f until the test ends.
func SetTestHook(t interface{ Cleanup(func()) }, f func(point, project string)) {
	testHook.Store(&f)
	t.Cleanup(func() { testHook.Store(nil) })
}

// StoreConfig puts c in force the way Reload does, but without ending the
// connections it no longer grants: what a connection sees when it opens a
// channel in the instant between a reload's swap and its sweep.
func (s *Server) StoreConfig(c *config.Config) { s.cur.Store(c) }
