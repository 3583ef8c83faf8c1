package gpu

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports the inventory to Prometheus, read at each scrape:
// sygaldry_gpus (how many GPUs NVML reports; 0 without NVML) and, per GPU
// (labels index and uuid), utilisation, memory used and total,
// temperature, and health (1 healthy, 0 not). A field the driver does not
// give has no sample.
type Collector struct{ inv *Inventory }

// NewCollector returns the Prometheus collector for inv.
func NewCollector(inv *Inventory) *Collector { return &Collector{inv} }

var (
	labels      = []string{"index", "uuid"}
	descGPUs    = prometheus.NewDesc("sygaldry_gpus", "GPUs NVML reports on this host (0 without the NVIDIA driver).", nil, nil)
	descUtil    = prometheus.NewDesc("sygaldry_gpu_utilization_percent", "Share of the last sample period in which a kernel ran on the GPU.", labels, nil)
	descMemUsed = prometheus.NewDesc("sygaldry_gpu_memory_used_bytes", "GPU memory in use.", labels, nil)
	descMemTot  = prometheus.NewDesc("sygaldry_gpu_memory_total_bytes", "GPU memory installed.", labels, nil)
	descTemp    = prometheus.NewDesc("sygaldry_gpu_temperature_celsius", "GPU core temperature.", labels, nil)
	descHealthy = prometheus.NewDesc("sygaldry_gpu_healthy", "1 while no critical XID was seen on the GPU since the gateway started, else 0.", labels, nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descGPUs, descUtil, descMemUsed, descMemTot, descTemp, descHealthy} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	snap := c.inv.Snapshot()
	ch <- prometheus.MustNewConstMetric(descGPUs, prometheus.GaugeValue, float64(len(snap.Devices)))
	for _, d := range snap.Devices {
		lv := []string{strconv.Itoa(d.Index), d.UUID}
		if d.Utilization != nil {
			ch <- prometheus.MustNewConstMetric(descUtil, prometheus.GaugeValue, float64(*d.Utilization), lv...)
		}
		if d.MemoryUsed != nil {
			ch <- prometheus.MustNewConstMetric(descMemUsed, prometheus.GaugeValue, float64(*d.MemoryUsed), lv...)
		}
		if d.MemoryTotal != nil {
			ch <- prometheus.MustNewConstMetric(descMemTot, prometheus.GaugeValue, float64(*d.MemoryTotal), lv...)
		}
		if d.Temperature != nil {
			ch <- prometheus.MustNewConstMetric(descTemp, prometheus.GaugeValue, float64(*d.Temperature), lv...)
		}
		healthy := 0.0
		if d.Health == Healthy {
			healthy = 1
		}
		ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, healthy, lv...)
	}
}
