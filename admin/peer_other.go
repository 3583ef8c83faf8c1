//go:build !linux

package admin

import (
	"fmt"
	"net"
)

// peerOf cannot read peer credentials here; the socket's mode is the only
// access control.
func peerOf(c net.Conn) peer {
	if _, ok := c.(*net.UnixConn); !ok {
		return peer{uid: -1, err: fmt.Errorf("not a unix socket connection (%T)", c)}
	}
	return peer{uid: -1}
}
