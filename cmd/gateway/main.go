// Command sygaldry-gateway is the SSH gateway: `ssh PROJECT@host` lands the
// user in their own container of that project.
//
//	sygaldry-gateway --config /etc/sygaldry/gateway.toml
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sygaldry/sygaldry/admin"
	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/gateway"
	"github.com/sygaldry/sygaldry/sessions"
	"github.com/sygaldry/sygaldry/workspace"
)

func main() {
	os.Exit(run())
}

func run() int {
	configPath := flag.String("config", "/etc/sygaldry/gateway.toml", "configuration file")
	logLevel := flag.String("log-level", "info", "debug, info, warn or error")
	checkOnly := flag.Bool("check", false, "validate the configuration and exit")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "sygaldry-gateway: --log-level %q: want debug, info, warn or error\n", *logLevel)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

	cfg, err := config.Load(*configPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sygaldry-gateway: %v\n", err)
		return 2
	}
	if *checkOnly {
		fmt.Printf("%s: ok (%d projects, %d users)\n", *configPath, len(cfg.Projects), len(cfg.Users))
		return 0
	}
	if err := serve(cfg, log); err != nil {
		log.Error("gateway stopped", "err", err)
		return 1
	}
	return 0
}

func serve(cfg *config.Config, log *slog.Logger) error {
	if err := os.MkdirAll(cfg.Server.StateDir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	agentPath := cfg.Server.AgentPath
	if agentPath == "" {
		p, err := workspace.DefaultAgentPath()
		if err != nil {
			return err
		}
		agentPath = p
	}
	if _, err := os.Stat(agentPath); err != nil {
		return fmt.Errorf("agent binary: %w (build it with `make build`, or set server.agent_path)", err)
	}

	hist, err := sessions.OpenHistory(filepath.Join(cfg.Server.StateDir, "history.jsonl"), log)
	if err != nil {
		return err
	}
	defer hist.Close()
	registry := sessions.NewRegistry(hist)
	registry.SetIDBase(hist.MaxID())

	// The configuration in force has one holder; the gateway and the
	// backend read it, a reload (SIGHUP, sygctl reload) replaces it
	// through the reloader.
	live := config.NewLive(cfg)
	promReg := prometheus.NewRegistry()
	promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	newParts := dockerParts
	if cfg.Server.Backend == config.BackendKubernetes {
		newParts = kubeParts
	}
	be, err := newParts(cfg, live, agentPath, log)
	if err != nil {
		return err
	}
	defer be.close()
	for _, c := range be.collectors {
		promReg.MustRegister(c)
	}
	gw, err := gateway.New(gateway.Options{
		Config:     live,
		Containers: be.containers,
		Sessions:   registry,
		Logger:     log,
		Metrics:    gateway.NewMetrics(promReg, registry),
	})
	if err != nil {
		return err
	}
	reload := &reloader{live: live, gw: gw, be: be, log: log}
	l, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}

	adm := &admin.Server{
		Sessions:   admin.FromRegistry(registry),
		Containers: be.admin,
		GPUs:       be.gpus,
		Leases:     be.leases,
		Reloader:   reload,
		Logger:     log.With("component", "admin"),
	}
	al, err := admin.Listen(cfg.Server.AdminSocket)
	if err != nil {
		l.Close()
		return err
	}

	errc := make(chan error, 3)
	var metricsSrv *http.Server
	if cfg.Server.MetricsListen != "" {
		ml, err := net.Listen("tcp", cfg.Server.MetricsListen)
		if err != nil {
			l.Close()
			al.Close()
			return fmt.Errorf("metrics listen: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(promReg, promhttp.HandlerOpts{}))
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := metricsSrv.Serve(ml); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics: %w", err)
			}
		}()
		log.Info("serving metrics", "addr", ml.Addr().String())
	}

	go func() { errc <- gw.Serve(l) }()
	go func() { errc <- adm.Serve(al) }()
	log.Info("sygaldry-gateway started", "listen", l.Addr().String(), "admin", cfg.Server.AdminSocket,
		"projects", len(cfg.Projects), "users", len(cfg.Users), "agent", agentPath, "backend", cfg.Server.Backend)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	var runErr error
wait:
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				reload.Reload(context.Background()) // it logs what it did
				continue
			}
			log.Info("shutting down", "signal", sig.String())
			break wait
		case runErr = <-errc:
			log.Error("server failed", "err", runErr)
			break wait
		}
	}
	// Stop admitting, let sessions finish for a while, then close the rest.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := gw.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("gateway shutdown", "err", err)
	}
	if err := adm.Shutdown(ctx); err != nil {
		log.Warn("admin shutdown", "err", err)
	}
	if metricsSrv != nil {
		metricsSrv.Shutdown(ctx)
	}
	if errors.Is(runErr, gateway.ErrServerClosed) || errors.Is(runErr, admin.ErrServerClosed) {
		runErr = nil
	}
	return runErr
}
