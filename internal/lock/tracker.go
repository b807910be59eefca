package lock

import (
	"strconv"
	"sync"
	"time"

	"github.com/concord-dev/concord/internal/clock"
	"github.com/concord-dev/concord/internal/deadline"
)

// HoldRef names one grant on one lock. Readers, or semaphore holders,
// granted by one command share its token, so the token alone does not
// name a grant: the session and owner do the rest.
type HoldRef struct {
	Name    string
	Token   uint64
	Session int64
	Owner   string
}

// key is h as a map key. The name's length leads: a name may hold any byte,
// so without it two different refs could make the same key.
func (h HoldRef) key() string {
	return strconv.Itoa(len(h.Name)) + ":" + h.Name + "\x00" + strconv.FormatUint(h.Token, 10) + "\x00" + strconv.FormatInt(h.Session, 10) + "\x00" + h.Owner
}

// HoldTracker is the leader's timer of grants with a hold time. Like session
// TTLs, hold times restart on a new leader: Start gives every such grant its
// full hold time from then, so a leader change never shortens one.
type HoldTracker struct {
	clock clock.Clock

	mu     sync.Mutex
	active bool
	refs   map[string]HoldRef
	queue  *deadline.Queue[string]
	wake   chan struct{}
}

// NewHoldTracker returns an inactive tracker.
func NewHoldTracker(c clock.Clock) *HoldTracker {
	return &HoldTracker{clock: c, refs: map[string]HoldRef{}, queue: deadline.New[string](), wake: make(chan struct{}, 1)}
}

// Start activates the tracker with every grant that has a hold time.
func (t *HoldTracker) Start(holds []Grant) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refs = map[string]HoldRef{}
	t.queue.Clear()
	now := t.clock.Now()
	for _, g := range holds {
		t.addLocked(g, now)
	}
	t.active = true
	t.signal()
}

// Replace restarts an active tracker with holds, the grants of a state
// that replaced the one it followed (a snapshot the leader restored): like
// Start, every grant gets its full hold time from now.
func (t *HoldTracker) Replace(holds []Grant) {
	t.mu.Lock()
	active := t.active
	t.mu.Unlock()
	if active {
		t.Start(holds)
	}
}

// Stop deactivates the tracker.
func (t *HoldTracker) Stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.active = false
	t.refs = map[string]HoldRef{}
	t.queue.Clear()
}

func (t *HoldTracker) addLocked(g Grant, now time.Time) {
	ref := HoldRef{Name: g.Name, Token: g.Token, Session: g.Session, Owner: g.Owner}
	t.refs[ref.key()] = ref
	t.queue.Set(ref.key(), now.Add(time.Duration(g.HoldMs)*time.Millisecond))
}

// Granted follows a new grant.
func (t *HoldTracker) Granted(g Grant) {
	if g.HoldMs <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.active {
		return
	}
	t.addLocked(g, t.clock.Now())
	t.signal()
}

// Released follows the end of a grant.
func (t *HoldTracker) Released(r Release) {
	if r.HoldMs <= 0 {
		return // never tracked
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.active {
		return
	}
	key := HoldRef{Name: r.Name, Token: r.Token, Session: r.Session, Owner: r.Owner}.key()
	delete(t.refs, key)
	t.queue.Remove(key)
}

// Due returns the grants whose hold time ran out and the time until the
// next one (at most a second).
func (t *HoldTracker) Due(limit int) ([]HoldRef, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.active {
		return nil, time.Second
	}
	now := t.clock.Now()
	var out []HoldRef
	for _, k := range t.queue.PopDue(now, limit) {
		out = append(out, t.refs[k])
		delete(t.refs, k)
	}
	next := time.Second
	if at, ok := t.queue.Next(); ok {
		next = min(next, at.Sub(now))
	}
	return out, max(next, time.Millisecond)
}

// Retry puts grants whose release proposal failed back, due at once.
func (t *HoldTracker) Retry(refs []HoldRef) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now()
	for _, r := range refs {
		t.refs[r.key()] = r
		t.queue.Set(r.key(), now)
	}
	t.signal()
}

// Wake is signalled when deadlines change.
func (t *HoldTracker) Wake() <-chan struct{} { return t.wake }

func (t *HoldTracker) signal() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}
