package fsm

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the state machine's Prometheus metrics, concord_fsm_*.
type Metrics struct {
	applyBatches    prometheus.Counter
	applyEntries    prometheus.Counter
	applySeconds    prometheus.Histogram
	snapshotSeconds prometheus.Histogram
	restoreSeconds  prometheus.Histogram
	snapshotBytes   prometheus.Gauge
	sessionsExpired prometheus.Counter
	reg             prometheus.Registerer
}

// NewMetrics declares the state machine's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		applyBatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concord_fsm_apply_batches_total", Help: "Batches of committed entries applied."}),
		applyEntries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concord_fsm_apply_entries_total", Help: "Committed entries applied."}),
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "concord_fsm_apply_batch_duration_seconds", Help: "Time to apply one batch of entries.",
			Buckets: prometheus.ExponentialBuckets(0.00001, 4, 10)}),
		snapshotSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "concord_fsm_snapshot_duration_seconds", Help: "Time to write a snapshot.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}),
		restoreSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "concord_fsm_restore_duration_seconds", Help: "Time to restore a snapshot.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}),
		snapshotBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "concord_fsm_snapshot_size_bytes", Help: "Size of the last snapshot written."}),
		sessionsExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concord_fsm_sessions_expired_total", Help: "Sessions ended by leader expiry."}),
		reg: reg,
	}
	reg.MustRegister(m.applyBatches, m.applyEntries, m.applySeconds, m.snapshotSeconds, m.restoreSeconds, m.snapshotBytes, m.sessionsExpired)
	return m
}

func (m *Metrics) attach(f *FSM) {
	gauge := func(name, help string, read func(State) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			var v float64
			f.Read(func(s State) { v = read(s) })
			return v
		})
	}
	m.reg.MustRegister(
		gauge("concord_fsm_keys", "Keys stored.", func(s State) float64 { return float64(s.KV.Len()) }),
		gauge("concord_fsm_state_bytes", "Accounted bytes of keys and values in memory.", func(s State) float64 { return float64(s.KV.Bytes()) }),
		gauge("concord_fsm_sessions", "Live sessions.", func(s State) float64 { return float64(s.Sessions.Len()) }),
		gauge("concord_fsm_applied_index", "Last applied Raft index.", func(s State) float64 { return float64(s.Applied) }),
		gauge("concord_fsm_rules_version", "Rules version the state machine applies entries by (raised by the leader once every member's build applies it).",
			func(s State) float64 { return float64(s.RulesVersion) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "concord_fsm_max_rules_version", Help: "Highest rules version this member's build applies."},
			func() float64 { return float64(f.MaxRulesVersion()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "concord_fsm_dedupe_entries", Help: "Remembered client request results."},
			func() float64 {
				f.mu.RLock()
				defer f.mu.RUnlock()
				return float64(f.dedupe.len())
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "concord_fsm_watch_history_compacted_revision", Help: "Highest revision no longer in the watch history."},
			func() float64 { return float64(f.history.Compacted()) }),
	)
}

func (m *Metrics) observeApply(entries int, d time.Duration) {
	m.applyBatches.Inc()
	m.applyEntries.Add(float64(entries))
	m.applySeconds.Observe(d.Seconds())
}
