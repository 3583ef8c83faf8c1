package main

import (
	"context"
	"fmt"
	"log/slog"

	"k8s.io/client-go/kubernetes"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/gateway"
	"github.com/sygaldry/sygaldry/internal/bind"
	"github.com/sygaldry/sygaldry/kube"
)

// kubeParts is the Kubernetes backend: one pod per (project, user) in
// kubernetes.namespace, GPUs placed by the scheduler.
func kubeParts(cfg *config.Config, live *config.Live, agentPath string, log *slog.Logger) (parts, error) {
	rc, err := kube.RESTConfig(cfg.Kubernetes.Kubeconfig)
	if err != nil {
		return parts{}, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return parts{}, fmt.Errorf("kubernetes client: %w", err)
	}
	key, err := gateway.LoadLinkKey(cfg.Server.StateDir)
	if err != nil {
		return parts{}, fmt.Errorf("link key: %w", err)
	}
	mgr, err := kube.New(kube.Options{
		Client: cs, REST: rc, Config: live, AgentPath: agentPath, LinkKey: key,
		Logger: log.With("component", "pods"),
	})
	if err != nil {
		return parts{}, err
	}
	ctx := context.Background()
	if n, err := mgr.RestoreIdle(ctx); err != nil {
		log.Warn("idle timers not armed for the running pods; each is armed at its next use", "err", err)
	} else if n > 0 {
		log.Info("idle timers armed for the pods already running", "pods", n, "idle_stop", cfg.Server.IdleStop.D)
	}
	return parts{
		containers: bind.KubeContainers(mgr),
		admin:      bind.KubeAdminContainers(mgr),
		gpus:       bind.KubeGPUs(mgr),
		leases:     bind.KubeGPULeases(mgr),
		check:      func(*config.Config) error { return nil },
		applied: func(_ context.Context, next *config.Config) {
			mgr.SetIdleStop(next.Server.IdleStop.D)
		},
		close: func() { mgr.Close() },
	}, nil
}
