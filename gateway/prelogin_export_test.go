package gateway

// StartupCounts returns the connections holding a handshake slot and those
// waiting for one, so tests can wait for a queue to form.
func StartupCounts(s *Server) (active, waiting int) { return s.startups.counts() }
