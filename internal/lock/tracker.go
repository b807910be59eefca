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

// HoldCheckpoint is a grant's hold time as far as leaders have counted it.
type HoldCheckpoint struct {
	Ref       HoldRef
	CountedMs int64
}

// HoldTracker is the leader's timer of grants with a hold time. Like session
// TTLs, hold times are counted on the leader's clock, and a new leader
// cannot know how far its predecessor's clock had counted: Start gives
// every such grant the rest of its hold time after what leaders
// checkpointed (Grant.HoldCountedMs), so a leader change never shortens
// one. With checkpoints every d (SetCheckpointEvery), the leader reports
// how much it has counted of each grant whose hold time has more than d
// left (DueCheckpoints), so that a leader change lengthens a hold by about
// d (and the time without a leader), not by a whole hold time.
type HoldTracker struct {
	clock clock.Clock

	mu     sync.Mutex
	active bool
	every  time.Duration
	refs   map[string]*tracked
	queue  *deadline.Queue[string] // hold times' ends
	checks *deadline.Queue[string] // checkpoints due
	wake   chan struct{}
}

// tracked is a grant the tracker counts the hold time of.
type tracked struct {
	ref    HoldRef
	holdMs int64
	// start is when this leader began counting; base is what leaders had
	// counted and checkpointed before (the grant's HoldCountedMs then).
	start time.Time
	base  int64
	// sent is the highest count proposed as a checkpoint.
	sent int64
}

// NewHoldTracker returns an inactive tracker, without checkpoints.
func NewHoldTracker(c clock.Clock) *HoldTracker {
	return &HoldTracker{clock: c, refs: map[string]*tracked{}, queue: deadline.New[string](), checks: deadline.New[string](),
		wake: make(chan struct{}, 1)}
}

// SetCheckpointEvery sets how often a grant's count is checkpointed (0:
// never). It applies to grants tracked from then on.
func (t *HoldTracker) SetCheckpointEvery(d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.every = max(d, 0)
}

// Start activates the tracker with every grant that has a hold time.
func (t *HoldTracker) Start(holds []Grant) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.clearLocked()
	now := t.clock.Now()
	for _, g := range holds {
		t.addLocked(g, now)
	}
	t.active = true
	t.signal()
}

// Replace restarts an active tracker with holds, the grants of a state
// that replaced the one it followed (a snapshot the leader restored): like
// Start, every grant gets the rest of its hold time from now.
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
	t.clearLocked()
}

func (t *HoldTracker) clearLocked() {
	t.refs = map[string]*tracked{}
	t.queue.Clear()
	t.checks.Clear()
}

func (t *HoldTracker) addLocked(g Grant, now time.Time) {
	ref := HoldRef{Name: g.Name, Token: g.Token, Session: g.Session, Owner: g.Owner}
	base := min(max(g.HoldCountedMs, 0), g.HoldMs)
	k := ref.key()
	t.refs[k] = &tracked{ref: ref, holdMs: g.HoldMs, start: now, base: base, sent: base}
	t.queue.Set(k, now.Add(time.Duration(g.HoldMs-base)*time.Millisecond))
	t.checks.Remove(k)
	t.scheduleLocked(k, g.HoldMs-base, now)
}

// scheduleLocked sets the next checkpoint of the grant at key k, whose
// hold time has leftMs to go at now, unless it ends before.
func (t *HoldTracker) scheduleLocked(k string, leftMs int64, now time.Time) {
	if t.every > 0 && time.Duration(leftMs)*time.Millisecond > t.every {
		t.checks.Set(k, now.Add(t.every))
	}
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
	t.checks.Remove(key)
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
		out = append(out, t.refs[k].ref)
		delete(t.refs, k)
		t.checks.Remove(k)
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
		t.refs[r.key()] = &tracked{ref: r, start: now}
		t.queue.Set(r.key(), now)
	}
	t.signal()
}

// DueCheckpoints returns the grants whose count is due to be checkpointed,
// with what this leader has counted of them (what leaders checkpointed
// before it began, and the whole milliseconds since), and the time until
// the next one is due (at most a second). Each is due again after the
// interval, while its hold time has more than that left.
func (t *HoldTracker) DueCheckpoints(limit int) ([]HoldCheckpoint, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.active {
		return nil, time.Second
	}
	now := t.clock.Now()
	var out []HoldCheckpoint
	for _, k := range t.checks.PopDue(now, limit) {
		tr := t.refs[k]
		if tr == nil {
			continue
		}
		counted := min(tr.base+now.Sub(tr.start).Milliseconds(), tr.holdMs)
		if counted > tr.sent {
			out = append(out, HoldCheckpoint{Ref: tr.ref, CountedMs: counted})
			tr.sent = counted
		}
		t.scheduleLocked(k, tr.holdMs-counted, now)
	}
	next := time.Second
	if at, ok := t.checks.Next(); ok {
		next = min(next, at.Sub(now))
	}
	return out, max(next, time.Millisecond)
}

// Wake is signalled when deadlines change.
func (t *HoldTracker) Wake() <-chan struct{} { return t.wake }

func (t *HoldTracker) signal() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}
