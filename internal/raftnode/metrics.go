package raftnode

import (
	"errors"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/concord-dev/concord/internal/errs"
)

// Metrics are the Raft node's Prometheus metrics, concord_raft_*.
type Metrics struct {
	reg             prometheus.Registerer
	leaderChanges   prometheus.Counter
	proposalsFailed *prometheus.CounterVec
	proposeSeconds  prometheus.Histogram
	appendSeconds   prometheus.Histogram
	appendEntries   prometheus.Histogram
	deferred        prometheus.Counter
}

// NewMetrics declares the node's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reg: reg,
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concord_raft_leader_changes_total", Help: "Leaders this member came to know (a failover counts once)."}),
		proposalsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "concord_raft_proposals_failed_total", Help: "Proposals that failed, by reason."}, []string{"reason"}),
		proposeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "concord_raft_apply_duration_seconds", Help: "Time from proposal to application on the leader.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		appendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "concord_raft_log_append_duration_seconds", Help: "Time of one append to the Raft log store, fsync included.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16)}),
		appendEntries: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "concord_raft_log_append_entries", Help: "Entries per append to the Raft log store.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13)}),
		deferred: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concord_raft_proposals_deferred_total", Help: "Proposals handed to this leader as deferrable, to be written with the next one (lock acquires that will queue, --lock-queue-defer); concord_raft_proposals_parked_total counts those it held back."}),
	}
	reg.MustRegister(m.leaderChanges, m.proposalsFailed, m.proposeSeconds, m.appendSeconds, m.appendEntries, m.deferred)
	return m
}

func (m *Metrics) attach(n *Node) {
	g := func(name, help string, f func() float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "concord_raft_proposals_parked_total",
		Help: "Deferrable proposals this member's leader loop held back for company (the others arrived with a proposal that is not deferrable, and were written with it at once).",
	}, func() float64 { return float64(n.raft.DeferredParked()) }))
	g("concord_raft_state", "Raft state: 0 follower, 1 candidate, 2 leader, 3 shutdown.", func() float64 {
		switch n.raft.State() {
		case raft.Candidate:
			return 1
		case raft.Leader:
			return 2
		case raft.Shutdown:
			return 3
		default:
			return 0
		}
	})
	g("concord_raft_term", "Current Raft term.", func() float64 { return float64(n.raft.CurrentTerm()) })
	g("concord_raft_commit_index", "Commit index.", func() float64 { return float64(n.raft.CommitIndex()) })
	g("concord_raft_applied_index", "Index handed to the state machine.", func() float64 { return float64(n.raft.AppliedIndex()) })
	g("concord_raft_last_log_index", "Last index in the log.", func() float64 { return float64(n.raft.LastIndex()) })
	g("concord_raft_last_snapshot_index", "Index of the newest snapshot.", func() float64 { return float64(n.LastSnapshotIndex()) })
	g("concord_raft_has_leader", "1 if a leader is known.", func() float64 {
		if id, _ := n.Leader(); id != "" {
			return 1
		}
		return 0
	})
}

func reasonLabel(err error) string {
	var e *errs.Error
	if errors.As(err, &e) {
		return e.Reason()
	}
	return "other"
}
