package ports

import (
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Listener is one listening socket as `sygaldry ports --json` prints it.
type Listener struct {
	Port    uint16 `json:"port"`
	Address string `json:"address"` // what it is bound to: 0.0.0.0 and :: are every address
	Process string `json:"process"` // /proc/PID/comm; "-" when the process could not be inspected
	PID     int    `json:"pid"`     // 0 when unknown
	SSH     string `json:"ssh"`     // the command that forwards it to the client's localhost
}

// DestEnv names the ssh destination of this container as the gateway's
// users reach it ("-p 2222 zephyr@gpu1.example.com"); the gateway sets it.
const DestEnv = "SYGALDRY_SSH_DEST"

// Options say where to read and how to name the container.
type Options struct {
	ProcDir string        // "" : /proc
	Dest    string        // ssh destination; "" : a placeholder with Project
	Project string        // the project, for the placeholder; "" : PROJECT
	Budget  time.Duration // the most time the owner scan may take; 0: 2s
}

// maxProcFile bounds what is read of one /proc file: /proc/net/tcp grows by
// 150 bytes per socket, so this is some 400k sockets.
const maxProcFile = 64 << 20

// List returns the listening TCP sockets (IPv4 and IPv6), sorted by port
// and address, each with its owner when it can be found.
func List(o Options) ([]Listener, error) {
	proc := cmp.Or(o.ProcDir, "/proc")
	var socks []Socket
	var errs []error
	found := false
	for _, f := range []struct {
		name string
		v6   bool
	}{{"tcp", false}, {"tcp6", true}} {
		data, err := readLimited(filepath.Join(proc, "net", f.name))
		if err != nil {
			errs = append(errs, err) // tcp6 is missing with ipv6.disable=1
			continue
		}
		found = true
		socks = append(socks, ParseNetTCP(data, f.v6)...)
	}
	if !found {
		return nil, fmt.Errorf("read listening sockets: %w", errs[0])
	}
	want := map[uint64]bool{}
	for _, s := range socks {
		if s.Inode != 0 {
			want[s.Inode] = true
		}
	}
	owners := Owners(proc, want, cmp.Or(o.Budget, 2*time.Second))
	dest := Dest(o.Dest, o.Project)
	out := make([]Listener, 0, len(socks))
	for _, s := range socks {
		l := Listener{Port: s.Port, Address: s.Addr.String(), Process: "-"}
		p, ok := owners[s.Inode]
		if ok && s.Inode != 0 {
			l.Process, l.PID = p.Name, p.PID
		} else if s.Addr == dockerDNS {
			// The engine's DNS server for containers on their own
			// network: held by dockerd from outside, nothing the user
			// started or can reach with a forward.
			continue
		}
		l.SSH = fmt.Sprintf("ssh -L %d:%s:%d %s", s.Port, forwardHost(s.Addr), s.Port, dest)
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Listener) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), strings.Compare(a.Address, b.Address), cmp.Compare(a.PID, b.PID))
	})
	// SO_REUSEPORT groups and forked servers show one socket per process:
	// one line per (port, address, process) is enough.
	return slices.CompactFunc(out, func(a, b Listener) bool {
		return a.Port == b.Port && a.Address == b.Address && a.Process == b.Process
	}), nil
}

// dockerDNS is the address of the engine's embedded DNS server, which
// listens inside every container on a user-defined network.
var dockerDNS = netip.AddrFrom4([4]byte{127, 0, 0, 11})

// forwardHost is what the agent should dial for a socket bound to addr: a
// socket on every address, on 127.0.0.1 or on ::1 is reached as localhost
// (which the agent tries as 127.0.0.1 and ::1); one bound to a single other
// address (127.0.0.2 included) only there.
func forwardHost(addr netip.Addr) string {
	a := addr.Unmap()
	if a.IsUnspecified() || a == netip.AddrFrom4([4]byte{127, 0, 0, 1}) || a == netip.IPv6Loopback() {
		return "localhost"
	}
	if a.Is6() {
		return "[" + a.String() + "]"
	}
	return a.String()
}

// Dest is the ssh destination to print: dest as given (control characters
// dropped: it comes from the environment and goes to a terminal), or a
// placeholder naming the project.
func Dest(dest, project string) string {
	dest = strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, dest))
	if dest != "" {
		return dest
	}
	if project == "" || strings.ContainsFunc(project, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) {
		project = "PROJECT"
	}
	return "-p PORT " + project + "@GATEWAY-HOST"
}

// Proc is a process that holds a listening socket.
type Proc struct {
	PID  int
	Name string
}

// Owners finds, for each inode in want, the process holding it, by reading
// the fd links of every process in proc. It stops when all are found or
// budget has passed (a container with many processes and descriptors must
// not hold a login up); the lowest PID wins when several hold one socket
// (a forking server's parent). Processes whose fds cannot be read are
// skipped.
func Owners(proc string, want map[uint64]bool, budget time.Duration) map[uint64]Proc {
	out := map[uint64]Proc{}
	if len(want) == 0 {
		return out
	}
	ents, err := os.ReadDir(proc)
	if err != nil {
		return out
	}
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	deadline := time.Now().Add(budget)
	for _, pid := range pids {
		if len(out) == len(want) || time.Now().After(deadline) {
			break
		}
		dir := filepath.Join(proc, strconv.Itoa(pid))
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue // gone, or another user's
		}
		var name string
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
			if err != nil {
				continue
			}
			ino, ok := SocketInode(link)
			if !ok || !want[ino] {
				continue
			}
			if _, seen := out[ino]; seen {
				continue
			}
			if name == "" {
				comm, err := readLimited(filepath.Join(dir, "comm"))
				if err != nil {
					comm = nil
				}
				name = ProcessName(comm)
			}
			out[ino] = Proc{PID: pid, Name: name}
		}
	}
	return out
}

func readLimited(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxProcFile))
}

// Header is the first line of the listing.
const Header = "Listening in this container:"

// Format writes the listing for a terminal, one line per listener after
// Header, ending each line in eol ("\n", or "\r\n" for a raw terminal), at
// most max listeners (0: all) and then a line saying how many more there
// are. Nothing is written when nothing listens.
func Format(w io.Writer, ls []Listener, max int, eol string) error {
	if len(ls) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString(Header + eol)
	shown := ls
	if max > 0 && len(ls) > max {
		shown = ls[:max]
	}
	pw, aw := 0, 0
	for _, l := range shown {
		pw = max2(pw, len(procColumn(l)))
		aw = max2(aw, len(l.Address))
	}
	for _, l := range shown {
		fmt.Fprintf(&b, "%6d %-*s  on %-*s  %s%s", l.Port, pw, procColumn(l), aw, l.Address, l.SSH, eol)
	}
	if n := len(ls) - len(shown); n > 0 {
		fmt.Fprintf(&b, "  ... and %d more: sygaldry ports%s", n, eol)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func procColumn(l Listener) string {
	if l.PID == 0 {
		return l.Process
	}
	return fmt.Sprintf("%s (pid %d)", l.Process, l.PID)
}

func max2(a, b int) int {
	if a > b {
		return a
	}
	return b
}
