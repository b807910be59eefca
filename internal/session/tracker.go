package session

import (
	"sync"
	"time"

	"github.com/concord-dev/concord/internal/clock"
	"github.com/concord-dev/concord/internal/deadline"
)

// Tracker is the leader's view of session deadlines. It is active only while
// its member leads: Start gives every live session a full TTL, KeepAlive
// extends one, and Due returns the sessions whose TTL ran out so the leader
// can propose their expiry. It implements Observer, so the state machine
// tells it of new and ended sessions.
type Tracker struct {
	clock clock.Clock

	mu       sync.Mutex
	active   bool
	ttl      map[int64]time.Duration
	expiring map[int64]bool
	queue    *deadline.Queue[int64]
	wake     chan struct{}
}

// NewTracker returns an inactive tracker.
func NewTracker(c clock.Clock) *Tracker {
	return &Tracker{clock: c, ttl: map[int64]time.Duration{}, expiring: map[int64]bool{},
		queue: deadline.New[int64](), wake: make(chan struct{}, 1)}
}

// Start activates the tracker with every live session, each given a full TTL
// from now. The caller holds the state machine's read lock so that no
// session is created or ended between listing and activation.
func (t *Tracker) Start(live []Session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now()
	t.ttl = make(map[int64]time.Duration, len(live))
	t.expiring = map[int64]bool{}
	t.queue.Clear()
	for _, s := range live {
		t.addLocked(s.ID, time.Duration(s.TTLMillis)*time.Millisecond, now)
	}
	t.active = true
	t.signal()
}

// Stop deactivates the tracker, forgetting every deadline.
func (t *Tracker) Stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.active = false
	t.ttl = map[int64]time.Duration{}
	t.expiring = map[int64]bool{}
	t.queue.Clear()
}

// Active reports whether the tracker runs.
func (t *Tracker) Active() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.active
}

func (t *Tracker) addLocked(id int64, ttl time.Duration, now time.Time) {
	t.ttl[id] = ttl
	t.queue.Set(id, now.Add(ttl))
}

// Created implements Observer.
func (t *Tracker) Created(s Session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.active {
		return
	}
	t.addLocked(s.ID, time.Duration(s.TTLMillis)*time.Millisecond, t.clock.Now())
	t.signal()
}

// Ended implements Observer.
func (t *Tracker) Ended(id int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.ttl, id)
	delete(t.expiring, id)
	t.queue.Remove(id)
}

// KeepAliveAll gives each of ids a full TTL from now, as KeepAlive, under
// one hold of the tracker: ttls[i] is the TTL of ids[i], or -1 if that
// session is unknown or being expired. active is false, and nothing is
// extended, if the tracker is inactive (this member is not, or no longer,
// the leader): that says nothing of the sessions, which the caller must not
// answer as expired.
func (t *Tracker) KeepAliveAll(ids []int64) (ttls []time.Duration, active bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.active {
		return nil, false
	}
	now := t.clock.Now()
	ttls = make([]time.Duration, len(ids))
	for i, id := range ids {
		ttl, ok := t.ttl[id]
		if !ok || t.expiring[id] {
			ttls[i] = -1
			continue
		}
		t.queue.Set(id, now.Add(ttl))
		ttls[i] = ttl
	}
	return ttls, true
}

// KeepAlive gives a session a full TTL from now. The caller has confirmed
// its leadership after the request arrived. It returns the TTL, or false if
// the session is unknown, being expired, or the tracker is inactive.
func (t *Tracker) KeepAlive(id int64) (time.Duration, bool) {
	ttls, active := t.KeepAliveAll([]int64{id})
	if !active || ttls[0] < 0 {
		return 0, false
	}
	return ttls[0], true
}

// Remaining returns the time left of a session, and whether it is tracked.
func (t *Tracker) Remaining(id int64) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.queue.Get(id)
	if !t.active || !ok {
		return 0, false
	}
	return max(0, at.Sub(t.clock.Now())), true
}

// Due returns the sessions whose deadline has passed and marks them
// expiring (a keep-alive no longer saves them), and the time until the next
// deadline (at most a second).
func (t *Tracker) Due(maxIDs int) ([]int64, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.active {
		return nil, time.Second
	}
	now := t.clock.Now()
	due := t.queue.PopDue(now, maxIDs)
	for _, id := range due {
		t.expiring[id] = true
	}
	next := time.Second
	if at, ok := t.queue.Next(); ok {
		next = min(next, at.Sub(now))
	}
	return due, max(next, time.Millisecond)
}

// Retry puts sessions whose expiry proposal failed back under watch, due at
// once.
func (t *Tracker) Retry(ids []int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now()
	for _, id := range ids {
		if _, ok := t.ttl[id]; !ok || !t.expiring[id] {
			continue
		}
		delete(t.expiring, id)
		t.queue.Set(id, now)
	}
	t.signal()
}

// Wake returns a channel signalled when deadlines change.
func (t *Tracker) Wake() <-chan struct{} { return t.wake }

func (t *Tracker) signal() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}
