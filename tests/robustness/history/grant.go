package history

import "sync"

// Grant is one grant the SDK handed to a client (a *client.Grant, or a
// concurrency.Mutex's hold), followed until it ended as its holder saw it:
// when its Lost channel closed and why, what the SDK's session deadline
// was then, and when the holder itself gave it up. All times are readings
// of the run's Clock. The loss-notice checker (checker.CheckLossNotice)
// reads them: the SDK promises that a grant's Lost fires, or at least is
// due by its own deadline, before anyone else can be granted the lock.
type Grant struct {
	Workload string `json:"workload"`
	Process  int    `json:"process"`
	Owner    string `json:"owner"`
	Session  int64  `json:"session"`
	// TTL is the session's TTL in milliseconds.
	TTL int64 `json:"ttl_ms"`
	// Locks are the names of the locks granted together.
	Locks []string `json:"locks"`
	// Capacity is what each lock holds at once, as permits (1 for a
	// mutex, the capacity of a semaphore, checker.RWCapacity for a
	// read-write lock), and Permits the permits the grant takes of each
	// (a reader 1, a writer all of them).
	Capacity int    `json:"capacity"`
	Permits  int    `json:"permits"`
	Token    uint64 `json:"token"`
	// HoldMs is the hold time the acquire asked for, in milliseconds.
	HoldMs int64 `json:"hold_ms,omitempty"`
	// Call is when the acquire was invoked (for a grant of a conversion
	// that kept the token, the original acquire's: the hold clock runs
	// from it); Granted is when the acquire returned it to the client.
	Call    int64 `json:"call"`
	Granted int64 `json:"granted"`

	// Lost is when the grant's Lost channel closed (0: not during the
	// run); Cause is its context's cause then; LostDeadline is the
	// session's Deadline() sampled then (for a session that ended by
	// expiry, its last deadline).
	Lost         int64  `json:"lost,omitempty"`
	Cause        string `json:"cause,omitempty"`
	LostDeadline int64  `json:"lost_deadline,omitempty"`
	// Ended is when the holder itself gave the grant up: invoked its
	// release, or a conversion (0: never); EndDeadline is the session's
	// Deadline() sampled then. Released reports that the release was
	// acknowledged.
	Ended       int64 `json:"ended,omitempty"`
	EndDeadline int64 `json:"end_deadline,omitempty"`
	Released    bool  `json:"released,omitempty"`
}

// GrantTrack follows a grant while it is held; its methods are safe for
// concurrent use (the SDK ends a grant on goroutines of its own).
type GrantTrack struct {
	mu sync.Mutex
	g  Grant
}

// TrackGrant starts following g.
func (r *Recorder) TrackGrant(g Grant) *GrantTrack {
	t := &GrantTrack{g: g}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.grants = append(r.grants, t)
	return t
}

// Lost records that the grant's Lost channel closed at at, with cause,
// while the session's deadline was deadline. Only the first call counts.
func (t *GrantTrack) Lost(at int64, cause string, deadline int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.g.Lost == 0 {
		t.g.Lost, t.g.Cause, t.g.LostDeadline = at, cause, deadline
	}
}

// End records that the holder gave the grant up at at (invoked its
// release or a conversion), while the session's deadline was deadline.
// Only the first call counts.
func (t *GrantTrack) End(at, deadline int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.g.Ended == 0 {
		t.g.Ended, t.g.EndDeadline = at, deadline
	}
}

// Released records that the holder's release was acknowledged.
func (t *GrantTrack) Released() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.g.Released = true
}

// Snapshot returns the grant as recorded so far.
func (t *GrantTrack) Snapshot() Grant {
	t.mu.Lock()
	defer t.mu.Unlock()
	g := t.g
	g.Locks = append([]string(nil), g.Locks...)
	return g
}
