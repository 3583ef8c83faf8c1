package agent

import "github.com/sygaldry/sygaldry/internal/gpuprobe"

// gpuProbeRequest is the gateway's question whether this container can
// still use its NVIDIA devices (issue 7: NVML lost after a host
// daemon-reload reset the device cgroup). It is answered inline in the
// link's request loop: a few access(2) calls, no driver call, no wait.
const gpuProbeRequest = gpuprobe.Request

// gpuProbe answers gpuProbeRequest with the state of every NVIDIA device in
// /dev. The request carries nothing; one that does is refused.
func (c *linkConn) gpuProbe(payload []byte) (bool, []byte) {
	if len(payload) != 0 {
		return false, nil
	}
	r := gpuprobe.Probe()
	if r.Lost() {
		c.log.Warn("NVIDIA devices denied by the device cgroup", "denied", r.Denied())
	}
	return true, gpuprobe.Encode(r)
}
