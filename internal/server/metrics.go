package server

import "github.com/prometheus/client_golang/prometheus"

// metrics are the member's Prometheus metrics, concord_server_*.
type metrics struct {
	forwarded      *prometheus.CounterVec
	retries        prometheus.Counter
	readRounds     prometheus.Counter
	readBatch      prometheus.Histogram
	keepAlives     prometheus.Counter
	keepAliveMiss  prometheus.Counter
	expiryProposed prometheus.Counter
	promotions     prometheus.Counter
	foreignStreams prometheus.Counter
	foreignRPC     prometheus.Counter
	// lockLimitConfirmations counts acquires this member's state put
	// over --max-locks, confirmed by a read-index round before a refusal
	// (checkLockQuota).
	lockLimitConfirmations prometheus.Counter
	// holdCheckpoints counts grants whose counted hold time this leader
	// checkpointed (expireHolds).
	holdCheckpoints prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "concord_server_forwarded_total", Help: "Requests forwarded to the leader, by kind."}, []string{"kind"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concord_server_proposal_retries_total", Help: "Proposals retried after a leader change."}),
		readRounds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concord_server_read_index_rounds_total", Help: "Read-index rounds (each confirms leadership once for a batch of reads and keep-alives)."}),
		readBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "concord_server_read_index_batch_size", Help: "Requests served by one read-index round.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12)}),
		keepAlives: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concord_server_session_keepalives_total", Help: "Session keep-alives granted by this leader."}),
		keepAliveMiss: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concord_server_session_keepalive_misses_total", Help: "Keep-alives for sessions that no longer exist."}),
		expiryProposed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concord_server_session_expiries_proposed_total", Help: "Sessions whose expiry this leader proposed."}),
		promotions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concord_server_learner_promotions_total", Help: "Learners promoted to voters by this leader."}),
		foreignStreams: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concord_peer_raft_streams_refused_total", Help: "Raft connections this member refused because they came from a member of another cluster ID."}),
		foreignRPC: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concord_peer_rpc_connections_refused_total", Help: "Internal RPC connections (forwarded writes, read index, keep-alives, membership changes) this member refused because they came from a member of another cluster ID."}),
		lockLimitConfirmations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concord_server_lock_limit_confirmations_total", Help: "Acquires this member's state put over --max-locks that the state machine does not decide (no request ID, or below rules version 4), checked again after a read-index round before being refused."}),
		holdCheckpoints: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concord_server_lock_hold_checkpoints_total", Help: "Lock grants whose counted hold time this leader recorded in the log (--lock-hold-checkpoint), so that a new leader counts only the rest."}),
	}
	reg.MustRegister(m.forwarded, m.retries, m.readRounds, m.readBatch, m.keepAlives, m.keepAliveMiss, m.expiryProposed, m.promotions, m.foreignStreams, m.foreignRPC,
		m.lockLimitConfirmations, m.holdCheckpoints)
	return m
}
