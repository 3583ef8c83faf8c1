package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/sygaldry/sygaldry/admin/api"
	"github.com/sygaldry/sygaldry/sessions"
)

// maxBody bounds a request body (a kill reason).
const maxBody = 64 << 10

// DefaultHistory is how many ended sessions /v1/sessions/history returns
// when n is not given.
const DefaultHistory = 50

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.serveStatus)
	mux.HandleFunc("GET /v1/sessions", s.serveSessions)
	mux.HandleFunc("GET /v1/sessions/history", s.serveHistory)
	mux.HandleFunc("POST /v1/sessions/{id}/kill", s.serveKill)
	mux.HandleFunc("GET /v1/containers", s.serveContainers)
	mux.HandleFunc("GET /v1/gpus", s.serveGPUs)
	mux.HandleFunc("POST /v1/reload", s.serveReload)
	return s.guard(mux)
}

// guard refuses callers that are not allowed, and turns the mux's own plain
// text 404 and 405 answers into JSON errors.
func (s *Server) guard(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := peerFrom(r.Context())
		if !ok || !p.allowed() {
			s.log().Warn("admin request refused", "method", r.Method, "path", r.URL.Path, "peer_uid", p.uid, "err", p.err)
			writeError(w, http.StatusForbidden, "permission denied: the admin API is for root only")
			return
		}
		if _, pattern := mux.Handler(r); pattern == "" {
			mux.ServeHTTP(&jsonErrorWriter{ResponseWriter: w, r: r}, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	n := 0
	for _, in := range s.live() {
		if in.Kind != sessions.KindConnection {
			n++
		}
	}
	writeJSON(w, http.StatusOK, api.Status{
		Version:      s.Version,
		Started:      s.started,
		LiveSessions: n,
	})
}

func (s *Server) live() []sessions.Info {
	if s.Sessions == nil {
		return []sessions.Info{}
	}
	l := s.Sessions.List()
	if l == nil {
		l = []sessions.Info{}
	}
	return l
}

func (s *Server) serveSessions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.live())
}

func (s *Server) serveHistory(w http.ResponseWriter, r *http.Request) {
	n := DefaultHistory
	if v := r.URL.Query().Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("n must be a whole number >= 0 (0: all), not %q", v))
			return
		}
	}
	if s.Sessions == nil {
		writeError(w, http.StatusServiceUnavailable, ErrNoHistory.Error())
		return
	}
	h, err := s.Sessions.History(n)
	switch {
	case errors.Is(err, ErrNoHistory):
		writeError(w, http.StatusServiceUnavailable, ErrNoHistory.Error())
		return
	case err != nil:
		s.log().Error("read session history", "err", err)
		writeError(w, http.StatusInternalServerError, "cannot read the session history (see the gateway's log)")
		return
	}
	if h == nil {
		h = []sessions.Info{}
	}
	writeJSON(w, http.StatusOK, h)
}

func (s *Server) serveKill(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req api.KillRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "request body too large")
		return
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			writeError(w, http.StatusBadRequest, "body must be JSON like {\"reason\": \"...\"}")
			return
		}
	}
	if s.Sessions == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no live session %s", id))
		return
	}
	resp := api.KillResponse{ID: id}
	if req.Connection {
		resp.Conn, err = s.Sessions.KillConn(id, req.Reason)
	} else {
		err = s.Sessions.Kill(id, req.Reason)
	}
	if err != nil {
		if errors.Is(err, sessions.ErrNotFound) {
			what := "session"
			if req.Connection {
				what = "connection for session"
			}
			writeError(w, http.StatusNotFound, fmt.Sprintf("no live %s %s", what, id))
			return
		}
		s.log().Error("kill session", "id", id, "connection", req.Connection, "err", err)
		writeError(w, http.StatusInternalServerError, "cannot kill the session (see the gateway's log)")
		return
	}
	p, _ := peerFrom(r.Context())
	if req.Connection || sessions.IsConnID(id) {
		s.log().Info("connection killed by admin", "id", id, "conn", resp.Conn, "reason", req.Reason, "peer_uid", p.uid)
	} else {
		s.log().Info("session killed by admin", "id", id, "reason", req.Reason, "peer_uid", p.uid)
	}
	writeJSON(w, http.StatusOK, resp)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, api.Error{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(api.Error{Error: "cannot encode the answer"})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// jsonErrorWriter rewrites the mux's plain-text error (404, 405) as JSON,
// keeping its status code and headers (Allow).
type jsonErrorWriter struct {
	http.ResponseWriter
	r     *http.Request
	wrote bool
}

func (w *jsonErrorWriter) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	w.Header().Del("Content-Length")
	msg := http.StatusText(code)
	switch code {
	case http.StatusNotFound:
		msg = "no such endpoint: " + w.r.URL.Path
	case http.StatusMethodNotAllowed:
		msg = fmt.Sprintf("method %s not allowed on %s", w.r.Method, w.r.URL.Path)
	}
	writeJSON(w.ResponseWriter, code, api.Error{Error: msg})
}

func (w *jsonErrorWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return len(b), nil // the mux's text is replaced by the JSON above
}
