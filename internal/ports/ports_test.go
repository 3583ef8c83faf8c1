package ports

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const tcpHeader = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"

// tcpLine renders a socket line the way the kernel does (little-endian
// words, as on every host these tests run on).
func tcpLine(sl int, addr netip.Addr, port uint16, st string, inode uint64) string {
	var h strings.Builder
	b := addr.AsSlice()
	for i := 0; i < len(b); i += 4 {
		fmt.Fprintf(&h, "%02X%02X%02X%02X", b[i+3], b[i+2], b[i+1], b[i])
	}
	return fmt.Sprintf("%4d: %s:%04X %s:0000 %s 00000000:00000000 00:00000000 00000000  1000        0 %d 1 0000000000000000 100 0 0 10 0\n",
		sl, h.String(), port, strings.Repeat("0", len(h.String())), st, inode)
}

func TestParseNetTCP(t *testing.T) {
	v4 := tcpHeader +
		tcpLine(0, netip.MustParseAddr("0.0.0.0"), 8777, "0A", 111) +
		tcpLine(1, netip.MustParseAddr("127.0.0.1"), 6006, "0A", 222) +
		tcpLine(2, netip.MustParseAddr("10.1.2.3"), 9999, "01", 333) + // ESTABLISHED: not a listener
		tcpLine(3, netip.MustParseAddr("172.17.0.2"), 22, "0A", 444)
	got := ParseNetTCP([]byte(v4), false)
	want := []Socket{
		{netip.MustParseAddr("0.0.0.0"), 8777, 111},
		{netip.MustParseAddr("127.0.0.1"), 6006, 222},
		{netip.MustParseAddr("172.17.0.2"), 22, 444},
	}
	if !slices.Equal(got, want) {
		t.Errorf("tcp = %v, want %v", got, want)
	}

	// The kernel's own text for 127.0.0.1:8080, to pin the byte order.
	if got := ParseNetTCP([]byte("   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5 1\n"), false); len(got) != 1 || got[0].Addr != netip.MustParseAddr("127.0.0.1") || got[0].Port != 8080 {
		t.Errorf("kernel line = %v", got)
	}

	v6 := tcpHeader +
		tcpLine(0, netip.MustParseAddr("::"), 8888, "0A", 1) +
		tcpLine(1, netip.MustParseAddr("::1"), 8889, "0A", 2) +
		tcpLine(2, netip.MustParseAddr("fe80::1:2:3:4"), 80, "0A", 3) +
		tcpLine(3, netip.MustParseAddr("::ffff:127.0.0.1"), 81, "0A", 4)
	got = ParseNetTCP([]byte(v6), true)
	want = []Socket{
		{netip.MustParseAddr("::"), 8888, 1},
		{netip.MustParseAddr("::1"), 8889, 2},
		{netip.MustParseAddr("fe80::1:2:3:4"), 80, 3},
		{netip.MustParseAddr("::ffff:127.0.0.1"), 81, 4},
	}
	if !slices.Equal(got, want) {
		t.Errorf("tcp6 = %v, want %v", got, want)
	}
	// A v4 file read as v6 (or the other way) yields nothing, not garbage.
	if got := ParseNetTCP([]byte(v4), true); len(got) != 0 {
		t.Errorf("tcp read as tcp6 = %v", got)
	}
}

func TestParseNetTCPHostile(t *testing.T) {
	good := tcpLine(0, netip.MustParseAddr("0.0.0.0"), 8777, "0A", 111)
	for name, line := range map[string]string{
		"huge line":       strings.Repeat("x", 1<<20) + "\n",
		"huge good line":  strings.TrimSuffix(good, "\n") + strings.Repeat(" 0", 4096) + "\n",
		"bad hex address": strings.Replace(good, "00000000:2249", "0000000G:2249", 1),
		"bad hex port":    strings.Replace(good, ":2249 ", ":22Z9 ", 1),
		"short port":      strings.Replace(good, ":2249 ", ":249 ", 1),
		"short address":   strings.Replace(good, "00000000:2249", "000000:2249", 1),
		"no colon":        strings.Replace(good, "00000000:2249", "000000002249", 1),
		"missing fields":  "   0: 00000000:2249 00000000:0000 0A\n",
		"bad inode":       strings.Replace(good, " 111 ", " -1 ", 1),
		"no slot":         strings.Replace(good, "   0:", "   x:", 1),
		"empty":           "",
		"only newlines":   "\n\n\n",
		"nul bytes":       "\x00\x00\x00\n",
	} {
		data := tcpHeader + line + good
		got := ParseNetTCP([]byte(data), false)
		if len(got) != 1 || got[0].Port != 8777 || got[0].Inode != 111 {
			t.Errorf("%s: got %v, want the good line only", name, got)
		}
	}
	// No final newline.
	if got := ParseNetTCP([]byte(strings.TrimSuffix(good, "\n")), false); len(got) != 1 {
		t.Errorf("last line without newline: %v", got)
	}
}

