package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/internal/usererr"
	"github.com/sygaldry/sygaldry/workspace"
)

// exitLaunchFailed is the exit code when the container or the session could
// not be set up, as docker run's 125: the remote command never ran.
const exitLaunchFailed = 125

const launchUsage = `usage: sygctl launch [flags] [--] [COMMAND [ARG...]]

Ensures your container for the project exists and runs (the same container
the gateway gives you over SSH), then runs COMMAND in it, or a login shell.

environment:
  SYGALDRY_PROJECT_ID    project (default zephyr)
  SYGALDRY_IMAGE         image (default: the config's, else sygaldry/zephyr:base);
                         built from the configured Dockerfile when missing
  SYGALDRY_GPU=false     attach no GPUs
  SYGALDRY_STORAGE_ROOT  host storage root (default: the config's, else ` + config.DefaultStorageRoot + `)
  SYGALDRY_CONFIG        gateway config to take [defaults] and [projects.X] from
  SYGALDRY_BUILD_ARG_<NAME>=VALUE
                         build arg NAME (e.g. BAZEL_VERSION) when a missing image is
                         built, over the config's build_args

There is no --json: what launch prints is COMMAND's own output (or the
shell's terminal), passed through unchanged, and its exit status is COMMAND's
(125 when the container or the session could not be set up).

flags:
`

// launchSpec is everything launch resolved from flags, environment and config.
type launchSpec struct {
	project config.Resolved
	user    string
	opts    workspace.Options
	args    []string
	verbose bool
}

func runLaunch(args []string, s stdio) int {
	ls, rc := parseLaunch(args, s.out, s.err)
	if rc >= 0 {
		return rc
	}
	level := slog.LevelError
	if ls.verbose {
		level = slog.LevelDebug
	}
	ls.opts.Logger = slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: level}))

	fail := func(err error) int {
		msg := usererr.Message(err)
		if msg == "" { // not one of the manager's: the caller is on the host, show it
			msg = err.Error()
		}
		fmt.Fprintf(s.err, "sygctl launch: %s\n", msg)
		if ls.verbose && msg != err.Error() {
			fmt.Fprintf(s.err, "sygctl launch: %v\n", err)
		}
		return exitLaunchFailed
	}

	m, err := workspace.NewManager(ls.opts)
	if err != nil {
		fmt.Fprintf(s.err, "sygctl launch: %v\n", err)
		return exitLaunchFailed
	}
	defer m.Close()

	// Ctrl-C while the container is being made abandons the wait; the
	// manager leaves the container in a state the next run picks up.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	inst, err := m.Ensure(ctx, ls.project, ls.user, s.err)
	interrupted := ctx.Err() != nil
	stop()
	if err != nil {
		if interrupted {
			fmt.Fprintln(s.err, "sygctl launch: interrupted")
			return 130
		}
		return fail(err)
	}
	code, err := runSession(inst.SocketPath, inst.Peer, ls.args, s)
	if err != nil {
		fmt.Fprintf(s.err, "sygctl launch: the session in container %s failed (-v shows why)\n", inst.Name)
		if ls.verbose {
			fmt.Fprintf(s.err, "sygctl launch: %v\n", err)
		}
		return exitLaunchFailed
	}
	return code
}

// launchFlags are launch's flags, declared by declareLaunchFlags for
// parseLaunch and for the command table (help, completion).
type launchFlags struct {
	config, user, stateDir, agent, workspace string
	verbose                                  bool
	labels                                   map[string]string
}

func declareLaunchFlags(fs *flag.FlagSet) *launchFlags {
	f := &launchFlags{labels: map[string]string{}}
	fs.StringVar(&f.config, "config", os.Getenv("SYGALDRY_CONFIG"), "gateway config `FILE` (default $SYGALDRY_CONFIG; none: built-in defaults)")
	fs.StringVar(&f.user, "user", "", "your user `NAME` (default $SUDO_USER, else $USER, else root)")
	fs.StringVar(&f.stateDir, "state-dir", "", "`DIR` holding the agent sockets (default: the config's state_dir, else "+config.DefaultStateDir+")")
	fs.StringVar(&f.agent, "agent", "", "sygaldry-agent binary `PATH` (default: next to sygctl)")
	fs.StringVar(&f.workspace, "workspace", "", "host `DIR` (absolute, existing) mounted at /workspace, where the shell or COMMAND starts (default: the project's workspace, if any)")
	fs.BoolVar(&f.verbose, "v", false, "print the complete errors and the container manager's log")
	fs.Func("label", "extra container `KEY=VALUE` label (repeatable; part of the spec)", func(v string) error {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return errors.New("want KEY=VALUE")
		}
		f.labels[k] = val
		return nil
	})
	return f
}

