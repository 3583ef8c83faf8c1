// Command sygaldry-agent is the SSH server inside every Sygaldry container
// (package agent). It is the container's entrypoint:
//
//	sygaldry-agent serve --listen /.sygaldry/run/agent.sock --host-key /.sygaldry/agent_key
//
// Where the gateway reaches it over the network (a Kubernetes pod) it listens
// on TCP and admits only the gateway's link client key:
//
//	sygaldry-agent serve --listen tcp::2222 --host-key FILE --authorized-key FILE
//
// Under the name sygaldry it is the user's command in the container:
//
//	sygaldry ports [--json]
//
// As PID 1 it first becomes init (reaps zombies, forwards SIGTERM/SIGINT)
// and re-executes itself to serve.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/agent"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

const usage = `usage:
  sygaldry-agent serve [--listen PATH|tcp:HOST:PORT] [--host-key FILE] [--authorized-key FILE]
                       [--log-level LEVEL] [--shutdown-timeout DURATION]
      --listen tcp:HOST:PORT needs the gateway's link client key: --authorized-key FILE
      (authorized_keys format) or $` + authorizedKeyEnv + ` (one authorized_keys line)
  sygaldry-agent sftp-server   (started by the agent itself: the sftp subsystem on stdin/stdout)
  sygaldry-agent version
`

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

func run(argv []string, stdout, stderr io.Writer) int {
	// The same binary is the user's `sygaldry` command in the container
	// (mounted as /usr/local/bin/sygaldry): `sygaldry ports`.
	if len(argv) > 0 && filepath.Base(argv[0]) == agent.CommandName {
		return agent.Command(argv[1:], stdout, stderr, os.Getenv)
	}
	if len(argv) < 2 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch argv[1] {
	case "serve":
		return serve(argv, stderr, os.Getenv)
	case "sftp-server":
		// The agent starts this for the sftp subsystem and hands its pipes
		// to the gateway (internal/fdpass); it serves the working directory.
		if err := agent.ServeSFTP(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintf(stderr, "sygaldry-agent sftp-server: %v\n", err)
			return 1
		}
		return 0
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "sygaldry-agent %s (%s)\n", version, runtime.Version())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "sygaldry-agent: unknown command %q\n%s", argv[1], usage)
		return 2
	}
}

