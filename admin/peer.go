package admin

import (
	"context"
	"net"
	"os"
)

// The socket's mode (0600, owned by the gateway's user, root in production)
// is the access control. The peer check is defence in depth, in the manner of
// Tailscale's safesocket/localapi: should someone loosen the socket's mode or
// its directory's, a request from another user is still refused.

type peerKey struct{}

// peer is who is on the other end of an admin connection.
type peer struct {
	uid   int   // -1: unknown
	known bool  // the platform told us (SO_PEERCRED)
	err   error // why it could not tell
}

// withPeer is http.Server.ConnContext: it records the connection's peer.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, peerKey{}, peerOf(c))
}

func peerFrom(ctx context.Context) (peer, bool) {
	p, ok := ctx.Value(peerKey{}).(peer)
	return p, ok
}

// allowed reports whether p may use the admin API: root, or the gateway's
// own user (a gateway run unprivileged for development, and tests).
func (p peer) allowed() bool {
	if !p.known {
		// No peer credentials on this platform: the socket's 0600 mode is
		// all there is, and it already let this caller in.
		return p.err == nil
	}
	return p.uid == 0 || p.uid == os.Geteuid()
}
