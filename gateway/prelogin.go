package gateway

import (
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gliderlabs/ssh"

	"github.com/sygaldry/sygaldry/config"
)

// Before login (issue 6). A connection goes through these stages:
//
//	accept ─▶ waits for a handshake slot ─▶ handshake: versions, key exchange ─▶ authentication ─▶ authenticated
//	          (queue, FIFO)                 (kex_timeout)                       (login_grace_time, counted from accept)
//
// A handshake slot is held from the end of the wait until the connection
// authenticates or closes. Three limits apply to slots:
//
//   - max_startups: slots in all (sshd's MaxStartups). In its
//     "start:rate:full" form new connections are also dropped at random
//     once start unauthenticated connections exist, as sshd does.
//   - per_source_max_startups: slots one source address may hold. A
//     connection over its source's share does not take a slot: it waits.
//   - kex_timeout: a slot holder that has not sent its first authentication
//     request within this time (it is silent, or slow in the key exchange)
//     is closed, and its slot goes to the next in line.
//
// Connections that find no slot wait in one FIFO queue of at most
// max_startups_queue, bounded by login_grace_time; a freed slot goes to the
// oldest waiter whose source is under its share. Only a connection that
// finds the queue full is refused. So a burst of a few hundred logins from
// one address waits and gets in (ten at a time), while a flood of silent
// connections from one address holds ten slots for kex_timeout each and
// fills the queue, but never the slots that other addresses need: their
// connections find a free slot at once. Why slots are per source until
// authentication, not only until the key exchange: a client can finish the
// key exchange cheaply and then stall, and would otherwise take every slot
// for login_grace_time.
type startupGate struct {
	mu       sync.Mutex
	active   int            // connections holding a slot
	bySource map[string]int // slots held per source address
	waiting  []*startupWaiter
	holders  map[net.Conn]struct{} // connections holding a slot, closed by close
	closed   bool
	stop     chan struct{} // closed by close: waiters give up
	dropRand func() int    // in [0, 100): the random early drop's draw; nil: math/rand
}

type startupWaiter struct {
	source  string
	granted chan struct{} // closed when the waiter was given a slot
}

// startupVerdict is why admit did not give a slot.
type startupVerdict int

const (
	startupAdmitted startupVerdict = iota
	startupQueued
	startupQueueFull
	startupDropped // random early drop, or full in the "start:rate:full" form
	startupClosed
)

// startupLimits is what the config in force says, read once per call.
type startupLimits struct {
	m         config.Startups
	queue     int
	perSource int
}

func limitsOf(c *config.Config) startupLimits {
	return startupLimits{m: c.Server.MaxStartups, queue: c.Server.MaxStartupsQueue, perSource: c.Server.PerSourceMaxStartups}
}

func (g *startupGate) init() {
	if g.bySource == nil {
		g.bySource = map[string]int{}
		g.holders = map[net.Conn]struct{}{}
		g.stop = make(chan struct{})
	}
}

// admit gives the connection from source a slot, or a place in the queue,
// or refuses it.
func (g *startupGate) admit(source string, lim startupLimits) (*startupWaiter, startupVerdict) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.init()
	if g.closed {
		return nil, startupClosed
	}
	if lim.m.Early {
		// sshd's drop_connection, over every unauthenticated connection.
		n := g.active + len(g.waiting)
		if n >= lim.m.Full {
			return nil, startupDropped
		}
		if n >= lim.m.Start {
			p := lim.m.Rate + (100-lim.m.Rate)*(n-lim.m.Start)/(lim.m.Full-lim.m.Start)
			if g.draw() < p {
				return nil, startupDropped
			}
		}
	}
	// Every release hands freed slots to eligible waiters first, so no
	// waiter can use a slot that is free now: a newcomer may take it.
	if g.active < lim.m.Slots() && g.bySource[source] < lim.perSource {
		g.take(source)
		return nil, startupAdmitted
	}
	if len(g.waiting) >= lim.queue {
		return nil, startupQueueFull
	}
	w := &startupWaiter{source: source, granted: make(chan struct{})}
	g.waiting = append(g.waiting, w)
	return w, startupQueued
}

func (g *startupGate) draw() int {
	if g.dropRand != nil {
		return g.dropRand()
	}
	return rand.IntN(100)
}

func (g *startupGate) take(source string) {
	g.active++
	g.bySource[source]++
}

// wait blocks until w has a slot (true), or d passes or the gate closes
// (false; w has left the queue).
func (g *startupGate) wait(w *startupWaiter, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.granted:
		return true
	case <-t.C:
	case <-g.stop:
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-w.granted: // granted while the timer fired: keep it
		return true
	default:
	}
	for i, o := range g.waiting {
		if o == w {
			g.waiting = append(g.waiting[:i], g.waiting[i+1:]...)
			break
		}
	}
	return false
}

