package lock

import (
	"cmp"
	"fmt"
	"iter"
	"slices"

	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/session"
)

// Kind is what sort of lock an object is.
type Kind uint8

// Lock kinds.
const (
	KindMutex Kind = iota + 1
	KindRW
	KindSemaphore
)

func (k Kind) String() string {
	switch k {
	case KindMutex:
		return "mutex"
	case KindRW:
		return "rwlock"
	case KindSemaphore:
		return "semaphore"
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Mode is how a claim holds a lock: a writer (or mutex holder) holds it
// exclusively, readers and semaphore holders share it.
type Mode uint8

// Modes.
const (
	Exclusive Mode = iota + 1
	Shared
)

// MaxClaims bounds the locks one request may claim at once.
const MaxClaims = 64

// MaxCapacity bounds a semaphore's permits.
const MaxCapacity = 1<<31 - 1

// Claim is one lock a request wants.
type Claim struct {
	Name string
	Kind Kind
	Mode Mode
	// Permits taken from a semaphore (1 or more); 1 for other kinds.
	Permits int64
	// Capacity is a semaphore's total permits, fixed when it is created.
	Capacity int64
}

// Holder is one grant.
type Holder struct {
	Session     int64
	Owner       string
	Token       uint64
	Mode        Mode
	Permits     int64
	SinceUnixMs int64
	// HoldMs, when positive, is how long the grant lasts before the leader
	// releases it even though its session lives.
	HoldMs int64
	// HoldCountedMs is the part of HoldMs a leader has counted and
	// checkpointed (CheckpointHold): a new leader counts only the rest.
	HoldCountedMs int64
}

// Waiter is one queued request. Its ID is the index of the command that
// queued it.
type Waiter struct {
	ID          uint64
	Session     int64
	Owner       string
	Claims      []Claim
	HoldMs      int64
	SinceUnixMs int64
}

// Lock is one lock object.
type Lock struct {
	Name     string
	Kind     Kind
	Capacity int64
	Holders  []*Holder
	Queue    []uint64
}

// ForceRecord remembers an administrative force-release.
type ForceRecord struct {
	Name      string
	Token     uint64
	Session   int64
	Owner     string
	AtUnixMs  int64
	Reason    string
	Revision  uint64
	HeldSince int64
	// ByClient is the client ID of the caller.
	ByClient string
}

// forceHistory bounds the force-release records kept.
const forceHistory = 100

// endHistory bounds the recent ends of grants that their owners did not
// release (hold time, session, upgrade) the table remembers to name them.
const endHistory = 4096

// endRecord is a grant's end its owner did not ask for, kept to say how
// the grant ended when its owner asks after it (EndReason). Unlike the
// force-release records it is not replicated state: it is neither in
// snapshots nor in the state hash, starts empty on every member, and only
// words answers.
type endRecord struct {
	token   uint64
	session int64
	owner   string
	reason  string
}

// State is what an acquire achieved.
type State uint8

// Acquire outcomes.
const (
	Granted State = iota + 1
	Queued
	NotAcquired
	Lost
)

// Outcome is the result of an acquire.
type Outcome struct {
	State    State
	Token    uint64
	Waiter   uint64
	Position int
	// Converted, for a grant that converted the owner's grant in place, is
	// the token of the grant converted: the read grant an upgrade replaced,
	// or the write grant a downgrade kept (then Token too). It is 0 for a
	// grant made anew or held already in the mode asked.
	Converted uint64
	// Reason explains Lost, when the table gives one.
	Reason string
}

// Request asks for one or more locks.
type Request struct {
	Claims  []Claim
	Session int64
	Owner   string
	// Wait queues the request when it cannot be granted at once; without it
	// the request is a try-lock.
	Wait   bool
	HoldMs int64
	// ResumeToken, when set, only confirms an existing grant with that
	// token (Granted) or reports it gone (Lost); it never queues.
	ResumeToken uint64
	// Conversion marks a request that converts the owner's grant of its
	// one read-write lock in place (an upgrade or a downgrade): if the
	// owner holds no grant of the lock, it is Lost (ReasonConvertedEnded)
	// and takes nothing, rather than being granted anew or queued.
	Conversion bool
	// Admit, when set, is asked before the request takes anything new (a
	// grant or a place in a queue, and the locks it creates), once it is
	// known to be valid and to take something, with the table's entries
	// and what the request adds (Entries; Additions counts alike). An
	// error refuses the request, which then takes nothing. It must decide
	// from its arguments and the log entry alone: every member asks it.
	Admit func(entries, adds int) error
}

// Release reasons, as reported to observers.
const (
	ReasonReleased     = "released"
	ReasonSessionEnded = "session ended"
	ReasonHoldTime     = "hold time ended"
	ReasonForced       = "force-released"
	// ReasonUpgraded ends a read grant its owner upgraded in place: the
	// write grant that replaces it has a token of its own.
	ReasonUpgraded = "upgraded"
	// ReasonConvertedEnded answers a conversion whose owner holds no grant
	// of the lock any more: the grant it was to convert had ended.
	ReasonConvertedEnded = "converted grant ended"
)

// Grant tells an observer a waiter or requester was granted a lock.
type Grant struct {
	Name    string
	Session int64
	Owner   string
	Waiter  uint64
	Token   uint64
	HoldMs  int64
	Since   int64
	// HoldCountedMs is the part of HoldMs leaders have counted and
	// checkpointed (0 for a grant just made).
	HoldCountedMs int64
	// WaitedMs is how long the waiter queued, in state machine time.
	WaitedMs int64
	// Part is the lock's place among those the grant took (0 for the
	// first): a grant of several locks is told once per lock.
	Part int
}

// Release tells an observer a grant ended.
type Release struct {
	Name    string
	Session int64
	Owner   string
	Token   uint64
	Reason  string
	HeldMs  int64
	HoldMs  int64
	Revoked bool
}

// Observer follows grants and releases from outside the state machine. Its
// methods are called while a command applies and must not block.
type Observer interface {
	Granted(g Grant)
	Released(r Release)
	Dequeued(waiter uint64, reason string)
	// Replaced tells that the whole table was replaced (a snapshot was
	// installed): grants and losses it holds were never reported one by
	// one, so whoever follows a waiter or a grant must look again. holds
	// are the grants with a hold time it holds.
	Replaced(holds []Grant)
}

// SessionChecker tells whether a session is live.
type SessionChecker interface {
	Exists(id int64) bool
}

// Table holds every lock and waiter.
type Table struct {
	locks     map[string]*Lock
	waiters   map[uint64]*Waiter
	bySession map[int64]map[string]struct{}
	forced    []ForceRecord
	// ends is a ring of the latest endHistory endRecords; endNext is the
	// slot the next one takes.
	ends     []endRecord
	endNext  int
	holders  int // grants held, summed over locks
	queued   int // places in queues, summed over locks (a waiter of n locks takes n)
	sessions SessionChecker
	observer Observer
	// now and rev of the command being applied.
	now int64
	rev uint64
	// deferred holds locks whose grant pass waits for the end of the
	// command (see EndSession and Settle).
	deferred map[string]bool
}

// NewTable returns an empty table.
func NewTable(sessions SessionChecker) *Table {
	return &Table{
		locks:     map[string]*Lock{},
		waiters:   map[uint64]*Waiter{},
		bySession: map[int64]map[string]struct{}{},
		sessions:  sessions,
	}
}

// SetObserver sets the observer of grants and releases.
func (t *Table) SetObserver(o Observer) { t.observer = o }

func invalid(format string, args ...any) error {
	return errs.Wrapf(ErrInvalidClaim, format, args...)
}

// normalize checks a request and returns its claims sorted by name.
// Validate reports why the state machine would refuse r whatever the
// table holds (the claims' shape, kinds, modes and permits), so that a
// member can refuse it before proposing anything. It is the check Acquire
// applies first.
func Validate(r Request) error {
	_, err := normalize(r)
	return err
}

func normalize(r Request) ([]Claim, error) {
	if r.Owner == "" {
		return nil, invalid("no owner")
	}
	if len(r.Claims) == 0 || len(r.Claims) > MaxClaims {
		return nil, invalid("%d claims; give 1 to %d", len(r.Claims), MaxClaims)
	}
	if r.HoldMs < 0 {
		return nil, invalid("negative hold time")
	}
	if r.Conversion {
		switch {
		case r.ResumeToken != 0:
			return nil, invalid("a conversion converts the grant the owner holds; it takes no resume token")
		case len(r.Claims) != 1 || r.Claims[0].Kind != KindRW:
			return nil, invalid("a conversion claims exactly one read-write lock")
		}
	}
	claims := slices.Clone(r.Claims)
	slices.SortFunc(claims, func(a, b Claim) int { return cmp.Compare(a.Name, b.Name) })
	for i := range claims {
		c := &claims[i]
		if c.Name == "" {
			return nil, invalid("empty lock name")
		}
		if i > 0 && claims[i-1].Name == c.Name {
			return nil, invalid("lock %q claimed twice", c.Name)
		}
		switch c.Kind {
		case KindMutex:
			c.Mode, c.Permits, c.Capacity = Exclusive, 1, 1
		case KindRW:
			if c.Mode != Exclusive && c.Mode != Shared {
				return nil, invalid("read-write lock %q needs a mode", c.Name)
			}
			c.Permits, c.Capacity = 1, 0
		case KindSemaphore:
			if c.Capacity < 1 || c.Capacity > MaxCapacity {
				return nil, errs.Wrapf(ErrTooManyPermits, "semaphore %q needs a capacity of 1 to %d, not %d", c.Name, int64(MaxCapacity), c.Capacity)
			}
			if c.Permits < 1 || c.Permits > c.Capacity {
				return nil, errs.Wrapf(ErrTooManyPermits, "%d permits of semaphore %q with capacity %d", c.Permits, c.Name, c.Capacity)
			}
			c.Mode = Shared
		default:
			return nil, invalid("lock %q has no kind", c.Name)
		}
		if len(claims) > 1 && c.Kind != KindMutex {
			return nil, invalid("claiming several locks at once works on mutexes only; %q is a %s", c.Name, c.Kind)
		}
	}
	return claims, nil
}

func (l *Lock) holder(session int64, owner string) *Holder {
	for _, h := range l.Holders {
		if h.Session == session && h.Owner == owner {
			return h
		}
	}
	return nil
}

// compatible reports whether claim c can be granted on l given its holders.
func (l *Lock) compatible(c Claim) bool {
	switch l.Kind {
	case KindMutex:
		return len(l.Holders) == 0
	case KindRW:
		if c.Mode == Exclusive {
			return len(l.Holders) == 0
		}
		for _, h := range l.Holders {
			if h.Mode == Exclusive {
				return false
			}
		}
		return true
	case KindSemaphore:
		var used int64
		for _, h := range l.Holders {
			used += h.Permits
		}
		return c.Permits <= l.Capacity-used // not used+c.Permits: it could wrap
	}
	return false
}

func (t *Table) lockFor(c Claim) *Lock {
	l := t.locks[c.Name]
	if l == nil {
		l = &Lock{Name: c.Name, Kind: c.Kind, Capacity: c.Capacity}
		t.locks[c.Name] = l
	}
	return l
}

func (t *Table) involve(session int64, name string) {
	s := t.bySession[session]
	if s == nil {
		s = map[string]struct{}{}
		t.bySession[session] = s
	}
	s[name] = struct{}{}
}

// uninvolve forgets that session touches lock name, unless it still holds
// or waits there.
func (t *Table) uninvolve(session int64, name string) {
	if l := t.locks[name]; l != nil {
		for _, h := range l.Holders {
			if h.Session == session {
				return
			}
		}
		for _, id := range l.Queue {
			if t.waiters[id].Session == session {
				return
			}
		}
	}
	s := t.bySession[session]
	delete(s, name)
	if len(s) == 0 {
		delete(t.bySession, session)
	}
}

// Acquire applies an acquire request at revision rev.
func (t *Table) Acquire(rev uint64, nowMs int64, r Request) (Outcome, error) {
	t.rev, t.now = rev, nowMs
	claims, err := normalize(r)
	if err != nil {
		return Outcome{}, err
	}
	if !t.sessions.Exists(r.Session) {
		return Outcome{}, errs.Wrapf(session.ErrNotFound, "session %d", r.Session)
	}
	for _, c := range claims {
		if l := t.locks[c.Name]; l != nil && (l.Kind != c.Kind || (l.Kind == KindSemaphore && l.Capacity != c.Capacity)) {
			return Outcome{}, errs.Wrapf(ErrKindMismatch, "%q is a %s (capacity %d), not a %s (capacity %d)", c.Name, l.Kind, l.Capacity, c.Kind, c.Capacity)
		}
	}
	if r.ResumeToken != 0 {
		for _, c := range claims {
			l := t.locks[c.Name]
			if l == nil {
				return Outcome{State: Lost}, nil
			}
			if h := l.holder(r.Session, r.Owner); h == nil || h.Token != r.ResumeToken {
				return Outcome{State: Lost}, nil
			}
		}
		return Outcome{State: Granted, Token: r.ResumeToken}, nil
	}
	if out, done, err := t.existing(claims, r); done || err != nil {
		return out, err
	}
	if r.Conversion {
		// The owner holds nothing to convert (and waits for nothing: a
		// conversion never queues): its grant ended before the conversion
		// applied. Granting the lock anew would pass for the conversion
		// and hide the loss; the conversion takes nothing instead.
		return Outcome{State: Lost, Reason: ReasonConvertedEnded}, nil
	}
	free := true
	for _, c := range claims {
		l := t.locks[c.Name]
		if l != nil && (len(l.Queue) > 0 || !l.compatible(c)) {
			free = false
			break
		}
	}
	if !free && !r.Wait {
		return Outcome{State: NotAcquired}, nil
	}
	if r.Admit != nil {
		// The owner neither holds nor waits for any of the claims (existing
		// answered those): each takes a grant or a place in a queue, and
		// a lock that does not exist yet counts too (Additions, without
		// its look-ups).
		adds := 0
		for _, c := range claims {
			adds++
			if t.locks[c.Name] == nil {
				adds++
			}
		}
		if err := r.Admit(t.Entries(), adds); err != nil {
			return Outcome{}, err
		}
	}
	if free {
		w := &Waiter{Session: r.Session, Owner: r.Owner, Claims: claims, HoldMs: r.HoldMs, SinceUnixMs: nowMs}
		t.grant(w)
		return Outcome{State: Granted, Token: rev}, nil
	}
	w := &Waiter{ID: rev, Session: r.Session, Owner: r.Owner, Claims: claims, HoldMs: r.HoldMs, SinceUnixMs: nowMs}
	t.waiters[w.ID] = w
	t.queued += len(claims)
	for _, c := range claims {
		l := t.lockFor(c)
		l.Queue = append(l.Queue, w.ID)
		t.involve(r.Session, c.Name)
	}
	return Outcome{State: Queued, Waiter: w.ID, Position: len(t.locks[claims[0].Name].Queue) - 1}, nil
}

// existing handles a request from an owner that already holds or waits:
// acquiring again is idempotent, and a read-write holder may downgrade, or
// upgrade when it is the only holder. A holder asking for anything else
// (other permits, another hold time) is refused with ErrAlreadyHeld, as a
// waiter is with ErrAlreadyWaiting: answered with its grant, it would
// take it for what it asked.
func (t *Table) existing(claims []Claim, r Request) (Outcome, bool, error) {
	held := 0
	var token uint64
	mixed := false
	var otherHold *Holder
	for _, c := range claims {
		l := t.locks[c.Name]
		if l == nil {
			continue
		}
		h := l.holder(r.Session, r.Owner)
		if h == nil {
			continue
		}
		if held > 0 && h.Token != token {
			mixed = true
		}
		held++
		token = h.Token
		if h.HoldMs != r.HoldMs && otherHold == nil {
			otherHold = h
		}
		if len(claims) > 1 {
			continue
		}
		switch {
		case l.Kind == KindSemaphore && h.Permits != c.Permits:
			return Outcome{}, true, errs.Wrapf(ErrAlreadyHeld, "owner %q already holds %d permits of %q; release them first, or use another owner",
				r.Owner, h.Permits, c.Name)
		case otherHold != nil:
			return Outcome{}, true, errs.Wrapf(ErrAlreadyHeld, "owner %q already holds %q (token %d) with %s, not %s; release it first, or use another owner",
				r.Owner, c.Name, h.Token, describeHold(h.HoldMs), describeHold(r.HoldMs))
		case l.Kind == KindRW && h.Mode == Shared && c.Mode == Exclusive:
			if len(l.Holders) > 1 {
				return Outcome{}, true, errs.Wrapf(ErrWouldDeadlock, "%d other readers hold %q; release the read lock and acquire the write lock", len(l.Holders)-1, c.Name)
			}
			t.recordEnd(h, ReasonUpgraded)
			if t.observer != nil {
				t.observer.Released(Release{Name: l.Name, Session: h.Session, Owner: h.Owner, Token: h.Token, Reason: ReasonUpgraded,
					HeldMs: t.now - h.SinceUnixMs, HoldMs: h.HoldMs})
			}
			// A new grant: its token, and its time, start now.
			converted := h.Token
			h.Mode, h.Token, h.SinceUnixMs, h.HoldCountedMs = Exclusive, t.rev, t.now, 0
			t.notifyGrant(l.Name, h, 0, 0, 0)
			return Outcome{State: Granted, Token: t.rev, Converted: converted}, true, nil
		case l.Kind == KindRW && h.Mode == Exclusive && c.Mode == Shared:
			h.Mode = Shared
			t.grantPass(map[string]bool{l.Name: true})
			return Outcome{State: Granted, Token: h.Token, Converted: h.Token}, true, nil
		}
		return Outcome{State: Granted, Token: h.Token}, true, nil
	}
	if held == len(claims) && held > 0 {
		if mixed {
			return Outcome{}, true, invalid("owner holds these locks under different grants; release them or claim them one by one")
		}
		if otherHold != nil {
			return Outcome{}, true, errs.Wrapf(ErrAlreadyHeld, "owner %q already holds these %d locks (token %d) with %s, not %s; release them first, or use another owner",
				r.Owner, len(claims), token, describeHold(otherHold.HoldMs), describeHold(r.HoldMs))
		}
		return Outcome{State: Granted, Token: token}, true, nil
	}
	if held > 0 {
		return Outcome{}, true, invalid("owner already holds some of these locks; release them or claim the rest")
	}
	// A waiter of the same owner: the same request again is answered with
	// it (a retried or resumed wait); another request (another mode, other
	// permits, other locks) would be answered for what it did not ask.
	for _, c := range claims {
		l := t.locks[c.Name]
		if l == nil {
			continue
		}
		for pos, id := range l.Queue {
			w := t.waiters[id]
			if w.Session != r.Session || w.Owner != r.Owner {
				continue
			}
			if !sameClaims(w.Claims, claims) || w.HoldMs != r.HoldMs {
				return Outcome{}, true, errs.Wrapf(ErrAlreadyWaiting, "owner %q already waits (waiter %d) for %s on %q; cancel that wait or use another owner",
					r.Owner, id, describeClaims(w.Claims), c.Name)
			}
			return Outcome{State: Queued, Waiter: id, Position: pos}, true, nil
		}
	}
	return Outcome{}, false, nil
}

// describeHold names a hold time, for errors.
func describeHold(ms int64) string {
	if ms <= 0 {
		return "no hold time"
	}
	return fmt.Sprintf("a hold time of %d ms", ms)
}

// sameClaims reports whether two normalized claim lists ask for the same.
func sameClaims(a, b []Claim) bool {
	return slices.Equal(a, b)
}

// describeClaims names what a waiter asked for, for errors.
func describeClaims(claims []Claim) string {
	if len(claims) > 1 {
		return fmt.Sprintf("%d locks", len(claims))
	}
	c := claims[0]
	switch c.Kind {
	case KindRW:
		if c.Mode == Exclusive {
			return "the write lock"
		}
		return "a read lock"
	case KindSemaphore:
		return fmt.Sprintf("%d permits", c.Permits)
	}
	return "the lock"
}

// grant makes w's claims holders with token rev and removes it from every
// queue. It returns the names of the locks it touched.
func (t *Table) grant(w *Waiter) []string {
	names := make([]string, 0, len(w.Claims))
	for part, c := range w.Claims {
		l := t.lockFor(c)
		h := &Holder{Session: w.Session, Owner: w.Owner, Token: t.rev, Mode: c.Mode, Permits: c.Permits, SinceUnixMs: t.now, HoldMs: w.HoldMs}
		l.Holders = append(l.Holders, h)
		t.holders++
		if w.ID != 0 {
			l.Queue = slices.DeleteFunc(l.Queue, func(id uint64) bool { return id == w.ID })
		}
		t.involve(w.Session, c.Name)
		t.notifyGrant(l.Name, h, w.ID, t.now-w.SinceUnixMs, part)
		names = append(names, c.Name)
	}
	if _, queued := t.waiters[w.ID]; queued {
		t.queued -= len(w.Claims)
	}
	delete(t.waiters, w.ID)
	return names
}

func (t *Table) notifyGrant(name string, h *Holder, waiter uint64, waitedMs int64, part int) {
	if t.observer != nil {
		t.observer.Granted(Grant{Name: name, Session: h.Session, Owner: h.Owner, Waiter: waiter, Token: h.Token,
			HoldMs: h.HoldMs, Since: h.SinceUnixMs, WaitedMs: waitedMs, Part: part})
	}
}

// grantable reports whether a waiter is at the head of every queue it is in
// and every claim is compatible.
func (t *Table) grantable(w *Waiter) bool {
	for _, c := range w.Claims {
		l := t.locks[c.Name]
		if l == nil || len(l.Queue) == 0 || l.Queue[0] != w.ID || !l.compatible(c) {
			return false
		}
	}
	return true
}

// grantPass grants queued waiters of the touched locks, in queue order,
// until every head is blocked; then drops locks nobody holds or waits for.
func (t *Table) grantPass(touched map[string]bool) {
	work := make([]string, 0, len(touched))
	for n := range touched {
		work = append(work, n)
	}
	slices.Sort(work)
	queued := map[string]bool{}
	for _, n := range work {
		queued[n] = true
	}
	for len(work) > 0 {
		name := work[0]
		work = work[1:]
		queued[name] = false
		l := t.locks[name]
		for l != nil && len(l.Queue) > 0 {
			w := t.waiters[l.Queue[0]]
			if !t.grantable(w) {
				break
			}
			for _, other := range t.grant(w) {
				if other != name && !queued[other] {
					queued[other] = true
					work = append(work, other)
				}
			}
		}
		if l != nil && len(l.Holders) == 0 && len(l.Queue) == 0 {
			delete(t.locks, name)
		}
	}
}

// removeHolder takes h off l and reports the release.
func (t *Table) removeHolder(l *Lock, h *Holder, reason string) {
	n := len(l.Holders)
	l.Holders = slices.DeleteFunc(l.Holders, func(x *Holder) bool { return x == h })
	t.holders -= n - len(l.Holders)
	t.uninvolve(h.Session, l.Name)
	if reason != ReasonReleased && reason != ReasonForced {
		t.recordEnd(h, reason)
	}
	if t.observer != nil {
		t.observer.Released(Release{Name: l.Name, Session: h.Session, Owner: h.Owner, Token: h.Token, Reason: reason,
			HeldMs: t.now - h.SinceUnixMs, HoldMs: h.HoldMs, Revoked: reason != ReasonReleased})
	}
}

// Release ends the owner's grants of the named locks. With a token, the
// grant must carry it. Either every lock is released or none.
func (t *Table) Release(rev uint64, nowMs int64, names []string, sess int64, owner string, token uint64) error {
	t.rev, t.now = rev, nowMs
	if len(names) == 0 || len(names) > MaxClaims {
		return invalid("%d locks to release; give 1 to %d", len(names), MaxClaims)
	}
	type victim struct {
		l *Lock
		h *Holder
	}
	victims := make([]victim, 0, len(names))
	for i, n := range names {
		if slices.Contains(names[:i], n) {
			return invalid("lock %q named twice", n)
		}
		l := t.locks[n]
		var h *Holder
		if l != nil {
			h = l.holder(sess, owner)
		}
		if h == nil {
			return errs.Wrapf(ErrNotHeld, "%q is not held by session %d owner %q", n, sess, owner)
		}
		if token != 0 && h.Token != token {
			return errs.Wrapf(ErrNotHeld, "%q is held under token %d, not %d", n, h.Token, token)
		}
		victims = append(victims, victim{l, h})
	}
	// A grant ends whole: the locks one acquire took together are
	// released together, or none is (a grant holding part of its locks
	// would be followed, and reported lost, by a part it no longer holds).
	// A session involved in no lock but those named holds nothing else:
	// the scan, which costs the session's locks, is needed only otherwise.
	if len(t.bySession[sess]) > len(names) {
		var checked []uint64
		for _, v := range victims {
			if slices.Contains(checked, v.h.Token) {
				continue
			}
			checked = append(checked, v.h.Token)
			if rest := t.grantLocks(sess, owner, v.h.Token, names); rest != "" {
				return invalid("%q is one lock of a grant (token %d) that also holds %q: release all its locks together", v.l.Name, v.h.Token, rest)
			}
		}
	}
	touched := map[string]bool{}
	for _, v := range victims {
		t.removeHolder(v.l, v.h, ReasonReleased)
		touched[v.l.Name] = true
	}
	t.grantPass(touched)
	return nil
}

// grantLocks returns the first lock, in name order, other than those in
// names, that owner of session holds under token; "" if none.
func (t *Table) grantLocks(session int64, owner string, token uint64, names []string) string {
	first := ""
	for n := range t.bySession[session] {
		if (first != "" && n >= first) || slices.Contains(names, n) {
			continue
		}
		if l := t.locks[n]; l != nil {
			if h := l.holder(session, owner); h != nil && h.Token == token {
				first = n
			}
		}
	}
	return first
}

// Cancel takes a waiter off every queue.
func (t *Table) Cancel(rev uint64, nowMs int64, waiter uint64, sess int64, owner string) error {
	t.rev, t.now = rev, nowMs
	w := t.waiters[waiter]
	if w == nil || w.Session != sess || w.Owner != owner {
		return errs.Wrapf(ErrNotWaiting, "waiter %d of session %d owner %q", waiter, sess, owner)
	}
	t.dequeue(w, "cancelled")
	touched := map[string]bool{}
	for _, c := range w.Claims {
		touched[c.Name] = true
	}
	t.grantPass(touched)
	return nil
}

func (t *Table) dequeue(w *Waiter, reason string) {
	for _, c := range w.Claims {
		if l := t.locks[c.Name]; l != nil {
			l.Queue = slices.DeleteFunc(l.Queue, func(id uint64) bool { return id == w.ID })
		}
	}
	if _, queued := t.waiters[w.ID]; queued {
		t.queued -= len(w.Claims)
	}
	delete(t.waiters, w.ID)
	for _, c := range w.Claims {
		t.uninvolve(w.Session, c.Name)
	}
	if t.observer != nil {
		t.observer.Dequeued(w.ID, reason)
	}
}

// EndSession releases every grant and cancels every wait of a session, and
// returns how many it ended. Its grant pass is deferred to Settle, which the
// state machine runs after the whole command: when one command ends several
// sessions (an expiry batch), all of them are gone before anyone is granted,
// so no lock is granted twice under one token.
func (t *Table) EndSession(rev uint64, nowMs int64, sess int64) int64 {
	t.rev, t.now = rev, nowMs
	names := make([]string, 0, len(t.bySession[sess]))
	for n := range t.bySession[sess] {
		names = append(names, n)
	}
	slices.Sort(names)
	var n int64
	touched := map[string]bool{}
	for _, name := range names {
		l := t.locks[name]
		if l == nil {
			continue
		}
		for _, h := range slices.Clone(l.Holders) {
			if h.Session == sess {
				t.removeHolder(l, h, ReasonSessionEnded)
				n++
			}
		}
		for _, id := range slices.Clone(l.Queue) {
			if w := t.waiters[id]; w != nil && w.Session == sess {
				t.dequeue(w, ReasonSessionEnded)
				n++
			}
		}
		touched[name] = true
	}
	delete(t.bySession, sess)
	if t.deferred == nil {
		t.deferred = map[string]bool{}
	}
	for name := range touched {
		t.deferred[name] = true
	}
	return n
}

// Settle runs the grant pass deferred by EndSession. The state machine calls
// it once at the end of every command.
func (t *Table) Settle() {
	if len(t.deferred) == 0 {
		return
	}
	touched := t.deferred
	t.deferred = nil
	t.grantPass(touched)
}

// endGrant ends, with reason, what is left of the grant with token that
// owner of session holds on locks other than except: the locks one
// acquire took together are one grant, and a grant ends whole. It returns
// the holders it ended, with their locks, in name order, and marks the
// locks touched.
func (t *Table) endGrant(session int64, owner string, token uint64, except, reason string, touched map[string]bool) []Lock {
	names := make([]string, 0, len(t.bySession[session]))
	for n := range t.bySession[session] {
		if n != except {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var ended []Lock
	for _, n := range names {
		l := t.locks[n]
		if l == nil {
			continue
		}
		for _, h := range slices.Clone(l.Holders) {
			if h.Session == session && h.Owner == owner && h.Token == token {
				t.removeHolder(l, h, reason)
				touched[n] = true
				ended = append(ended, Lock{Name: n, Holders: []*Holder{h}})
			}
		}
	}
	return ended
}

// ExpireHold releases the grant ref names (its lock, token, session and
// owner) whose hold time ran out on the leader, on every lock the grant
// took. It does nothing if the grant is already gone. A ref without
// session and owner (written before they were recorded) names every grant
// of the lock with the token.
func (t *Table) ExpireHold(rev uint64, nowMs int64, ref HoldRef) bool {
	t.rev, t.now = rev, nowMs
	l := t.locks[ref.Name]
	if l == nil {
		return false
	}
	exact := ref.Session != 0 || ref.Owner != ""
	touched := map[string]bool{}
	for _, h := range slices.Clone(l.Holders) {
		if h.Token != ref.Token || h.HoldMs <= 0 || (exact && (h.Session != ref.Session || h.Owner != ref.Owner)) {
			continue
		}
		t.removeHolder(l, h, ReasonHoldTime)
		touched[ref.Name] = true
		t.endGrant(h.Session, h.Owner, h.Token, ref.Name, ReasonHoldTime, touched)
	}
	if len(touched) == 0 {
		return false
	}
	t.grantPass(touched)
	return true
}

// CheckpointHold records that leaders have counted countedMs of the hold
// time of the grant ref names exactly (its lock, token, session and
// owner), so that a new leader counts only the rest. The count only grows,
// and never past the hold time. It changes nothing for a grant that has
// ended or has no hold time, and reports whether it changed the count.
func (t *Table) CheckpointHold(rev uint64, nowMs int64, ref HoldRef, countedMs int64) bool {
	t.rev, t.now = rev, nowMs
	l := t.locks[ref.Name]
	if l == nil {
		return false
	}
	h := l.holder(ref.Session, ref.Owner)
	if h == nil || h.Token != ref.Token || h.HoldMs <= 0 {
		return false
	}
	counted := min(countedMs, h.HoldMs)
	if counted <= h.HoldCountedMs {
		return false
	}
	h.HoldCountedMs = counted
	return true
}

// ForceRelease ends the grants of a lock on an operator's request (only
// those with token, when given: readers or semaphore holders granted by one
// command share its token), and records it. A grant that took several locks
// at once ends on all of them. It returns the grants it ended on lock name.
func (t *Table) ForceRelease(rev uint64, nowMs int64, name string, token uint64, reason, byClient string) (int, error) {
	t.rev, t.now = rev, nowMs
	l := t.locks[name]
	if l == nil || len(l.Holders) == 0 {
		return 0, errs.Wrapf(ErrNotHeld, "%q is not held", name)
	}
	n := 0
	touched := map[string]bool{}
	record := func(name string, h *Holder) {
		t.forced = append(t.forced, ForceRecord{Name: name, Token: h.Token, Session: h.Session, Owner: h.Owner,
			AtUnixMs: nowMs, Reason: reason, Revision: rev, HeldSince: h.SinceUnixMs, ByClient: byClient})
	}
	for _, h := range slices.Clone(l.Holders) {
		if token != 0 && h.Token != token {
			continue
		}
		record(name, h)
		t.removeHolder(l, h, ReasonForced)
		touched[name] = true
		n++
		for _, other := range t.endGrant(h.Session, h.Owner, h.Token, name, ReasonForced, touched) {
			record(other.Name, other.Holders[0])
		}
	}
	if n == 0 {
		return 0, errs.Wrapf(ErrNotHeld, "%q is not held under token %d", name, token)
	}
	if len(t.forced) > forceHistory {
		t.forced = slices.Clone(t.forced[len(t.forced)-forceHistory:])
	}
	t.grantPass(touched)
	return n, nil
}

// HeldWithToken reports whether lock name is held under token. It
// implements kv.LockChecker, for fenced writes.
func (t *Table) HeldWithToken(name []byte, token int64) bool {
	l := t.locks[string(name)]
	if l == nil || token <= 0 {
		return false
	}
	for _, h := range l.Holders {
		if h.Token == uint64(token) {
			return true
		}
	}
	return false
}

// Holding reports whether session holds a grant with token.
func (t *Table) Holding(session int64, token uint64) bool {
	for name := range t.bySession[session] {
		if l := t.locks[name]; l != nil {
			for _, h := range l.Holders {
				if h.Session == session && h.Token == token {
					return true
				}
			}
		}
	}
	return false
}

// HoldsGrant reports whether owner of session holds a grant with token.
func (t *Table) HoldsGrant(session int64, owner string, token uint64) bool {
	for name := range t.bySession[session] {
		if l := t.locks[name]; l != nil {
			if h := l.holder(session, owner); h != nil && h.Token == token {
				return true
			}
		}
	}
	return false
}

// HoldsLock reports whether owner of session holds lock name under token.
// It copies nothing: answers to acquires check it on the hand-off path.
func (t *Table) HoldsLock(name string, session int64, owner string, token uint64) bool {
	if l := t.locks[name]; l != nil {
		h := l.holder(session, owner)
		return h != nil && h.Token == token
	}
	return false
}

// recordEnd remembers that h ended for reason (not a release by its owner,
// nor a force-release, which has a replicated record of its own).
func (t *Table) recordEnd(h *Holder, reason string) {
	r := endRecord{token: h.Token, session: h.Session, owner: h.Owner, reason: reason}
	if len(t.ends) < endHistory {
		t.ends = append(t.ends, r)
		return
	}
	t.ends[t.endNext] = r
	t.endNext = (t.endNext + 1) % endHistory
}

// ReasonUnknownEnd words the end of a grant the table has no record of:
// its owner released it, or it ended longer ago than the table remembers
// (endHistory ends back, or before this member installed a snapshot or
// restarted).
const ReasonUnknownEnd = "no longer held (released, or ended before what this member remembers)"

// EndReason says why the grant with token of session (and owner, when
// given), no longer held, ended, as far as the table remembers: a recent
// force-release names its reason, and a recent end by the hold time, the
// session or an upgrade says so. Grants of other sessions or owners may
// share the token (one command granted them all), and their ends are not
// this one's.
func (t *Table) EndReason(token uint64, session int64, owner string) string {
	for i := len(t.forced) - 1; i >= 0; i-- {
		if f := t.forced[i]; f.Token == token && f.Session == session && (owner == "" || f.Owner == owner) {
			return ReasonForced + ": " + f.Reason
		}
	}
	// Newest first: slots endNext-1 down to 0, then the ring's older end.
	for i := range t.ends {
		j := (t.endNext - 1 - i + 2*len(t.ends)) % len(t.ends)
		if e := t.ends[j]; e.token == token && e.session == session && (owner == "" || e.owner == owner) {
			return e.reason
		}
	}
	return ReasonUnknownEnd
}

// Involvement reports whether lock name exists, and whether owner of
// session already holds it or waits for it (an acquire of theirs then adds
// nothing to the table: it is answered with what they have, or converts
// their grant in place). It copies nothing.
func (t *Table) Involvement(name string, session int64, owner string) (exists, involved bool) {
	l := t.locks[name]
	if l == nil {
		return false, false
	}
	if _, ok := t.bySession[session][name]; !ok {
		return true, false
	}
	if l.holder(session, owner) != nil {
		return true, true
	}
	for _, id := range l.Queue {
		if w := t.waiters[id]; w != nil && w.Session == session && w.Owner == owner {
			return true, true
		}
	}
	return true, false
}

// WouldQueue reports whether r, applied now, would be queued: it waits,
// converts nothing, resumes nothing, its owner neither holds nor waits for
// any of its locks, and at least one of them has waiters or holders it
// cannot join. It is a hint for the leader (a queued acquire is on no
// one's critical path, so its write can wait for company): the table may
// change before r applies, and any doubt answers false. It copies nothing.
func (t *Table) WouldQueue(r Request) bool {
	if !r.Wait || r.Conversion || r.ResumeToken != 0 {
		return false
	}
	claims, err := normalize(r)
	if err != nil {
		return false
	}
	queue := false
	for _, c := range claims {
		l := t.locks[c.Name]
		if l == nil {
			continue
		}
		if l.Kind != c.Kind || (l.Kind == KindSemaphore && l.Capacity != c.Capacity) {
			return false // refused at once
		}
		if _, ok := t.bySession[r.Session][c.Name]; ok {
			return false // answered from what the owner's session has
		}
		if len(l.Queue) > 0 || !l.compatible(c) {
			queue = true
		}
	}
	return queue
}

// Get returns a copy of a lock and its waiters, in queue order.
func (t *Table) Get(name string) (Lock, []Waiter, bool) {
	l := t.locks[name]
	if l == nil {
		return Lock{}, nil, false
	}
	cp := copyLock(l)
	ws := make([]Waiter, 0, len(l.Queue))
	for _, id := range l.Queue {
		ws = append(ws, copyWaiter(t.waiters[id]))
	}
	return cp, ws, true
}

// Names returns the names of every lock in order, from after (exclusive),
// at most limit of them (0: all).
func (t *Table) Names(prefix, after string, limit int) []string {
	out := make([]string, 0, len(t.locks))
	for n := range t.locks {
		if len(n) >= len(prefix) && n[:len(prefix)] == prefix && n > after {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// Len returns the number of locks and of waiters.
func (t *Table) Len() (locks, waiters int) { return len(t.locks), len(t.waiters) }

// Holders returns the number of grants held, over every lock: a semaphore
// with three holders counts three.
func (t *Table) Holders() int { return t.holders }

// Queued returns the places taken in the locks' queues: a waiter for
// several locks (LockAll) takes one in each, and becomes as many grants.
func (t *Table) Queued() int { return t.queued }

// Entries returns the table's entries as --max-locks counts them: lock
// objects, grants held and places taken in queues.
func (t *Table) Entries() int { return len(t.locks) + t.holders + t.queued }

// Additions returns how many entries an acquire of the named locks by
// session and owner could add: two for a lock that does not exist yet (the
// lock and its grant), one for a lock that exists (a grant or a place in
// its queue), none for a lock the owner holds or waits for already (a
// retry, a reentrant acquire, a conversion). Grants count: a read lock or
// a semaphore takes one per owner, and one session may use any number of
// owners.
func (t *Table) Additions(session int64, owner string, names iter.Seq[string]) int {
	adds := 0
	for name := range names {
		switch exists, involved := t.Involvement(name, session, owner); {
		case involved:
		case exists:
			adds++
		default:
			adds += 2
		}
	}
	return adds
}

// Forced returns the recent force-release records, oldest first.
func (t *Table) Forced() []ForceRecord { return slices.Clone(t.forced) }

// Holds returns every grant with a hold time, for the leader's tracker.
func (t *Table) Holds() []Grant {
	var out []Grant
	for _, name := range t.Names("", "", 0) {
		for _, h := range t.locks[name].Holders {
			if h.HoldMs > 0 {
				out = append(out, Grant{Name: name, Session: h.Session, Owner: h.Owner, Token: h.Token, HoldMs: h.HoldMs, Since: h.SinceUnixMs,
					HoldCountedMs: h.HoldCountedMs})
			}
		}
	}
	return out
}

func copyLock(l *Lock) Lock {
	cp := Lock{Name: l.Name, Kind: l.Kind, Capacity: l.Capacity, Queue: slices.Clone(l.Queue)}
	for _, h := range l.Holders {
		hh := *h
		cp.Holders = append(cp.Holders, &hh)
	}
	return cp
}

func copyWaiter(w *Waiter) Waiter {
	cp := *w
	cp.Claims = slices.Clone(w.Claims)
	return cp
}
