package gateway

import (
	"fmt"
	"time"

	"github.com/sygaldry/sygaldry/internal/usererr"
)

// touched records channel traffic on the connection now.
func (st *connState) touched() { st.traffic.Store(time.Now().UnixNano()) }

// idleFor is how long the connection has had no channel traffic.
func (st *connState) idleFor() time.Duration {
	return time.Since(time.Unix(0, st.traffic.Load()))
}

// idleCheckIn is when to compare the idle_disconnect in force (read each
// time, so a reload applies to open connections too) with the
// connection's idle time next: a fraction of it, within bounds; a minute
// while it is off.
func (st *connState) idleCheckIn() time.Duration {
	d := st.s.conf().Server.IdleDisconnect.D
	if d <= 0 {
		return time.Minute
	}
	return min(max(d/8, 100*time.Millisecond), time.Minute)
}

// idleExpired ends the connection, its sessions told why first, when it
// has had no channel traffic for server.idle_disconnect. Keepalives are
// global requests, not channel traffic: they do not count.
func (st *connState) idleExpired() bool {
	d := st.s.conf().Server.IdleDisconnect.D
	if d <= 0 || !st.authed.Load() || st.idleFor() < d {
		return false
	}
	st.log.Info("closing connection: no channel traffic", "idle_disconnect", d, "idle", st.idleFor().Round(time.Second))
	st.end(usererr.New(fmt.Sprintf("closing this connection after %s without traffic (the gateway's idle_disconnect)", d), nil))
	return true
}