func TestSocketInode(t *testing.T) {
	for link, want := range map[string]uint64{"socket:[12345]": 12345, "socket:[0]": 0} {
		if n, ok := SocketInode(link); !ok || n != want {
			t.Errorf("%q = %d %v", link, n, ok)
		}
	}
	for _, link := range []string{"", "socket:[]", "socket:[12", "socket:12]", "pipe:[12]", "/dev/null", "socket:[-1]", "socket:[99999999999999999999999]", "socket:[1] "} {
		if n, ok := SocketInode(link); ok {
			t.Errorf("%q accepted as %d", link, n)
		}
	}
}

func TestProcessName(t *testing.T) {
	for in, want := range map[string]string{
		"python3\n":             "python3",
		"\x1b]0;pwned\x07\n":    "?]0;pwned?",
		"my server\n":           "my?server",
		"\xff\xfe\n":            "?",
		"":                      "-",
		"jupyter-lab\n":         "jupyter-lab",
		strings.Repeat("a", 99): strings.Repeat("a", 64),
	} {
		if got := ProcessName([]byte(in)); got != want {
			t.Errorf("ProcessName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDest(t *testing.T) {
	for _, tc := range []struct{ dest, project, want string }{
		{"-p 2222 zephyr@127.0.0.1", "zephyr", "-p 2222 zephyr@127.0.0.1"},
		{"  -p 2222 zephyr@gpu1\n", "", "-p 2222 zephyr@gpu1"},
		{"-p 22\x1b[2J zephyr@h", "", "-p 22[2J zephyr@h"},
		{"", "zephyr", "-p PORT zephyr@GATEWAY-HOST"},
		{"", "", "-p PORT PROJECT@GATEWAY-HOST"},
		{"", "a b", "-p PORT PROJECT@GATEWAY-HOST"},
	} {
		if got := Dest(tc.dest, tc.project); got != tc.want {
			t.Errorf("Dest(%q, %q) = %q, want %q", tc.dest, tc.project, got, tc.want)
		}
	}
}

// fakeProc builds a /proc with the given net files and processes: pid ->
// (comm, socket inodes). A pid with comm "" has no readable fd directory,
// like another user's process.
func fakeProc(t *testing.T, tcp, tcp6 string, procs map[int]struct {
	comm   string
	inodes []uint64
}) string {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "net"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "net", "tcp"), []byte(tcp), 0o644))
	if tcp6 != "" {
		must(os.WriteFile(filepath.Join(dir, "net", "tcp6"), []byte(tcp6), 0o644))
	}
	must(os.MkdirAll(filepath.Join(dir, "self"), 0o755)) // not a pid: ignored
	for pid, p := range procs {
		pd := filepath.Join(dir, strconv.Itoa(pid))
		must(os.MkdirAll(pd, 0o755))
		if p.comm == "" {
			continue
		}
		must(os.WriteFile(filepath.Join(pd, "comm"), []byte(p.comm+"\n"), 0o644))
		must(os.MkdirAll(filepath.Join(pd, "fd"), 0o755))
		must(os.Symlink("/dev/null", filepath.Join(pd, "fd", "0")))
		must(os.Symlink("pipe:[7]", filepath.Join(pd, "fd", "1")))
		for i, ino := range p.inodes {
			must(os.Symlink(fmt.Sprintf("socket:[%d]", ino), filepath.Join(pd, "fd", strconv.Itoa(3+i))))
		}
	}
	return dir
}

