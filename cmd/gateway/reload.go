package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/sygaldry/sygaldry/admin/api"
	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/gateway"
)

// reloader is a reload, from SIGHUP or `sygctl reload` (admin.Reloader):
// the file is read again into the one holder of the config in force
// (config.Live, which decides per key what applies live and keeps the
// restart keys' running values), then each part that copied something at
// start takes the new values: the gateway re-checks its connections, the
// container manager its idle timers, limits and GPU cap.
type reloader struct {
	live *config.Live
	gw   *gateway.Server
	be   parts
	log  *slog.Logger

	mu sync.Mutex // one reload at a time, end to end
}

// Reload implements admin.Reloader. A refused file (the error names
// file:line) keeps the running config, like `nginx -s reload`.
func (r *reloader) Reload(ctx context.Context) (api.ReloadReport, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	changes, err := r.live.Reload(r.be.check)
	if err != nil {
		r.log.Error("config reload refused; keeping the running config", "err", err)
		return api.ReloadReport{}, err
	}
	next := r.live.Load()
	rep := api.ReloadReport{Applied: []api.ReloadChange{}, NeedsRestart: []api.ReloadChange{}}
	for _, c := range changes {
		rc := api.ReloadChange{Key: c.Key, Running: c.Running, File: c.File}
		if c.Restart {
			rep.NeedsRestart = append(rep.NeedsRestart, rc)
			r.log.Warn("config change needs a restart to take effect", "key", c.Key, "running", c.Running, "file", c.File)
			continue
		}
		rep.Applied = append(rep.Applied, rc)
		r.log.Info("config change applied", "key", c.Key, "was", c.Running, "now", c.File)
	}
	rep.ConnectionsEnded = r.gw.Recheck()
	lctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	r.be.applied(lctx, next)
	r.log.Info("configuration reloaded", "applied", len(rep.Applied), "needs_restart", len(rep.NeedsRestart),
		"connections_ended", rep.ConnectionsEnded, "projects", len(next.Projects), "users", len(next.Users))
	return rep, nil
}
