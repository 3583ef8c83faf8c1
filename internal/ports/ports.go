// Package ports lists the TCP ports listening in a container, with the
// process that owns each, for `sygaldry ports` and the banner of an
// interactive login (issue 9: a terminal user finds their Jupyter port
// without guessing).
//
// Everything is read from /proc as the agent's own user: the listening
// sockets from /proc/net/tcp and tcp6 (state 0A, TCP_LISTEN), their owners
// by matching the socket inode with the "socket:[INODE]" links in
// /proc/PID/fd. A process the user may not inspect (another uid's fd
// directory is unreadable) shows as "-". The parsers are pure functions
// over the files' text, so hostile input (the fuzz target) cannot reach
// anything but them.
package ports

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Socket is one listening TCP socket from /proc/net/tcp or tcp6.
type Socket struct {
	Addr  netip.Addr // the local address it is bound to (0.0.0.0 or :: for all)
	Port  uint16
	Inode uint64 // 0 when the kernel gave none
}

// tcpListen is TCP_LISTEN in the st column (include/net/tcp_states.h).
const tcpListen = "0A"

// maxLine bounds one line of /proc/net/tcp*: the kernel writes about 150
// bytes; a longer line is not the kernel's and is skipped.
const maxLine = 4096

// ParseNetTCP returns the listening sockets in the text of /proc/net/tcp
// (v6 false) or /proc/net/tcp6 (v6 true), in file order. Lines that are not
// well formed (missing fields, bad hex, too long) are skipped: the listing
// is advice, and one odd line must not hide the others.
func ParseNetTCP(data []byte, v6 bool) []Socket {
	var out []Socket
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if len(line) > maxLine {
			continue
		}
		if s, ok := parseLine(string(line), v6); ok {
			out = append(out, s)
		}
	}
	return out
}

// parseLine reads one socket line:
//
//	sl  local_address rem_address   st tx_queue:rx_queue tr:tm->when retrnsmt   uid  timeout inode ...
//	0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 12345 ...
//
// The header line fails the "N:" check.
func parseLine(line string, v6 bool) (Socket, bool) {
	f := strings.Fields(line)
	if len(f) < 10 || !strings.HasSuffix(f[0], ":") || f[3] != tcpListen {
		return Socket{}, false
	}
	if _, err := strconv.ParseUint(strings.TrimSuffix(f[0], ":"), 10, 64); err != nil {
		return Socket{}, false
	}
	hexAddr, hexPort, ok := strings.Cut(f[1], ":")
	if !ok || len(hexPort) != 4 {
		return Socket{}, false
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return Socket{}, false
	}
	addr, ok := parseAddr(hexAddr, v6)
	if !ok {
		return Socket{}, false
	}
	inode, err := strconv.ParseUint(f[9], 10, 64)
	if err != nil {
		return Socket{}, false
	}
	return Socket{Addr: addr, Port: uint16(port), Inode: inode}, true
}

// parseAddr decodes the kernel's address: the in-kernel bytes of the
// address printed as 32-bit words in the host's byte order (%08X of a
// __be32, four of them for IPv6), so on little-endian hosts 127.0.0.1 is
// "0100007F".
func parseAddr(h string, v6 bool) (netip.Addr, bool) {
	want := 8
	if v6 {
		want = 32
	}
	if len(h) != want {
		return netip.Addr{}, false
	}
	raw, err := hex.DecodeString(h)
	if err != nil {
		return netip.Addr{}, false
	}
	var b [16]byte
	for i := 0; i < len(raw); i += 4 {
		// The word was printed as a number: undo the host order.
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	if !v6 {
		return netip.AddrFrom4([4]byte(b[:4])), true
	}
	return netip.AddrFrom16(b), true
}

// SocketInode returns the inode of a /proc/PID/fd link target
// "socket:[12345]".
func SocketInode(link string) (uint64, bool) {
	s, ok := strings.CutPrefix(link, "socket:[")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, "]")
	if !ok || s == "" || len(s) > 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// ProcessName cleans /proc/PID/comm for a terminal: the name is whatever the
// process set (prctl PR_SET_NAME, at most 15 bytes), escape sequences
// included, so control characters and invalid UTF-8 become "?".
func ProcessName(comm []byte) string {
	s := strings.TrimSuffix(string(comm), "\n")
	if len(s) > 64 {
		s = s[:64]
	}
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError || unicode.IsSpace(r) {
			return '?'
		}
		return r
	}, s)
	if s == "" {
		return "-"
	}
	return s
}
