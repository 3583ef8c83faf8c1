package admin

import (
	"context"
	"net/http"
	"time"

	"github.com/sygaldry/sygaldry/admin/api"
)

// Reloader rereads the gateway's configuration file and applies it, as
// SIGHUP does.
type Reloader interface {
	// Reload applies what it can of the file now and reports, key by key,
	// what it applied and what needs a restart. An error means the file
	// was refused (its text names file:line) and the running config stays
	// in force.
	Reload(ctx context.Context) (api.ReloadReport, error)
}

// reloadTimeout bounds one reload: parsing the file, and ending the
// connections the new config no longer admits.
const reloadTimeout = time.Minute

func (s *Server) serveReload(w http.ResponseWriter, r *http.Request) {
	if s.Reloader == nil {
		writeError(w, http.StatusNotImplemented, "this gateway cannot reload its configuration through the admin API; send it SIGHUP (systemctl reload sygaldry-gateway)")
		return
	}
	// Not the request's context: an admin's Ctrl-C must not leave a
	// reload half applied.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), reloadTimeout)
	defer cancel()
	p, _ := peerFrom(r.Context())
	rep, err := s.Reloader.Reload(ctx)
	if err != nil {
		s.log().Warn("configuration reload refused", "err", err, "peer_uid", p.uid)
		// The text names file:line and is for the admin who asked.
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	if rep.Applied == nil {
		rep.Applied = []api.ReloadChange{}
	}
	if rep.NeedsRestart == nil {
		rep.NeedsRestart = []api.ReloadChange{}
	}
	s.log().Info("configuration reloaded by admin", "applied", len(rep.Applied), "needs_restart", len(rep.NeedsRestart),
		"connections_ended", rep.ConnectionsEnded, "peer_uid", p.uid)
	writeJSON(w, http.StatusOK, rep)
}