func TestList(t *testing.T) {
	tcp := tcpHeader +
		tcpLine(0, netip.MustParseAddr("0.0.0.0"), 8777, "0A", 111) +
		tcpLine(1, netip.MustParseAddr("127.0.0.1"), 6006, "0A", 222) +
		tcpLine(2, netip.MustParseAddr("172.17.0.2"), 5000, "0A", 333) +
		tcpLine(3, netip.MustParseAddr("10.0.0.1"), 40000, "01", 444) +
		tcpLine(4, netip.MustParseAddr("127.0.0.11"), 37649, "0A", 777) + // the engine's DNS: hidden
		tcpLine(5, netip.MustParseAddr("127.0.0.2"), 5001, "0A", 888)
	tcp6 := tcpHeader +
		tcpLine(0, netip.MustParseAddr("::"), 8777, "0A", 555) +
		tcpLine(1, netip.MustParseAddr("fe80::1"), 7000, "0A", 666)
	proc := fakeProc(t, tcp, tcp6, map[int]struct {
		comm   string
		inodes []uint64
	}{
		123: {"python3", []uint64{111, 555}},
		124: {"python3", []uint64{111}}, // a forked worker holding the same socket
		200: {"tensorboard", []uint64{222}},
		300: {"", nil}, // another user's: 333 stays unknown
		400: {"node", []uint64{666}},
	})
	got, err := List(Options{ProcDir: proc, Dest: "-p 2222 zephyr@127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Listener{
		{5000, "172.17.0.2", "-", 0, "ssh -L 5000:172.17.0.2:5000 -p 2222 zephyr@127.0.0.1"},
		{5001, "127.0.0.2", "-", 0, "ssh -L 5001:127.0.0.2:5001 -p 2222 zephyr@127.0.0.1"},
		{6006, "127.0.0.1", "tensorboard", 200, "ssh -L 6006:localhost:6006 -p 2222 zephyr@127.0.0.1"},
		{7000, "fe80::1", "node", 400, "ssh -L 7000:[fe80::1]:7000 -p 2222 zephyr@127.0.0.1"},
		{8777, "0.0.0.0", "python3", 123, "ssh -L 8777:localhost:8777 -p 2222 zephyr@127.0.0.1"},
		{8777, "::", "python3", 123, "ssh -L 8777:localhost:8777 -p 2222 zephyr@127.0.0.1"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("List =\n%v\nwant\n%v", got, want)
	}

	// JSON: the documented shape.
	b, _ := json.Marshal(got[4:5])
	if string(b) != `[{"port":8777,"address":"0.0.0.0","process":"python3","pid":123,"ssh":"ssh -L 8777:localhost:8777 -p 2222 zephyr@127.0.0.1"}]` {
		t.Errorf("json = %s", b)
	}

	// Without tcp6 (ipv6.disable=1) the v4 listeners still show; without
	// either file it is an error.
	proc = fakeProc(t, tcp, "", nil)
	if got, err := List(Options{ProcDir: proc, Project: "zephyr"}); err != nil || len(got) != 4 || got[0].SSH != "ssh -L 5000:172.17.0.2:5000 -p PORT zephyr@GATEWAY-HOST" {
		t.Errorf("without tcp6: %v, %v", got, err)
	}
	if _, err := List(Options{ProcDir: t.TempDir()}); err == nil {
		t.Error("no /proc/net/tcp: no error")
	}
}

func TestFormat(t *testing.T) {
	var ls []Listener
	for i := range 12 {
		ls = append(ls, Listener{Port: uint16(8000 + i), Address: "0.0.0.0", Process: "python3", PID: 100 + i, SSH: fmt.Sprintf("ssh -L %d:localhost:%d D", 8000+i, 8000+i)})
	}
	ls[1].Process, ls[1].PID = "-", 0
	var b bytes.Buffer
	if err := Format(&b, ls, 8, "\r\n"); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\r\n"), "\r\n")
	if len(lines) != 10 || lines[0] != Header || lines[9] != "  ... and 4 more: sygaldry ports" {
		t.Fatalf("listing:\n%s", b.String())
	}
	if !strings.Contains(lines[1], "8000 python3 (pid 100)") || !strings.HasSuffix(lines[1], "ssh -L 8000:localhost:8000 D") {
		t.Errorf("line = %q", lines[1])
	}
	if !strings.Contains(lines[2], "8001 -") || strings.Contains(lines[2], "pid") {
		t.Errorf("an unknown owner: %q", lines[2])
	}
	if strings.Count(b.String(), "\n") != strings.Count(b.String(), "\r\n") {
		t.Error("a line ends in a bare \\n")
	}
	b.Reset()
	if Format(&b, nil, 8, "\n"); b.Len() != 0 {
		t.Errorf("nothing listens, yet %q", b.String())
	}
	b.Reset()
	Format(&b, ls, 0, "\n")
	if n := strings.Count(b.String(), "\n"); n != 13 {
		t.Errorf("max 0 printed %d lines, want all 12 and the header", n)
	}
}

// TestListLive reads the real /proc: a socket this test listens on shows
// up with this process's pid and name.
func TestListLive(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc/net/tcp")
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	ls, err := List(Options{Budget: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	comm, _ := os.ReadFile("/proc/self/comm")
	for _, l := range ls {
		if l.Port == port && l.Address == "127.0.0.1" {
			if l.PID != os.Getpid() || l.Process != ProcessName(comm) {
				t.Errorf("listener = %+v, want pid %d %s", l, os.Getpid(), comm)
			}
			return
		}
	}
	t.Errorf("port %d not listed: %v", port, ls)
}
