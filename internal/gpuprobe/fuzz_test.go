package gpuprobe

import (
	"bytes"
	"testing"

	"github.com/sygaldry/sygaldry/internal/sshwire"
)

// FuzzDecode: whatever the agent sends, Decode either refuses it or returns
// a report within the limits, of NVIDIA device paths in order with known
// states, that the independent wire reader reads the same and that encodes
// back to the very bytes received.
func FuzzDecode(f *testing.F) {
	f.Add(Encode(Report{}))
	f.Add(Encode(Report{Devices: []Device{{"/dev/nvidia-uvm", OK}, {"/dev/nvidia0", Denied}, {"/dev/nvidiactl", Failed}}}))
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 12, '/', 'd', 'e', 'v', '/', 'n', 'v', 'i', 'd', 'i', 'a', '0', 0, 0, 0, 2})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		if len(b) > MaxReply || len(r.Devices) > MaxDevices {
			t.Fatalf("accepted %d bytes, %d devices", len(b), len(r.Devices))
		}
		if !bytes.Equal(Encode(r), b) {
			t.Fatalf("re-encoding %x gives %x", b, Encode(r))
		}
		rd := sshwire.NewReader(b)
		if n := rd.U32(); int(n) != len(r.Devices) {
			t.Fatalf("oracle count %d, decoded %d", n, len(r.Devices))
		}
		for i, d := range r.Devices {
			if !devicePath.MatchString(d.Path) || (d.State != OK && d.State != Denied && d.State != Failed) {
				t.Fatalf("device %d accepted: %+v", i, d)
			}
			if i > 0 && d.Path <= r.Devices[i-1].Path {
				t.Fatalf("device %d out of order: %q after %q", i, d.Path, r.Devices[i-1].Path)
			}
			if p, s := rd.Str(), rd.U32(); p != d.Path || State(s) != d.State {
				t.Fatalf("oracle device %d = %q %d, decoded %+v", i, p, s, d)
			}
		}
		if !rd.OK() {
			t.Fatal("the oracle found the accepted reply short or long")
		}
	})
}
