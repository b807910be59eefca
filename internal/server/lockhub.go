package server

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/concord-dev/concord/internal/lock"
)

// lockEvent tells a waiting or holding stream what happened.
type lockEvent struct {
	granted bool
	token   uint64
	reason  string
	at      time.Time
}

// lockHub pushes grants and losses to the streams that wait for them. The
// state machine calls it (through lock.Observer) on every member as commands
// apply, so whichever member serves a client's stream learns of the grant as
// soon as it applies the releasing command: no polling, no herd.
type lockHub struct {
	mu      sync.Mutex
	waiters map[uint64]chan lockEvent
	holders map[string]chan lockEvent
	holds   *lock.HoldTracker
	m       *lockMetrics
}

func holdKey(name string, token uint64, session int64, owner string) string {
	return name + "\x00" + strconv.FormatUint(token, 10) + "\x00" + strconv.FormatInt(session, 10) + "\x00" + owner
}

func newLockHub(holds *lock.HoldTracker, m *lockMetrics) *lockHub {
	return &lockHub{waiters: map[uint64]chan lockEvent{}, holders: map[string]chan lockEvent{}, holds: holds, m: m}
}

// waitFor registers interest in waiter id's fate.
func (h *lockHub) waitFor(id uint64) chan lockEvent {
	ch := make(chan lockEvent, 1)
	h.mu.Lock()
	h.waiters[id] = ch
	h.mu.Unlock()
	return ch
}

func (h *lockHub) forgetWaiter(id uint64, ch chan lockEvent) {
	h.mu.Lock()
	if h.waiters[id] == ch {
		delete(h.waiters, id)
	}
	h.mu.Unlock()
}

// watchHold registers interest in the end of a grant.
func (h *lockHub) watchHold(key string) chan lockEvent {
	ch := make(chan lockEvent, 1)
	h.mu.Lock()
	h.holders[key] = ch
	h.mu.Unlock()
	return ch
}

func (h *lockHub) forgetHold(key string, ch chan lockEvent) {
	h.mu.Lock()
	if h.holders[key] == ch {
		delete(h.holders, key)
	}
	h.mu.Unlock()
}

func notify(ch chan lockEvent, ev lockEvent) {
	select {
	case ch <- ev:
	default:
	}
}

// Granted implements lock.Observer.
func (h *lockHub) Granted(g lock.Grant) {
	h.holds.Granted(g)
	h.m.grants.Inc()
	if g.Waiter != 0 {
		h.m.waitSeconds.Observe(float64(g.WaitedMs) / 1000)
	}
	h.mu.Lock()
	ch := h.waiters[g.Waiter]
	h.mu.Unlock()
	if ch != nil {
		notify(ch, lockEvent{granted: true, token: g.Token, at: time.Now()})
	}
}

// Released implements lock.Observer.
func (h *lockHub) Released(r lock.Release) {
	h.holds.Released(r)
	h.m.releases.WithLabelValues(r.Reason).Inc()
	h.m.holdSeconds.Observe(float64(r.HeldMs) / 1000)
	h.mu.Lock()
	ch := h.holders[holdKey(r.Name, r.Token, r.Session, r.Owner)]
	h.mu.Unlock()
	if ch != nil {
		notify(ch, lockEvent{reason: r.Reason, at: time.Now()})
	}
}

// Dequeued implements lock.Observer.
func (h *lockHub) Dequeued(waiter uint64, reason string) {
	h.mu.Lock()
	ch := h.waiters[waiter]
	h.mu.Unlock()
	if ch != nil {
		notify(ch, lockEvent{reason: reason, at: time.Now()})
	}
}

// lockMetrics are the lock capability's metrics, concord_lock_*.
type lockMetrics struct {
	grants         prometheus.Counter
	releases       *prometheus.CounterVec
	waitSeconds    prometheus.Histogram
	holdSeconds    prometheus.Histogram
	handoffSeconds prometheus.Histogram
	forced         prometheus.Counter
}

func newLockMetrics(reg prometheus.Registerer) *lockMetrics {
	buckets := prometheus.ExponentialBuckets(0.0005, 2, 18)
	m := &lockMetrics{
		grants: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concord_lock_grants_total", Help: "Lock grants applied by this member."}),
		releases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "concord_lock_releases_total", Help: "Lock grants ended, by reason (released, session ended, hold time ended, force-released)."}, []string{"reason"}),
		waitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "concord_lock_wait_seconds", Help: "Time waiters spent queued before their grant (leader's clock).", Buckets: buckets}),
		holdSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "concord_lock_hold_seconds", Help: "Time grants were held (leader's clock).", Buckets: buckets}),
		handoffSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "concord_lock_handoff_seconds", Help: "Time from applying the command that granted a queued waiter to pushing the grant on its stream.", Buckets: buckets}),
		forced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concord_lock_force_releases_total", Help: "Force-releases requested through this member."}),
	}
	reg.MustRegister(m.grants, m.releases, m.waitSeconds, m.holdSeconds, m.handoffSeconds, m.forced)
	return m
}
