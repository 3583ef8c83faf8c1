package gateway

import (
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/internal/sshmsg"
	"github.com/sygaldry/sygaldry/link"
)

// A container made anew under the same name (another pod UID, container
// ID or pid namespace) never shares its predecessor's link.
func TestLinkKeyTellsInstancesApart(t *testing.T) {
	base := Target{Name: "sygaldry-zephyr-alice", SocketPath: "/run/x/agent.sock", Instance: "uid-1",
		Peer: link.Peer{ContainerID: "c1", PidNS: link.NS{Dev: 4, Ino: 100}}}
	for name, change := range map[string]func(*Target){
		"name":         func(t *Target) { t.Name = "sygaldry-zephyr-bob" },
		"instance":     func(t *Target) { t.Instance = "uid-2" },
		"socket":       func(t *Target) { t.SocketPath = "/run/y/agent.sock" },
		"container ID": func(t *Target) { t.Peer.ContainerID = "c2" },
		"pid ns":       func(t *Target) { t.Peer.PidNS.Ino = 101 },
	} {
		other := base
		change(&other)
		if linkKey(other) == linkKey(base) {
			t.Errorf("another %s, the same link key", name)
		}
	}
	same := base
	if linkKey(same) != linkKey(base) {
		t.Error("the same target, another key")
	}
}

// forwardRoute names the remote forward a granted request sets up or
// cancels the way the agent keys it ("host:port" as asked, with the
// allocated port of a port-0 reply; "unix:" + path), and what cancels it.
func TestForwardRoute(t *testing.T) {
	tcp := func(host string, port uint32) []byte {
		return gossh.Marshal(sshmsg.TCPIPForward{Host: host, Port: port})
	}
	path := gossh.Marshal(sshmsg.StreamLocalForward{Path: "/tmp/s.sock"})
	for _, tc := range []struct {
		typ            string
		payload, reply []byte
		key, cancel    string
		ok             bool
	}{
		{"tcpip-forward", tcp("127.0.0.1", 8080), nil, "127.0.0.1:8080", "cancel-tcpip-forward", true},
		{"tcpip-forward", tcp("localhost", 0), gossh.Marshal(sshmsg.TCPIPForwardReply{Port: 41234}), "localhost:41234", "cancel-tcpip-forward", true},
		{"tcpip-forward", tcp("localhost", 0), nil, "", "", false}, // no allocated port: no route
		{"cancel-tcpip-forward", tcp("::1", 9000), nil, "[::1]:9000", "cancel-tcpip-forward", true},
		{"streamlocal-forward@openssh.com", path, nil, "unix:/tmp/s.sock", "cancel-streamlocal-forward@openssh.com", true},
		{"cancel-streamlocal-forward@openssh.com", path, nil, "unix:/tmp/s.sock", "cancel-streamlocal-forward@openssh.com", true},
		{"tcpip-forward", []byte{0, 0, 0, 9, 'x'}, nil, "", "", false},
		{"keepalive@openssh.com", nil, nil, "", "", false},
	} {
		key, cancel, ok := forwardRoute(tc.typ, tc.payload, tc.reply)
		if ok != tc.ok || key != tc.key || cancel.typ != tc.cancel {
			t.Errorf("forwardRoute(%s, %x, %x) = %q %q %v, want %q %q %v", tc.typ, tc.payload, tc.reply, key, cancel.typ, ok, tc.key, tc.cancel, tc.ok)
		}
		if ok && tc.typ == "tcpip-forward" {
			var m sshmsg.TCPIPForward
			if err := gossh.Unmarshal(cancel.payload, &m); err != nil || m.Port == 0 {
				t.Errorf("%s: the cancel %x must name the bound port: %v", tc.typ, cancel.payload, err)
			}
		}
	}
}
