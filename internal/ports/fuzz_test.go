package ports

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

// FuzzParseNetTCP feeds the parser arbitrary /proc/net/tcp text: it never
// panics, returns at most one socket per line, only IPv4 addresses from
// tcp and IPv6 ones from tcp6, and every socket it returns renders back to
// a line of the input that the parser reads the same way.
func FuzzParseNetTCP(f *testing.F) {
	f.Add([]byte(tcpHeader+tcpLine(0, netip.MustParseAddr("0.0.0.0"), 8777, "0A", 111)), false)
	f.Add([]byte(tcpHeader+tcpLine(0, netip.MustParseAddr("::1"), 8888, "0A", 2)), true)
	f.Add([]byte("   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5 1\n"), false)
	f.Add([]byte("   0: 0100007F:1F90 00000000:0000 0A\n"), false)
	f.Add([]byte("   0: 0100007G:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5 1\n"), false)
	f.Add([]byte(strings.Repeat("0", 5000)), false)
	f.Add([]byte{}, true)
	f.Fuzz(func(t *testing.T, data []byte, v6 bool) {
		socks := ParseNetTCP(data, v6)
		if n := bytes.Count(data, []byte("\n")) + 1; len(socks) > n {
			t.Fatalf("%d sockets from %d lines", len(socks), n)
		}
		for _, s := range socks {
			if s.Addr.Is6() != v6 || !s.Addr.IsValid() {
				t.Fatalf("address %v from a v6=%v file", s.Addr, v6)
			}
			again := ParseNetTCP([]byte(tcpLine(0, s.Addr, s.Port, "0A", s.Inode)), v6)
			if len(again) != 1 || again[0] != s {
				t.Fatalf("%+v renders and reads back as %+v", s, again)
			}
		}
	})
}

// FuzzSocketInode: an accepted link is exactly "socket:[N]" for the N returned.
func FuzzSocketInode(f *testing.F) {
	for _, s := range []string{"socket:[1]", "socket:[]", "pipe:[3]", "socket:[18446744073709551615]", "socket:[+1]", "socket:[01]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, link string) {
		n, ok := SocketInode(link)
		if !ok {
			return
		}
		if !strings.HasPrefix(link, "socket:[") || !strings.HasSuffix(link, "]") {
			t.Fatalf("%q accepted as %d", link, n)
		}
	})
}