func serve(argv []string, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "/.sygaldry/run/agent.sock", "unix socket the gateway connects to (created 0600), or tcp:HOST:PORT")
	hostKey := fs.String("host-key", "", "private key that proves this agent to the gateway (the gateway pins its public half); empty: an ephemeral key")
	authKey := fs.String("authorized-key", "", "authorized_keys file of the gateway's link client key(s); required with tcp:, overrides $"+authorizedKeyEnv)
	level := fs.String("log-level", "info", "debug, info, warn or error")
	grace := fs.Duration("shutdown-timeout", 5*time.Second, "on SIGTERM, how long sessions may take to end before they are killed")
	if err := fs.Parse(argv[2:]); err != nil {
		return 2
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "sygaldry-agent: --log-level: %v\n", err)
		return 2
	}
	tcpAddr, isTCP := strings.CutPrefix(*listen, tcpPrefix)
	if isTCP && *authKey == "" && getenv(authorizedKeyEnv) == "" {
		// A network port proves nothing about who connects (unlike the
		// socket's file mode): never serve one without client auth.
		fmt.Fprintf(stderr, "sygaldry-agent: --listen %s needs the gateway's link client key: --authorized-key FILE or $%s\n", *listen, authorizedKeyEnv)
		return 2
	}
	if isTCP && *hostKey == "" {
		// An ephemeral key is one no gateway can pin: it would have to
		// trust whoever answers on the port.
		fmt.Fprintf(stderr, "sygaldry-agent: --listen %s needs the host key the gateway pins: --host-key FILE\n", *listen)
		return 2
	}
	// stderr is what `docker logs` shows.
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))

	if agent.ShouldRunInit() {
		return agent.RunInit(argv, log)
	}

	var signer gossh.Signer
	if *hostKey != "" {
		// Read before listening: an agent that cannot prove itself must not
		// accept the gateway's connections.
		pem, err := os.ReadFile(*hostKey)
		if err == nil {
			signer, err = gossh.ParsePrivateKey(pem)
		}
		if err != nil {
			log.Error("agent cannot load its host key", "path", *hostKey, "err", err)
			return 1
		}
	}

	// Loaded before listening, like the host key: an agent that could not
	// tell the gateway from anyone else must not accept connections.
	authorized, src, err := authorizedKeys(*authKey, getenv)
	if err != nil {
		log.Error("agent cannot load the authorized link client keys", "from", src, "err", err)
		return 1
	}
	if authorized != nil {
		log.Info("agent requires a link client key", "from", src, "keys", len(authorized))
	}

	var (
		ln   net.Listener
		fdln *net.UnixListener
	)
	if isTCP {
		ln, err = agent.ListenTCP(tcpAddr)
		if err != nil {
			log.Error("agent cannot listen", "err", err)
			return 1
		}
		// Descriptors cannot cross a network: no fd.sock, sessions go
		// through the link.
	} else {
		ln, err = agent.ListenUnix(*listen)
		if err != nil {
			log.Error("agent cannot listen", "err", err)
			return 1
		}
		// The descriptor socket (internal/fdpass) lives next to the link socket.
		// Without it the gateway falls back to carrying the bytes on the link.
		fdln, err = agent.ListenUnixPacket(filepath.Join(filepath.Dir(*listen), "fd.sock"))
		if err != nil {
			log.Warn("agent cannot listen for descriptor connections; sessions go through the link", "err", err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		log.Warn("agent cannot find its own binary; sftp runs in the agent, over the link", "err", err)
		self = ""
	}
	srv := &agent.Server{Logger: log, HostKey: signer, AuthorizedKeys: authorized, Self: self}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if fdln != nil {
		go func() {
			if err := srv.ServeFDs(fdln); err != nil && !errors.Is(err, agent.ErrServerClosed) {
				log.Warn("descriptor socket stopped; new sessions go through the link", "err", err)
			}
		}()
	}

	select {
	case err := <-errc:
		log.Error("agent stopped", "err", err)
		srv.Close()
		return 1
	case <-ctx.Done():
	}
	log.Info("agent shutting down", "timeout", *grace)
	sctx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("agent shutdown incomplete", "err", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, agent.ErrServerClosed) {
		log.Warn("agent serve", "err", err)
	}
	return 0
}

// tcpPrefix marks a --listen value that is a TCP address, not a socket path.
const tcpPrefix = "tcp:"

// authorizedKeyEnv carries one authorized_keys line, so a pod spec can pass
// the gateway's link client key without a file. The SYGALDRY_AGENT_ prefix
// keeps it out of the environment of user processes.
const authorizedKeyEnv = "SYGALDRY_AGENT_AUTHORIZED_KEY"

// authorizedKeys reads the link client keys from path, else from
// $SYGALDRY_AGENT_AUTHORIZED_KEY, and says which it used. Neither: nil keys,
// no error (the unix socket's mode is the trust boundary).
func authorizedKeys(path string, getenv func(string) string) ([]gossh.PublicKey, string, error) {
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, path, err
		}
		keys, err := agent.ParseAuthorizedKeys(data)
		if err != nil {
			return nil, path, fmt.Errorf("%s: %w", path, err)
		}
		return keys, path, nil
	}
	line := getenv(authorizedKeyEnv)
	if line == "" {
		return nil, "", nil
	}
	src := "$" + authorizedKeyEnv
	if strings.ContainsAny(strings.TrimSpace(line), "\n") {
		return nil, src, fmt.Errorf("%s: want one authorized_keys line", src)
	}
	keys, err := agent.ParseAuthorizedKeys([]byte(line))
	if err != nil {
		return nil, src, fmt.Errorf("%s: %w", src, err)
	}
	return keys, src, nil
}
