package server

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/concord-dev/concord/internal/fsm"
	"github.com/concord-dev/concord/internal/lock"
)

// lockEvent tells a waiting or holding stream what happened.
type lockEvent struct {
	granted bool
	token   uint64
	reason  string
	at      time.Time
	// replaced: the member installed a snapshot; look at the state again.
	replaced bool
	// handedOff (a grant) is set by the first stream that takes the grant,
	// which alone times the handoff: several may follow one waiter.
	handedOff *atomic.Bool
}

// firstToHandOff reports whether this taker of grant event ev is the first.
func (ev lockEvent) firstToHandOff() bool {
	return ev.handedOff != nil && ev.handedOff.CompareAndSwap(false, true)
}

// lockHub pushes grants and losses to the streams that wait for them. The
// state machine calls it (through lock.Observer) on every member as commands
// apply, so whichever member serves a client's stream learns of the grant as
// soon as it applies the releasing command: no polling, no herd.
//
// Several streams may follow one waiter or one grant at a time: a client
// whose stream broke resumes on a new one while the old one's handler may
// still be on its way out, and that handler must not unregister the new
// stream.
type lockHub struct {
	mu      sync.Mutex
	waiters subscribers[uint64]
	holders subscribers[string]
	holds   *lock.HoldTracker
	m       *lockMetrics
}

// subscribers holds, per key, the channels of the streams that follow it.
type subscribers[K comparable] map[K]map[chan lockEvent]struct{}

func (s subscribers[K]) add(k K) chan lockEvent {
	ch := make(chan lockEvent, 1)
	if s[k] == nil {
		s[k] = map[chan lockEvent]struct{}{}
	}
	s[k][ch] = struct{}{}
	return ch
}

func (s subscribers[K]) remove(k K, ch chan lockEvent) {
	delete(s[k], ch)
	if len(s[k]) == 0 {
		delete(s, k)
	}
}

func (s subscribers[K]) notify(k K, ev lockEvent) {
	for ch := range s[k] {
		select {
		case ch <- ev:
		default:
		}
	}
}

func holdKey(name string, token uint64, session int64, owner string) string {
	// The name's length leads: a name may hold any byte, so without it
	// two different grants could make the same key.
	return strconv.Itoa(len(name)) + ":" + name + "\x00" + strconv.FormatUint(token, 10) + "\x00" + strconv.FormatInt(session, 10) + "\x00" + owner
}

func newLockHub(holds *lock.HoldTracker, m *lockMetrics) *lockHub {
	return &lockHub{waiters: subscribers[uint64]{}, holders: subscribers[string]{}, holds: holds, m: m}
}

// waitFor registers interest in waiter id's fate.
func (h *lockHub) waitFor(id uint64) chan lockEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.waiters.add(id)
}

func (h *lockHub) forgetWaiter(id uint64, ch chan lockEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.waiters.remove(id, ch)
}

// watchHold registers interest in the end of a grant.
func (h *lockHub) watchHold(key string) chan lockEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.holders.add(key)
}

func (h *lockHub) forgetHold(key string, ch chan lockEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.holders.remove(key, ch)
}

// Granted implements lock.Observer.
func (h *lockHub) Granted(g lock.Grant) {
	h.holds.Granted(g)
	if g.Part == 0 { // a grant of several locks counts once
		h.m.grants.Inc()
	}
	if g.Waiter != 0 && g.Part == 0 { // the parts of a grant of several locks share its waiter
		h.m.waitSeconds.Observe(float64(g.WaitedMs) / 1000)
		h.mu.Lock()
		h.waiters.notify(g.Waiter, lockEvent{granted: true, token: g.Token, at: time.Now(), handedOff: new(atomic.Bool)})
		h.mu.Unlock()
	}
}

// Released implements lock.Observer.
func (h *lockHub) Released(r lock.Release) {
	h.holds.Released(r)
	h.m.releases.WithLabelValues(r.Reason).Inc()
	h.m.holdSeconds.Observe(float64(r.HeldMs) / 1000)
	h.mu.Lock()
	if len(h.holders) > 0 { // most grants are followed by their client alone
		h.holders.notify(holdKey(r.Name, r.Token, r.Session, r.Owner), lockEvent{reason: r.Reason, at: time.Now()})
	}
	h.mu.Unlock()
}

// Replaced implements lock.Observer: after a snapshot, every follower looks
// at the state again, since the grants and losses in it were never
// reported one by one.
func (h *lockHub) Replaced(holds []lock.Grant) {
	h.holds.Replace(holds)
	ev := lockEvent{replaced: true, reason: "not queued in the snapshot this member installed", at: time.Now()}
	h.mu.Lock()
	for id := range h.waiters {
		h.waiters.notify(id, ev)
	}
	for k := range h.holders {
		h.holders.notify(k, ev)
	}
	h.mu.Unlock()
}

// Dequeued implements lock.Observer.
func (h *lockHub) Dequeued(waiter uint64, reason string) {
	h.mu.Lock()
	h.waiters.notify(waiter, lockEvent{reason: reason, at: time.Now()})
	h.mu.Unlock()
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
			Name: "concord_lock_releases_total", Help: "Lock grants ended, by reason (released, session ended, hold time ended, force-released, upgraded); a grant of several locks counts once per lock."}, []string{"reason"}),
		waitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "concord_lock_wait_seconds", Help: "Time waiters spent queued before their grant (leader's clock).", Buckets: buckets}),
		holdSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "concord_lock_hold_seconds", Help: "Time grants were held (leader's clock), once per lock.", Buckets: buckets}),
		handoffSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "concord_lock_handoff_seconds", Help: "Time from applying the command that granted a queued waiter to pushing the grant on its stream.", Buckets: buckets}),
		forced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concord_lock_force_releases_total", Help: "Force-releases requested through this member."}),
	}
	reg.MustRegister(m.grants, m.releases, m.waitSeconds, m.holdSeconds, m.handoffSeconds, m.forced)
	return m
}

var (
	descLocks       = prometheus.NewDesc("concord_lock_locks", "Locks held or waited on, in this member's state machine.", nil, nil)
	descLockHolders = prometheus.NewDesc("concord_lock_holders", "Grants held, over every lock (a semaphore with three holders counts three).", nil, nil)
	descLockWaiters = prometheus.NewDesc("concord_lock_waiters", "Acquires queued for a grant.", nil, nil)
)

// lockCollector reports the lock table's sizes when scraped.
type lockCollector struct{ s *Server }

func (c lockCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descLocks
	ch <- descLockHolders
	ch <- descLockWaiters
}

func (c lockCollector) Collect(ch chan<- prometheus.Metric) {
	var locks, holders, waiters int
	c.s.fsm.Read(func(st fsm.State) {
		locks, waiters = st.Locks.Len()
		holders = st.Locks.Holders()
	})
	ch <- prometheus.MustNewConstMetric(descLocks, prometheus.GaugeValue, float64(locks))
	ch <- prometheus.MustNewConstMetric(descLockHolders, prometheus.GaugeValue, float64(holders))
	ch <- prometheus.MustNewConstMetric(descLockWaiters, prometheus.GaugeValue, float64(waiters))
}
