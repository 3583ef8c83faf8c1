package gpu

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports the inventory to Prometheus, read at each scrape:
// sygaldry_gpus (how many GPUs NVML reports; 0 without NVML) and, per GPU
// (labels index and uuid), utilisation, memory used and total,
// temperature, and health (1 healthy, 0 not). A field the driver does not
// give has no sample. With WithLeases, also who leases each GPU.
type Collector struct {
	inv    *Inventory
	leases func() []LeaseHolder
}

// NewCollector returns the Prometheus collector for inv.
func NewCollector(inv *Inventory) *Collector { return &Collector{inv: inv} }

// LeaseHolder is one container's lease on one GPU, as the lease metrics see
// it.
type LeaseHolder struct {
	UUID    string
	Project string
}

// WithLeases makes c export, per GPU, sygaldry_gpu_leased (1 while some
// container leases it, else 0) and sygaldry_gpu_lease_holders{project} (how
// many of a project's containers lease it; no sample for a free GPU).
// leases lists the leases held now, one LeaseHolder per container and GPU
// (package workspace's lease table, adapted in cmd/gateway).
func (c *Collector) WithLeases(leases func() []LeaseHolder) *Collector {
	c.leases = leases
	return c
}

var (
	labels      = []string{"index", "uuid"}
	descGPUs    = prometheus.NewDesc("sygaldry_gpus", "GPUs NVML reports on this host (0 without the NVIDIA driver).", nil, nil)
	descUtil    = prometheus.NewDesc("sygaldry_gpu_utilization_percent", "Share of the last sample period in which a kernel ran on the GPU.", labels, nil)
	descMemUsed = prometheus.NewDesc("sygaldry_gpu_memory_used_bytes", "GPU memory in use.", labels, nil)
	descMemTot  = prometheus.NewDesc("sygaldry_gpu_memory_total_bytes", "GPU memory installed.", labels, nil)
	descTemp    = prometheus.NewDesc("sygaldry_gpu_temperature_celsius", "GPU core temperature.", labels, nil)
	descHealthy = prometheus.NewDesc("sygaldry_gpu_healthy", "1 while no critical XID was seen on the GPU since the gateway started, else 0.", labels, nil)
	descLeased  = prometheus.NewDesc("sygaldry_gpu_leased", "1 while some container leases the GPU, else 0.", labels, nil)
	descHolders = prometheus.NewDesc("sygaldry_gpu_lease_holders", "Containers of the project that lease the GPU.", append(labels[:len(labels):len(labels)], "project"), nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descGPUs, descUtil, descMemUsed, descMemTot, descTemp, descHealthy, descLeased, descHolders} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	snap := c.inv.Snapshot()
	ch <- prometheus.MustNewConstMetric(descGPUs, prometheus.GaugeValue, float64(len(snap.Devices)))
	var holders map[string]map[string]int // UUID → project → containers
	if c.leases != nil {
		holders = map[string]map[string]int{}
		for _, l := range c.leases() {
			if holders[l.UUID] == nil {
				holders[l.UUID] = map[string]int{}
			}
			holders[l.UUID][l.Project]++
		}
	}
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
		if holders == nil {
			continue
		}
		leased := 0.0
		if d.UUID != "" && len(holders[d.UUID]) > 0 {
			leased = 1
			for project, n := range holders[d.UUID] {
				ch <- prometheus.MustNewConstMetric(descHolders, prometheus.GaugeValue, float64(n), append(lv, project)...)
			}
		}
		ch <- prometheus.MustNewConstMetric(descLeased, prometheus.GaugeValue, leased, lv...)
	}
}