// parseLaunch resolves the launch from flags, environment and config. It
// returns code >= 0 when launch should exit at once with it: 0 after -h
// (the usage on stdout), 2 after a bad flag or value (on stderr).
func parseLaunch(args []string, stdout, stderr io.Writer) (launchSpec, int) {
	fs := flag.NewFlagSet("sygctl launch", flag.ContinueOnError)
	var msg bytes.Buffer
	fs.SetOutput(&msg)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), launchUsage)
		fs.PrintDefaults()
	}
	f := declareLaunchFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			stdout.Write(msg.Bytes())
			return launchSpec{}, 0
		}
		stderr.Write(msg.Bytes())
		return launchSpec{}, 2
	}
	bad := func(format string, a ...any) (launchSpec, int) {
		fmt.Fprintf(stderr, "sygctl launch: "+format+"\n", a...)
		return launchSpec{}, 2
	}

	var cfg *config.Config
	var err error
	if f.config != "" {
		cfg, err = config.Load(f.config)
	} else {
		cfg, err = config.Parse("built-in defaults", nil)
		if err == nil {
			cfg.Defaults.Dockerfile = defaultDockerfile()
		}
	}
	if err != nil {
		return bad("%v", err)
	}

	name := envOr("SYGALDRY_PROJECT_ID", "zephyr")
	if !config.ValidProjectName(name) {
		return bad("project %q (SYGALDRY_PROJECT_ID) is not a valid name: lowercase letters, digits, - and _", name)
	}
	p, ok := cfg.Project(name)
	if !ok {
		// A project the config does not list gets the defaults, as the
		// seed's launcher did for any SYGALDRY_PROJECT_ID.
		p = config.Resolved{Name: name, Settings: cfg.Defaults}
		p.Env = maps.Clone(cfg.Defaults.Env)
		p.Mounts = slices.Clone(cfg.Defaults.Mounts)
	}
	p.BuildArgs = maps.Clone(p.BuildArgs)
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if name, ok := strings.CutPrefix(k, "SYGALDRY_BUILD_ARG_"); ok && name != "" {
			if p.BuildArgs == nil {
				p.BuildArgs = map[string]string{}
			}
			p.BuildArgs[name] = v
		}
	}
	if img := os.Getenv("SYGALDRY_IMAGE"); img != "" && img != p.Image {
		// Another image than configured: built from the configured
		// Dockerfile when it is missing, so a variant (other build args)
		// gets its own tag.
		p.Image = img
	}

	if ws := f.workspace; ws != "" {
		if !filepath.IsAbs(ws) {
			return bad("--workspace %q: want an absolute path", ws)
		}
		if fi, err := os.Stat(ws); err != nil || !fi.IsDir() {
			return bad("--workspace %s: not an existing directory", ws)
		}
		p.Workspace = filepath.Clean(ws)
	}

	u := f.user
	if u == "" {
		u = firstNonEmpty(os.Getenv("SUDO_USER"), os.Getenv("USER"), "root")
	}
	if !config.ValidUserName(u) {
		return bad("user name %q is not valid (lowercase letters, digits and _): pass --user", u)
	}

	disableGPUs := false
	if v := os.Getenv("SYGALDRY_GPU"); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return bad("SYGALDRY_GPU=%q: want true or false", v)
		}
		disableGPUs = !on
	}

	agentPath := f.agent
	if agentPath == "" {
		p, err := workspace.DefaultAgentPath()
		if err != nil {
			return bad("%v; pass --agent", err)
		}
		agentPath = p
	}
	if agentPath, err = filepath.Abs(agentPath); err != nil {
		return bad("%v", err)
	}
	if fi, err := os.Stat(agentPath); err != nil || !fi.Mode().IsRegular() {
		return bad("no sygaldry-agent binary at %s: run `make build`, or pass --agent PATH", agentPath)
	}

	opts := workspace.OptionsFromConfig(cfg)
	opts.StorageRoot = envOr("SYGALDRY_STORAGE_ROOT", cfg.Docker.StorageRoot)
	if f.stateDir != "" {
		opts.StateDir = f.stateDir
	}
	for _, d := range []*string{&opts.StorageRoot, &opts.StateDir} {
		if *d, err = filepath.Abs(*d); err != nil {
			return bad("%v", err)
		}
	}
	opts.AgentPath = agentPath
	opts.IdleStop = 0 // nobody would be left to stop it; the gateway's timer does
	opts.DisableGPUs = disableGPUs
	opts.KeepRunning = true
	opts.Labels = f.labels
	return launchSpec{project: p, user: u, opts: opts, args: fs.Args(), verbose: f.verbose}, -1
}

// defaultDockerfile is the seed's dev container Dockerfile in the checkout
// sygctl runs from (bin/sygctl → ../container/), else in the working
// directory; "" when neither has one.
func defaultDockerfile() string {
	var dirs []string
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Join(filepath.Dir(exe), ".."))
	}
	if wd, err := os.Getwd(); err == nil {
		dirs = append(dirs, wd)
	}
	for _, d := range dirs {
		p := filepath.Join(d, "container", "dev_container.dockerfile")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			abs, err := filepath.Abs(p)
			if err == nil {
				return abs
			}
		}
	}
	return ""
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
