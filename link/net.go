package link

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// Over the network (a Kubernetes pod reached through a port-forward or at its
// IP) nothing about the connection proves the peer: there is no socket file
// to check and no peer credentials. So both ends prove a key: the agent its
// pinned host key, and the gateway a link client key the agent was given
// (sygaldry-agent serve --authorized-key).

// DialConn makes an SSH client connection to an agent over c, already
// connected by the caller (a port-forward stream, a TCP dial). The agent
// must present exactly hostKey, else the error wraps ErrUntrusted; the
// gateway authenticates with client. name names the agent in messages. The
// handshake is bounded by ctx. On any failure c is closed.
func DialConn(ctx context.Context, c net.Conn, hostKey gossh.PublicKey, client gossh.Signer, name string) (*gossh.Client, error) {
	if hostKey == nil {
		// Never accept any key: without a pin anyone who can answer on
		// the address gets the user's session.
		c.Close()
		return nil, fmt.Errorf("%w: no host key pinned for the agent of %s", ErrUntrusted, name)
	}
	if client == nil {
		c.Close()
		return nil, fmt.Errorf("link to %s: no client key", name)
	}
	// When ctx ends (its deadline, or a cancellation) a deadline in the past
	// cuts the handshake off, so a peer that accepts and never speaks
	// cannot hold the caller.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	cfg := &gossh.ClientConfig{
		User:              "sygaldry",
		Auth:              []gossh.AuthMethod{gossh.PublicKeys(client)},
		HostKeyCallback:   pinnedKey(Peer{Container: name, HostKey: hostKey}),
		HostKeyAlgorithms: hostKeyAlgorithms(hostKey),
		ClientVersion:     "SSH-2.0-sygaldry-link",
	}
	sc, chans, reqs, err := gossh.NewClientConn(c, name, cfg)
	if !stop() && err == nil {
		// ctx ended as the handshake finished: the deadline may already
		// be in the past, so the connection is not usable.
		sc.Close()
		return nil, fmt.Errorf("link handshake with %s: %w", name, context.Cause(ctx))
	}
	if err != nil {
		c.Close()
		if ne, ok := errors.AsType[*gossh.AlgorithmNegotiationError](err); ok && ne.What == "host key" {
			// The agent has no key of the pinned type at all: a
			// different key, as surely as a mismatched one.
			err = fmt.Errorf("%w: the agent of %s offers host key types %q, want %s: %w",
				ErrUntrusted, name, ne.RequestedAlgorithms, hostKey.Type(), err)
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", context.Cause(ctx), err)
		}
		return nil, fmt.Errorf("link handshake with %s: %w", name, err)
	}
	// stop won: no deadline was ever set, the link has none.
	return gossh.NewClient(sc, chans, reqs), nil
}

// hostKeyAlgorithms offers only the pinned key's type, so the agent cannot
// choose to show another of its keys. An RSA key signs with SHA-2 (RFC 8332);
// its type name, ssh-rsa, is also the name of the SHA-1 signature.
func hostKeyAlgorithms(k gossh.PublicKey) []string {
	if k.Type() == gossh.KeyAlgoRSA {
		return []string{gossh.KeyAlgoRSASHA512, gossh.KeyAlgoRSASHA256}
	}
	return []string{k.Type()}
}
