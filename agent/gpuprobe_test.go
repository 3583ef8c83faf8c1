package agent

import (
	"testing"

	"github.com/sygaldry/sygaldry/internal/gpuprobe"
)

// The agent answers the gateway's GPU probe on the link with a report the
// gateway's decoder accepts (on this host, without NVIDIA devices, an empty
// one), and refuses a probe that carries a payload.
func TestGPUProbeRequest(t *testing.T) {
	e := startAgent(t)
	c := e.dial(t)
	ok, payload, err := c.SendRequest(gpuprobe.Request, true, nil)
	if err != nil || !ok {
		t.Fatalf("probe: ok %v, err %v", ok, err)
	}
	r, err := gpuprobe.Decode(payload)
	if err != nil {
		t.Fatalf("reply %x: %v", payload, err)
	}
	if want := gpuprobe.Probe(); len(r.Devices) != len(want.Devices) {
		t.Errorf("reply %+v, the probe here says %+v", r, want)
	}
	if ok, _, err := c.SendRequest(gpuprobe.Request, true, []byte{0, 0, 0, 0}); err != nil || ok {
		t.Errorf("a probe with a payload: ok %v, err %v; want refused", ok, err)
	}
}
