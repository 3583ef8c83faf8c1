// Package link connects the gateway (or sygctl launch) to the agent inside a
// container: an SSH client connection over the agent's unix socket.
//
// The socket lives in a host directory bind-mounted into the container, so
// bulk data never passes through dockerd. The socket's file permissions are
// the trust boundary (root on the host, the container user inside); the user
// was authenticated by the gateway, so the inner hop uses no client auth and
// does not pin the agent's ephemeral host key.
package link

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// SocketName is the agent's socket inside the link directory.
const SocketName = "agent.sock"

// ErrNotReady means the agent socket does not accept connections yet.
var ErrNotReady = errors.New("agent not ready")

// Dial opens one SSH connection to the agent listening on socketPath.
// The handshake is bounded by ctx.
func Dial(ctx context.Context, socketPath string) (*gossh.Client, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotReady, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	cfg := &gossh.ClientConfig{
		User: "sygaldry",
		// The agent's host key is ephemeral; the unix socket's permissions are
		// what authenticates it (see the package comment).
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), //nolint:gosec
		ClientVersion:   "SSH-2.0-sygaldry-link",
		Timeout:         10 * time.Second,
	}
	sc, chans, reqs, err := gossh.NewClientConn(c, "agent", cfg)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("link handshake: %w", err)
	}
	_ = c.SetDeadline(time.Time{})
	return gossh.NewClient(sc, chans, reqs), nil
}

// WaitReady dials until the agent answers or ctx ends; it returns the
// first working client so the caller need not dial twice.
func WaitReady(ctx context.Context, socketPath string) (*gossh.Client, error) {
	delay := 20 * time.Millisecond
	for {
		if _, err := os.Stat(socketPath); err == nil {
			hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			cl, err := Dial(hctx, socketPath)
			cancel()
			if err == nil {
				return cl, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %s: %v", ErrNotReady, socketPath, context.Cause(ctx))
		case <-time.After(delay):
		}
		if delay < 250*time.Millisecond {
			delay *= 2
		}
	}
}
