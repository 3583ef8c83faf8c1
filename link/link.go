// Package link connects the gateway (or sygctl launch) to the agent inside a
// container: an SSH client connection over the agent's unix socket.
//
// The socket lives in a host directory bind-mounted into the container, so
// bulk data never passes through dockerd. That directory is writable by the
// container user, so everything in it is hostile: the socket may have been
// swapped for a symlink to another container's socket, a hard link, a plain
// file, or a socket some other process bound. Dial therefore proves the peer
// before a single byte of a user's session reaches it (see Peer):
//
//   - the socket is opened without following a symlink (O_PATH|O_NOFOLLOW),
//     must be a socket with one link, and is connected through that very
//     descriptor, so it cannot be swapped between the check and the connect;
//   - the listening process (SO_PEERCRED) must be in the pid namespace and
//     the cgroup of the container the engine reported;
//   - the agent must present the host key the gateway generated for that
//     container, which only that container can read (see workspace/).
//
// The user was authenticated by the gateway, so the inner hop uses no client
// auth.
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

// ErrUntrusted means the socket or the process behind it is not the agent of
// the container the caller meant. Nothing was sent to it; waiting does not
// help.
var ErrUntrusted = errors.New("agent socket failed verification")

// Peer is what proves the agent of one container: what only that container
// can show.
type Peer struct {
	// Container names the container, for messages.
	Container string
	// PidNS is the container's pid namespace; the process listening on the
	// socket must be in it. Required.
	PidNS NS
	// ContainerID is the engine's ID of the container; the listening
	// process's cgroup must be the container's (a namespace inode can be
	// reused by a later container, a 64-digit ID is not). Empty: not
	// checked (an agent that runs in no container, as in tests).
	ContainerID string
	// HostKey is the agent host key pinned for the container. Nil only for a
	// container made before keys were pinned (then the pid namespace alone
	// proves the peer).
	HostKey gossh.PublicKey
}

// Dial opens one SSH connection to the agent listening on socketPath, after
// proving it is want's agent. The handshake is bounded by ctx.
func Dial(ctx context.Context, socketPath string, want Peer) (*gossh.Client, error) {
	if want.PidNS.zero() {
		return nil, fmt.Errorf("%w: no pid namespace to check the peer of %s against", ErrUntrusted, socketPath)
	}
	c, err := dialVerified(ctx, "unix", socketPath, want)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	cfg := &gossh.ClientConfig{
		User:            "sygaldry",
		HostKeyCallback: pinnedKey(want),
		ClientVersion:   "SSH-2.0-sygaldry-link",
		Timeout:         10 * time.Second,
	}
	if want.HostKey != nil {
		cfg.HostKeyAlgorithms = []string{want.HostKey.Type()}
	}
	sc, chans, reqs, err := gossh.NewClientConn(c, "agent", cfg)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("link handshake: %w", err)
	}
	_ = c.SetDeadline(time.Time{})
	return gossh.NewClient(sc, chans, reqs), nil
}

// pinnedKey accepts only the container's agent key.
func pinnedKey(want Peer) gossh.HostKeyCallback {
	if want.HostKey == nil {
		// A container made before keys were pinned; the pid namespace
		// check above proved the peer.
		return gossh.InsecureIgnoreHostKey() //nolint:gosec
	}
	wantFP := gossh.FingerprintSHA256(want.HostKey)
	return func(_ string, _ net.Addr, key gossh.PublicKey) error {
		if got := gossh.FingerprintSHA256(key); got != wantFP {
			return fmt.Errorf("%w: the agent of %s presented host key %s, want %s", ErrUntrusted, want.Container, got, wantFP)
		}
		return nil
	}
}

// WaitReady dials until the agent answers or ctx ends; it returns the
// first working client so the caller need not dial twice. A socket that
// fails verification ends the wait at once.
func WaitReady(ctx context.Context, socketPath string, want Peer) (*gossh.Client, error) {
	delay := 20 * time.Millisecond
	for {
		if _, err := os.Lstat(socketPath); err == nil {
			hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			cl, err := Dial(hctx, socketPath, want)
			cancel()
			if err == nil {
				return cl, nil
			}
			if errors.Is(err, ErrUntrusted) {
				return nil, err
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
