package main

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sygaldry/sygaldry/admin"
	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/gateway"
	"github.com/sygaldry/sygaldry/gpu"
	"github.com/sygaldry/sygaldry/internal/bind"
	"github.com/sygaldry/sygaldry/workspace"
)

// parts is what a backend (server.backend) gives the gateway, the admin API,
// the metrics and the reloader.
type parts struct {
	containers gateway.Containers
	admin      admin.Containers
	gpus       admin.GPUs
	leases     admin.GPULeases
	collectors []prometheus.Collector
	// check refuses a reloaded config the backend cannot run (before it is
	// put in force); applied takes a config put in force.
	check   func(*config.Config) error
	applied func(ctx context.Context, next *config.Config)
	close   func()
}

// dockerParts is the Docker backend: one container per (project, user) on
// this host's engine, GPUs leased from this host's NVML inventory.
func dockerParts(cfg *config.Config, live *config.Live, agentPath string, log *slog.Logger) (be parts, err error) {
	var closers []func()
	be.close = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	defer func() {
		if err != nil {
			be.close()
		}
	}()
	// NVML: Init now, Shutdown at exit, after the health watcher and the
	// admin API and the container manager (the last readers) have stopped.
	gpus := openGPUs(log.With("component", "gpus"))
	closers = append(closers, func() { gpus.Close() })
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		if gpus.Err() != nil {
			return
		}
		if err := gpus.Watch(watchCtx); err != nil {
			log.Warn("GPU health not watched", "err", err)
		}
	}()
	closers = append(closers, func() { stopWatch(); <-watched })

	opts := workspace.OptionsFromConfig(cfg)
	opts.Projects = func(name string) (config.Resolved, bool) { return live.Load().Project(name) }
	opts.AgentPath = agentPath
	opts.Logger = log.With("component", "containers")
	// Containers lease their GPUs from the inventory; on a host without
	// GPUs a project that asks for some is refused with a clear line.
	opts.GPUs = workspace.NVMLInventory(gpus)
	if err := checkHostGPUs(cfg, opts.GPUs); err != nil {
		return be, err
	}
	mgr, err := workspace.NewManager(opts)
	if err != nil {
		return be, err
	}
	closers = append(closers, func() { mgr.Close() })
	if err := mgr.RestoreLeases(context.Background()); err != nil {
		log.Warn("GPU leases not read back from the running containers; they are at the first login that needs GPUs", "err", err)
	}
	// Containers started while the gateway runs by someone else (sygctl
	// launch) get an idle timer too; stopped before mgr.Close.
	startsCtx, stopStarts := context.WithCancel(context.Background())
	starts := make(chan struct{})
	go func() { defer close(starts); mgr.WatchStarts(startsCtx) }()
	closers = append(closers, func() { stopStarts(); <-starts })
	if n, err := mgr.RestoreIdle(context.Background()); err != nil {
		log.Warn("idle timers not armed for the running containers; each is armed at its next use", "err", err)
	} else if n > 0 {
		log.Info("idle timers armed for the containers already running", "containers", n, "idle_stop", cfg.Server.IdleStop.D)
	}

	be.containers = bind.Containers(mgr)
	be.admin = bind.AdminContainers(mgr)
	be.gpus = adminGPUs{inv: gpus, list: mgr.List, log: log.With("component", "admin")}
	be.leases = bind.AdminGPULeases(mgr)
	be.collectors = []prometheus.Collector{gpu.NewCollector(gpus).WithLeases(leaseHolders(mgr))}
	be.check = func(c *config.Config) error { return checkHostGPUs(c, opts.GPUs) }
	be.applied = func(ctx context.Context, next *config.Config) {
		mgr.SetIdleStop(next.Server.IdleStop.D)
		// The limits of the running containers: the engine's update call,
		// nobody is disconnected. A failure is logged: those containers
		// keep their old limits.
		if err := mgr.ApplyLimits(ctx, next); err != nil {
			log.Error("config reload: container limits not all applied", "err", err)
		}
	}
	return be, nil
}
