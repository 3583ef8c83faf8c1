package gpu

import (
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollector(t *testing.T) {
	s := machine(t)
	device(s, 1).GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
	inv := open(t, s, t.TempDir())
	inv.markUnhealthy(device(s, 1).UUID, "XID 79")
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(inv))
	u0, u1 := device(s, 0).UUID, device(s, 1).UUID
	want := `# HELP sygaldry_gpus GPUs NVML reports on this host (0 without the NVIDIA driver).
# TYPE sygaldry_gpus gauge
sygaldry_gpus 8
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sygaldry_gpus"); err != nil {
		t.Error(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			key := mf.GetName()
			for _, l := range m.Label {
				key += " " + l.GetValue()
			}
			got[key] = m.GetGauge().GetValue()
		}
	}
	for key, v := range map[string]float64{
		"sygaldry_gpu_utilization_percent 0 " + u0: 5,
		"sygaldry_gpu_utilization_percent 1 " + u1: 15,
		"sygaldry_gpu_memory_used_bytes 1 " + u1:   2 << 30,
		"sygaldry_gpu_memory_total_bytes 0 " + u0:  40960 << 20,
		"sygaldry_gpu_temperature_celsius 0 " + u0: 40,
		"sygaldry_gpu_healthy 0 " + u0:             1,
		"sygaldry_gpu_healthy 1 " + u1:             0,
	} {
		if g, ok := got[key]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", key, g, ok, v)
		}
	}
	if _, ok := got["sygaldry_gpu_temperature_celsius 1 "+u1]; ok {
		t.Error("an unknown temperature has a sample")
	}

	none := Open(Options{Library: s, Logger: quiet})
	none.initErr = ErrNoGPUs
	reg = prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(none))
	if err := testutil.GatherAndCompare(reg, strings.NewReader(strings.Replace(want, "sygaldry_gpus 8", "sygaldry_gpus 0", 1))); err != nil {
		t.Error(err)
	}
}

// With the lease table: each GPU is leased or not, and the projects holding
// it are labels; a free GPU has no holder sample.
func TestCollectorLeases(t *testing.T) {
	s := machine(t)
	inv := open(t, s, t.TempDir())
	u0, u1, u2 := device(s, 0).UUID, device(s, 1).UUID, device(s, 2).UUID
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(inv).WithLeases(func() []LeaseHolder {
		return []LeaseHolder{{UUID: u0, Project: "zephyr"}, {UUID: u1, Project: "mist"}, {UUID: u1, Project: "mist"}, {UUID: u1, Project: "zephyr"}}
	}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			key := mf.GetName()
			for _, l := range m.Label {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			got[key] = m.GetGauge().GetValue()
		}
	}
	for key, v := range map[string]float64{
		"sygaldry_gpu_leased index=0 uuid=" + u0:                       1,
		"sygaldry_gpu_leased index=1 uuid=" + u1:                       1,
		"sygaldry_gpu_leased index=2 uuid=" + u2:                       0,
		"sygaldry_gpu_lease_holders index=0 project=zephyr uuid=" + u0: 1,
		"sygaldry_gpu_lease_holders index=1 project=mist uuid=" + u1:   2,
		"sygaldry_gpu_lease_holders index=1 project=zephyr uuid=" + u1: 1,
	} {
		if g, ok := got[key]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", key, g, ok, v)
		}
	}
	n := 0
	for key := range got {
		if strings.HasPrefix(key, "sygaldry_gpu_lease_holders ") {
			n++
		}
	}
	if n != 3 {
		t.Errorf("%d holder samples, want 3 (none for a free GPU): %v", n, got)
	}
}
