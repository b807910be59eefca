package session

import (
	"container/heap"
	"sync"
	"time"

	"github.com/concord-dev/concord/internal/clock"
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
	sessions map[int64]*tracked
	queue    deadlineQueue
	wake     chan struct{}
}

type tracked struct {
	ttl      time.Duration
	deadline time.Time
	expiring bool
	index    int // position in the queue, -1 when not queued
}

// NewTracker returns an inactive tracker.
func NewTracker(c clock.Clock) *Tracker {
	return &Tracker{clock: c, sessions: map[int64]*tracked{}, wake: make(chan struct{}, 1)}
}

// Start activates the tracker with every live session, each given a full TTL
// from now. The caller holds the state machine's read lock so that no
// session is created or ended between listing and activation.
func (t *Tracker) Start(live []Session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now()
	t.sessions = make(map[int64]*tracked, len(live))
	t.queue = t.queue[:0]
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
	t.sessions = map[int64]*tracked{}
	t.queue = nil
}

// Active reports whether the tracker runs.
func (t *Tracker) Active() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.active
}

func (t *Tracker) addLocked(id int64, ttl time.Duration, now time.Time) {
	tr := &tracked{ttl: ttl, deadline: now.Add(ttl), index: -1}
	t.sessions[id] = tr
	heap.Push(&t.queue, queued{id: id, tr: tr})
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
	tr, ok := t.sessions[id]
	if !ok {
		return
	}
	delete(t.sessions, id)
	if tr.index >= 0 {
		heap.Remove(&t.queue, tr.index)
	}
}

// KeepAlive gives a session a full TTL from now. The caller has confirmed
// its leadership after the request arrived. It returns the TTL, or false if
// the session is unknown, being expired, or the tracker is inactive.
func (t *Tracker) KeepAlive(id int64) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tr, ok := t.sessions[id]
	if !t.active || !ok || tr.expiring {
		return 0, false
	}
	tr.deadline = t.clock.Now().Add(tr.ttl)
	if tr.index >= 0 {
		heap.Fix(&t.queue, tr.index)
	}
	return tr.ttl, true
}

// Remaining returns the time left of a session, and whether it is tracked.
func (t *Tracker) Remaining(id int64) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tr, ok := t.sessions[id]
	if !t.active || !ok {
		return 0, false
	}
	return max(0, tr.deadline.Sub(t.clock.Now())), true
}

// Due returns the sessions whose deadline has passed and marks them
// expiring (a keep-alive no longer saves them), and the time until the next
// deadline.
func (t *Tracker) Due(maxIDs int) ([]int64, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.active {
		return nil, time.Second
	}
	now := t.clock.Now()
	var due []int64
	for len(t.queue) > 0 && len(due) < maxIDs {
		head := t.queue[0]
		if head.tr.deadline.After(now) {
			break
		}
		heap.Pop(&t.queue)
		head.tr.expiring = true
		due = append(due, head.id)
	}
	next := time.Second
	if len(t.queue) > 0 {
		next = min(next, t.queue[0].tr.deadline.Sub(now))
	}
	return due, max(next, time.Millisecond)
}

// Retry puts sessions whose expiry proposal failed back under watch, with
// their deadlines unchanged (so they are due again at once).
func (t *Tracker) Retry(ids []int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range ids {
		tr, ok := t.sessions[id]
		if !ok || !tr.expiring {
			continue
		}
		tr.expiring = false
		heap.Push(&t.queue, queued{id: id, tr: tr})
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

type queued struct {
	id int64
	tr *tracked
}

type deadlineQueue []queued

func (q deadlineQueue) Len() int { return len(q) }
func (q deadlineQueue) Less(i, j int) bool {
	if q[i].tr.deadline.Equal(q[j].tr.deadline) {
		return q[i].id < q[j].id
	}
	return q[i].tr.deadline.Before(q[j].tr.deadline)
}
func (q deadlineQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].tr.index = i
	q[j].tr.index = j
}
func (q *deadlineQueue) Push(x any) {
	it := x.(queued)
	it.tr.index = len(*q)
	*q = append(*q, it)
}
func (q *deadlineQueue) Pop() any {
	old := *q
	it := old[len(old)-1]
	it.tr.index = -1
	*q = old[:len(old)-1]
	return it
}
