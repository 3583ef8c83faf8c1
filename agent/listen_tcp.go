package agent

import (
	"fmt"
	"net"
)

// ListenTCP listens for links over the network on addr (host:port, an empty
// host: every interface, port 0: any free port), where the gateway cannot
// reach a socket file: a Kubernetes pod, dialled through the API server's
// port-forward or at the pod's IP. Serve requires AuthorizedKeys on it
// (ErrNoClientAuth). Descriptors cannot cross a network, so there is no
// descriptor socket beside it: sessions go through the link.
func ListenTCP(addr string) (*net.TCPListener, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("listen on tcp:%s: want HOST:PORT: %w", addr, err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on tcp:%s: %w", addr, err)
	}
	return l.(*net.TCPListener), nil
}
