package gateway

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sygaldry/sygaldry/sessions"
)

// Metrics are the gateway's Prometheus metrics (served on
// server.metrics_listen). A nil *Metrics records nothing.
type Metrics struct {
	connections   prometheus.Counter
	refusals      prometheus.Counter
	authenticated prometheus.Gauge
	sessions      *prometheus.CounterVec
	bytes         *prometheus.CounterVec
	ensure        *prometheus.HistogramVec
}

// NewMetrics registers the gateway's metrics with reg. live, when not nil,
// is read at each scrape for the live sessions by project and kind.
func NewMetrics(reg prometheus.Registerer, live *sessions.Registry) *Metrics {
	m := &Metrics{
		connections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sygaldry_ssh_connections_total", Help: "TCP connections accepted by the SSH front.",
		}),
		refusals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sygaldry_ssh_key_refusals_total", Help: "Public keys refused (unknown key, unknown project, or not a member).",
		}),
		authenticated: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sygaldry_ssh_connections_authenticated", Help: "Authenticated connections open now.",
		}),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sygaldry_sessions_total", Help: "Channels (sessions, forwards) that ended, by kind.",
		}, []string{"kind"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sygaldry_session_bytes_total", Help: "Bytes carried by ended channels; in is client to container.",
		}, []string{"direction"}),
		ensure: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sygaldry_container_ensure_seconds", Help: "Time to get a running container for a connection, by outcome.",
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.connections, m.refusals, m.authenticated, m.sessions, m.bytes, m.ensure)
	if live != nil {
		reg.MustRegister(liveSessions{live})
	}
	return m
}

func (m *Metrics) connAccepted() {
	if m != nil {
		m.connections.Inc()
	}
}

func (m *Metrics) keyRefused() {
	if m != nil {
		m.refusals.Inc()
	}
}

func (m *Metrics) authDelta(d float64) {
	if m != nil {
		m.authenticated.Add(d)
	}
}

func (m *Metrics) sessionEnded(in sessions.Info) {
	if m != nil {
		m.sessions.WithLabelValues(in.Kind).Inc()
		m.bytes.WithLabelValues("in").Add(float64(in.BytesIn))
		m.bytes.WithLabelValues("out").Add(float64(in.BytesOut))
	}
}

func (m *Metrics) ensured(start time.Time, err error) {
	if m != nil {
		outcome := "ok"
		if err != nil {
			outcome = "error"
		}
		m.ensure.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	}
}

// liveSessions reports the registry's live sessions at scrape time, so the
// gauge can never drift from what `sygctl sessions` shows.
type liveSessions struct{ r *sessions.Registry }

var liveDesc = prometheus.NewDesc("sygaldry_sessions_live", "Live channels (sessions, forwards) by project and kind.",
	[]string{"project", "kind"}, nil)

func (l liveSessions) Describe(ch chan<- *prometheus.Desc) { ch <- liveDesc }

func (l liveSessions) Collect(ch chan<- prometheus.Metric) {
	counts := map[[2]string]int{}
	for _, in := range l.r.List() {
		if in.Kind == sessions.KindConnection {
			continue // a connection with no channel open: not a channel
		}
		counts[[2]string{in.Project, in.Kind}]++
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(liveDesc, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
}
