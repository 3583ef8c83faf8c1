package gpuprobe

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
)

// mknod makes a character device node in dir, or skips the test where the
// kernel does not let this user make one.
func mknod(t *testing.T, dir, name string, minor int) {
	t.Helper()
	if err := syscall.Mknod(filepath.Join(dir, name), syscall.S_IFCHR|0o666, 195<<8|minor); err != nil {
		t.Skipf("cannot make a device node here: %v", err)
	}
}

// The probe reports every NVIDIA character device with what the kernel
// said, as /dev paths in order, and nothing else: not other names, not
// regular files that borrow an NVIDIA name.
func TestProbe(t *testing.T) {
	dir := t.TempDir()
	mknod(t, dir, "nvidiactl", 255)
	mknod(t, dir, "nvidia1", 1)
	mknod(t, dir, "nvidia0", 0)
	mknod(t, dir, "nvidia-uvm", 2)
	mknod(t, dir, "nvidia-modeset", 254) // not one CUDA needs
	if err := os.WriteFile(filepath.Join(dir, "nvidia2"), nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "nvidia-caps"), 0o755); err != nil {
		t.Fatal(err)
	}
	answers := map[string]error{"nvidia0": syscall.EPERM, "nvidia-uvm": syscall.ENOENT}
	got := probe(dir, func(p string) error { return answers[filepath.Base(p)] })
	want := Report{Devices: []Device{
		{"/dev/nvidia-uvm", Failed},
		{"/dev/nvidia0", Denied},
		{"/dev/nvidia1", OK},
		{"/dev/nvidiactl", OK},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("probe = %+v\nwant    %+v", got, want)
	}
	if !got.Lost() || !reflect.DeepEqual(got.Denied(), []string{"/dev/nvidia0"}) {
		t.Errorf("Lost %v, Denied %v", got.Lost(), got.Denied())
	}
	if r := probe(t.TempDir(), nil); len(r.Devices) != 0 || r.Lost() {
		t.Errorf("a container without NVIDIA devices: %+v", r)
	}
}

// Only EPERM, the device cgroup's answer, counts as lost access.
func TestLostOnlyOnDenied(t *testing.T) {
	for _, tt := range []struct {
		states []State
		lost   bool
	}{
		{nil, false},
		{[]State{OK, OK}, false},
		{[]State{OK, Failed}, false},
		{[]State{OK, Denied}, true},
	} {
		var r Report
		for i, s := range tt.states {
			r.Devices = append(r.Devices, Device{Path: "/dev/nvidia" + string(rune('0'+i)), State: s})
		}
		if r.Lost() != tt.lost {
			t.Errorf("%v: Lost = %v, want %v", tt.states, r.Lost(), tt.lost)
		}
	}
}

func TestDecode(t *testing.T) {
	full := Report{Devices: []Device{{"/dev/nvidia-uvm", OK}, {"/dev/nvidia0", Denied}, {"/dev/nvidiactl", Failed}}}
	if got, err := Decode(Encode(full)); err != nil || !reflect.DeepEqual(got, full) {
		t.Errorf("round trip = %+v, %v", got, err)
	}
	if got, err := Decode(Encode(Report{})); err != nil || len(got.Devices) != 0 {
		t.Errorf("empty = %+v, %v", got, err)
	}
	var many Report
	for i := range MaxDevices + 1 {
		many.Devices = append(many.Devices, Device{Path: "/dev/nvidia" + string(rune('a'+i%26)), State: OK})
	}
	enc := func(ds ...Device) []byte { return Encode(Report{Devices: ds}) }
	for name, b := range map[string][]byte{
		"nothing":        nil,
		"short count":    {0, 0, 1},
		"missing device": {0, 0, 0, 1},
		"trailing":       append(Encode(full), 0),
		"bad state":      enc(Device{"/dev/nvidia0", 9}),
		"zero state":     enc(Device{"/dev/nvidia0", 0}),
		"other path":     enc(Device{"/etc/shadow", OK}),
		"traversal":      enc(Device{"/dev/nvidia0/../../etc/shadow", OK}),
		"repeated":       enc(Device{"/dev/nvidia0", OK}, Device{"/dev/nvidia0", Denied}),
		"out of order":   enc(Device{"/dev/nvidia1", OK}, Device{"/dev/nvidia0", OK}),
		"too many":       Encode(many),
		"huge count":     {0xff, 0xff, 0xff, 0xff},
		"huge path":      {0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff},
		"oversized":      make([]byte, MaxReply+1),
	} {
		if _, err := Decode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

// The longest reply the agent can send (MaxDevices of the longest name)
// fits in MaxReply.
func TestMaxReplyFits(t *testing.T) {
	var r Report
	for i := range MaxDevices {
		r.Devices = append(r.Devices, Device{Path: "/dev/nvidia" + string(rune('0'+i/10)) + string(rune('0'+i%10)), State: OK})
	}
	r.Devices[len(r.Devices)-1].Path = "/dev/nvidia-uvm-tools"
	if n := len(Encode(r)); n > MaxReply {
		t.Errorf("a full reply is %d bytes, over MaxReply %d", n, MaxReply)
	}
}
