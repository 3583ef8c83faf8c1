// Package admin serves the gateway's admin API: HTTP over a root-only unix
// socket (see Listen), read by sygctl through package admin/client.
//
// Endpoints (errors are {"error": "..."} with a fitting status code):
//
//	GET  /v1/status                 version, start time, live session count
//	GET  /v1/sessions               live sessions, oldest first, and a row of
//	                                kind "connection" (id "c<N>") for each
//	                                client connection with no channel open
//	GET  /v1/sessions/history?n=50  the last n ended sessions (n=0: all)
//	POST /v1/sessions/{id}/kill     body {"reason": "...", "connection": false};
//	                                404 when not live. id is a session or a
//	                                connection ("c<N>": ends the connection);
//	                                "connection": true ends the whole client
//	                                connection the session belongs to
//	GET  /v1/containers             managed containers
//	GET  /v1/gpus                   the host's GPUs (GPUReport) with their
//	                                lease holders; 200 with "available":
//	                                false and a message on a host without
//	                                NVIDIA's driver
//	POST /v1/reload                 reread the config file (as SIGHUP):
//	                                ReloadReport; 422 with the file's
//	                                error (file:line) when it is refused,
//	                                501 without a Reloader
package admin

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/sygaldry/sygaldry/admin/api"
	"github.com/sygaldry/sygaldry/sessions"
)

// Sessions is what the admin API needs from the session registry.
// FromRegistry adapts a *sessions.Registry.
type Sessions interface {
	// List returns the live sessions.
	List() []sessions.Info
	// Kill ends a live session, telling its user reason; an error wrapping
	// sessions.ErrNotFound when id is not live. A connection ID ends that
	// connection.
	Kill(id, reason string) error
	// KillConn ends the whole client connection that the session or
	// connection id belongs to, and returns the connection's ID; an error
	// wrapping sessions.ErrNotFound when there is none.
	KillConn(id, reason string) (string, error)
	// History returns the last n ended sessions (all when n <= 0), oldest
	// first; an error wrapping ErrNoHistory when none is kept.
	History(n int) ([]sessions.Info, error)
}

// Containers is what the admin API needs from the container manager.
type Containers interface {
	// List returns the containers the gateway manages (label
	// sygaldry.managed=true), running or not.
	List(ctx context.Context) ([]api.ContainerInfo, error)
}

// ErrNoHistory is what Sessions.History wraps when no history is kept.
var ErrNoHistory = errors.New("no session history is kept")

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = http.ErrServerClosed

// Server is the admin API server. Fill the fields, then call Serve with a
// listener from Listen.
type Server struct {
	// Sessions is the session registry; nil: no sessions (every list empty).
	Sessions Sessions
	// Containers lists managed containers; nil: GET /v1/containers answers
	// 503.
	Containers Containers
	// GPUs reads the GPU inventory; nil: GET /v1/gpus answers 503.
	GPUs GPUs
	// Leases names each GPU's holders in GET /v1/gpus; nil: none named.
	Leases GPULeases
	// Reloader rereads the config for POST /v1/reload; nil: it answers
	// 501.
	Reloader Reloader
	// Version is reported by /v1/status; empty: the main module's version
	// from the build info ("devel" when unknown).
	Version string
	// Logger gets one line per kill and per failed request; nil:
	// slog.Default().
	Logger *slog.Logger

	once    sync.Once
	srv     *http.Server
	started time.Time
}

func (s *Server) log() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

func (s *Server) init() {
	s.once.Do(func() {
		s.started = time.Now().UTC()
		if s.Version == "" {
			s.Version = buildVersion()
		}
		s.srv = &http.Server{
			Handler:           s.handler(),
			ReadHeaderTimeout: 10 * time.Second,
			ConnContext:       withPeer,
			ErrorLog:          slog.NewLogLogger(s.log().Handler(), slog.LevelWarn),
		}
	})
}

// Serve answers admin requests on l until Shutdown or Close, then returns
// ErrServerClosed. It closes l when it returns.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	s.log().Info("admin API listening", "addr", l.Addr().String())
	return s.srv.Serve(l)
}

// Shutdown stops accepting, waits for requests in flight to finish (or ctx
// to end), and closes the listener, removing its socket file.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	return s.srv.Shutdown(ctx)
}

// Close stops at once, dropping requests in flight.
func (s *Server) Close() error {
	s.init()
	return s.srv.Close()
}

func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}