// release frees source's slot and hands free slots to the oldest waiters
// whose sources are under their share.
func (g *startupGate) release(source string, lim startupLimits) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.active--
	if g.bySource[source]--; g.bySource[source] <= 0 {
		delete(g.bySource, source)
	}
	for i := 0; i < len(g.waiting) && g.active < lim.m.Slots(); {
		w := g.waiting[i]
		if g.bySource[w.source] >= lim.perSource {
			i++
			continue
		}
		g.waiting = append(g.waiting[:i], g.waiting[i+1:]...)
		g.take(w.source)
		close(w.granted)
	}
}

// hold records that c holds a slot, so that close can end it; false when
// the gate is closed already (c must then give its slot back).
func (g *startupGate) hold(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.holders[c] = struct{}{}
	return true
}

func (g *startupGate) unhold(c net.Conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.holders, c)
}

// close refuses every waiting and future connection and closes those in
// the handshake (server shutdown: unauthenticated connections have no
// sessions to drain).
func (g *startupGate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.init()
	if !g.closed {
		g.closed = true
		close(g.stop)
	}
	for c := range g.holders {
		c.Close()
	}
}

// counts returns the slots held and the connections waiting (for tests and
// metrics).
func (g *startupGate) counts() (active, waiting int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.active, len(g.waiting)
}

// sourceOf is the address a per-source share is counted for: the IP
// without the port.
func sourceOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

// acceptConn runs before the handshake, on the goroutine that serves the
// connection: it waits for a handshake slot (see startupGate), arms the key
// exchange timeout and the login grace time (counted from accept), and
// starts the goroutine that owns the connection's cleanup. A nil return
// closes the connection.
func (s *Server) acceptConn(ctx ssh.Context, c net.Conn) net.Conn {
	accepted := time.Now()
	log := s.prelog().With("remote", c.RemoteAddr().String())
	if s.closing.Load() {
		return nil
	}
	conf := s.conf()
	lim := limitsOf(conf)
	grace := conf.Server.LoginGraceTime.D
	source := sourceOf(c.RemoteAddr())
	w, verdict := s.startups.admit(source, lim)
	switch verdict {
	case startupQueued:
		if !s.startups.wait(w, grace) {
			if !s.closing.Load() {
				log.Info("closing connection: no handshake slot within login grace time", "grace", grace)
			}
			return nil
		}
	case startupQueueFull:
		log.Warn("refusing connection: too many connections waiting to log in",
			"max_startups", lim.m.String(), "max_startups_queue", lim.queue)
		return nil
	case startupDropped:
		log.Warn("refusing connection: random early drop (max_startups)", "max_startups", lim.m.String())
		return nil
	case startupClosed:
		return nil
	}
	if s.closing.Load() || !s.startups.hold(c) {
		s.startups.release(source, limitsOf(s.conf()))
		return nil
	}
	s.metrics.connAccepted()
	st := newConnState(s, ctx, c)
	st.startup.gate, st.startup.source, st.startup.conn = &s.startups, source, c
	ctx.SetValue(connStateKey{}, st)
	left := max(grace-time.Since(accepted), time.Millisecond)
	st.grace = time.AfterFunc(left, func() {
		if !st.isAuthenticated() {
			log.Info("closing connection: not authenticated within login grace time", "grace", grace)
			c.Close()
		}
	})
	kex := conf.Server.KexTimeout.D
	st.startup.kex = time.AfterFunc(min(kex, left), func() {
		if !st.startup.authBegun.Load() && !st.isAuthenticated() {
			log.Info("closing connection: no authentication request within kex_timeout", "kex_timeout", kex)
			c.Close()
		}
	})
	st.run()
	return c
}

// authBegun is called with the client's first authentication request: the
// key exchange is over, kex_timeout no longer applies.
func (s *Server) authBegun(ctx ssh.Context) string {
	if st := stateOf(ctx); st != nil {
		st.startup.authBegun.Store(true)
		st.startup.kex.Stop()
	}
	return "" // no banner
}

// startupHold is a connection's handshake slot, held until it authenticates
// or closes.
type startupHold struct {
	gate      *startupGate
	source    string
	conn      net.Conn
	kex       *time.Timer
	authBegun atomic.Bool
	once      sync.Once
}

// release gives the slot back, once; limits are those in force now.
func (h *startupHold) release(s *Server) {
	h.once.Do(func() {
		if h.kex != nil {
			h.kex.Stop()
		}
		if h.gate != nil {
			h.gate.unhold(h.conn)
			h.gate.release(h.source, limitsOf(s.conf()))
		}
	})
}
