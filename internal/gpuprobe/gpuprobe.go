// Package gpuprobe is the agent's answer to "can this container still open
// its NVIDIA devices?" (issue 7): the link request, its reply's wire format
// (defined once here for both ends), and the probe the agent runs.
//
// The case it exists for: a host `systemctl daemon-reload` (or anything
// that makes systemd rewrite the container's device cgroup) drops the
// allow rules the NVIDIA runtime hook added at start, and from then on
// every open of /dev/nvidia* inside the container fails with EPERM; CUDA
// and nvidia-smi say "Failed to initialize NVML: Unknown Error" until the
// container is restarted. The device nodes are still there, so only asking
// the kernel from inside the container tells.
//
// The probe asks with access(2) for read and write, not open(2): the kernel
// applies the device cgroup in the same permission check for both
// (inode_permission -> devcgroup_inode_permission), so a denied device
// answers EPERM alike, but access never enters the NVIDIA driver, so a
// probe cannot initialise a sleeping GPU or hang in the driver.
package gpuprobe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
)

// Request is the link's global request type; its payload is empty and the
// reply's payload is an encoded Report.
const Request = "gpu-probe@sygaldry"

// State is what the kernel answered for one device.
type State uint32

// Device states. Unknown values are refused by Decode.
const (
	OK     State = 1 // read and write allowed
	Denied State = 2 // EPERM: the device cgroup does not allow it
	Failed State = 3 // any other error (the node went away, EACCES, ...)
)

func (s State) String() string {
	switch s {
	case OK:
		return "ok"
	case Denied:
		return "denied"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("state(%d)", uint32(s))
}

// Device is one NVIDIA device node of the container and its state.
type Device struct {
	Path  string // /dev/nvidiactl, /dev/nvidia-uvm, /dev/nvidia0, ...
	State State
}

// Report is the agent's answer: the NVIDIA device nodes it found in /dev
// (none in a container without GPUs), in path order.
type Report struct {
	Devices []Device
}

// Denied lists the devices the device cgroup refuses.
func (r Report) Denied() []string {
	var out []string
	for _, d := range r.Devices {
		if d.State == Denied {
			out = append(out, d.Path)
		}
	}
	return out
}

// Lost reports whether the container lost its GPUs the way a device
// cgroup reset loses them: some NVIDIA device it has is denied.
func (r Report) Lost() bool { return len(r.Denied()) > 0 }

// Limits of a reply. A host has at most a few dozen GPUs; with nvidiactl,
// nvidia-uvm and nvidia-uvm-tools the list stays far below MaxDevices.
const (
	MaxDevices = 64
	MaxReply   = 4 + MaxDevices*(4+len("/dev/nvidia-uvm-tools")+4)
)

// devicePath is every name the probe reports: the control device, the
// unified memory devices and the per-GPU nodes (nvidia0..nvidia999).
var devicePath = regexp.MustCompile(`^/dev/nvidia(ctl|-uvm|-uvm-tools|[0-9]{1,3})$`)

// ErrMalformed is wrapped by every Decode error.
var ErrMalformed = errors.New("malformed gpu probe reply")

// Encode writes r in the SSH wire types: uint32 count, then for each
// device string path, uint32 state.
func Encode(r Report) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(r.Devices)))
	for _, d := range r.Devices {
		b = binary.BigEndian.AppendUint32(b, uint32(len(d.Path)))
		b = append(b, d.Path...)
		b = binary.BigEndian.AppendUint32(b, uint32(d.State))
	}
	return b
}

// Decode reads a reply from the agent, which runs as the container's user
// and so may send anything: the size, the count, every path (one of the
// NVIDIA device names, each once, in order) and every state are checked,
// and nothing may be missing or left over.
func Decode(b []byte) (Report, error) {
	bad := func(why string, args ...any) (Report, error) {
		return Report{}, fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(why, args...))
	}
	if len(b) > MaxReply {
		return bad("%d bytes, more than %d", len(b), MaxReply)
	}
	u32 := func() (uint32, bool) {
		if len(b) < 4 {
			return 0, false
		}
		v := binary.BigEndian.Uint32(b)
		b = b[4:]
		return v, true
	}
	n, ok := u32()
	if !ok {
		return bad("short count")
	}
	if n > MaxDevices {
		return bad("%d devices, more than %d", n, MaxDevices)
	}
	r := Report{Devices: make([]Device, 0, n)}
	for i := range n {
		l, ok := u32()
		if !ok || uint64(l) > uint64(len(b)) {
			return bad("device %d: short path", i)
		}
		p := string(b[:l])
		b = b[l:]
		if !devicePath.MatchString(p) {
			return bad("device %d: %q is not an NVIDIA device path", i, p)
		}
		if len(r.Devices) > 0 && p <= r.Devices[len(r.Devices)-1].Path {
			return bad("device %d: %q out of order or repeated", i, p)
		}
		s, ok := u32()
		if !ok {
			return bad("device %d: short state", i)
		}
		if st := State(s); st != OK && st != Denied && st != Failed {
			return bad("device %d: unknown state %d", i, s)
		}
		r.Devices = append(r.Devices, Device{Path: p, State: State(s)})
	}
	if len(b) != 0 {
		return bad("%d trailing bytes", len(b))
	}
	return r, nil
}

// Probe checks the NVIDIA device nodes under /dev.
func Probe() Report { return probe("/dev", access) }

// access asks the kernel whether the caller may read and write path.
func access(path string) error { return syscall.Access(path, 0x4|0x2) } // R_OK|W_OK

// probe checks the character devices in dir whose names are NVIDIA's, with
// check standing in for access(2) in tests. Report paths always read
// /dev/NAME: that is what the container calls them.
func probe(dir string, check func(string) error) Report {
	names, _ := filepath.Glob(filepath.Join(dir, "nvidia*")) // the pattern is valid
	var r Report
	for _, p := range names {
		name := "/dev/" + filepath.Base(p)
		if !devicePath.MatchString(name) {
			continue
		}
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
			continue
		}
		st := OK
		switch err := check(p); {
		case errors.Is(err, syscall.EPERM):
			st = Denied
		case err != nil:
			st = Failed
		}
		r.Devices = append(r.Devices, Device{Path: name, State: st})
		if len(r.Devices) == MaxDevices {
			break
		}
	}
	// Glob sorts, but "/dev/" + name is what Decode wants in order.
	slices.SortFunc(r.Devices, func(a, b Device) int { return strings.Compare(a.Path, b.Path) })
	return r
}
