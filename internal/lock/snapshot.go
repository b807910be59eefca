package lock

import (
	"fmt"
	"slices"

	"github.com/concord-dev/concord/internal/fsm/record"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
)

// SectionName names the table's snapshot section.
const SectionName = "lock"

// Capture copies the table for a snapshot: a header record, then the locks
// by name, the waiters by ID and the force-release records.
func (t *Table) Capture() (uint64, func(*record.Writer) error) {
	names := t.Names("", "", 0)
	locks := make([]*internalv1.LockRecord, 0, len(names))
	for _, n := range names {
		l := t.locks[n]
		rec := &internalv1.LockRecord{Name: l.Name, Kind: uint32(l.Kind), Capacity: l.Capacity, Queue: slices.Clone(l.Queue)}
		for _, h := range l.Holders {
			rec.Holders = append(rec.Holders, &internalv1.LockHolderRecord{Session: h.Session, Owner: h.Owner, Token: h.Token,
				Mode: uint32(h.Mode), Permits: h.Permits, SinceUnixMs: h.SinceUnixMs, HoldMs: h.HoldMs, HoldCountedMs: h.HoldCountedMs})
		}
		locks = append(locks, rec)
	}
	ids := make([]uint64, 0, len(t.waiters))
	for id := range t.waiters {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	waiters := make([]*internalv1.LockWaiterRecord, 0, len(ids))
	for _, id := range ids {
		w := t.waiters[id]
		rec := &internalv1.LockWaiterRecord{Id: w.ID, Session: w.Session, Owner: w.Owner, HoldMs: w.HoldMs, SinceUnixMs: w.SinceUnixMs}
		for _, c := range w.Claims {
			rec.Claims = append(rec.Claims, &internalv1.LockClaimRecord{Name: c.Name, Kind: uint32(c.Kind), Mode: uint32(c.Mode), Permits: c.Permits, Capacity: c.Capacity})
		}
		waiters = append(waiters, rec)
	}
	forced := make([]*internalv1.LockForceRecord, 0, len(t.forced))
	for _, f := range t.forced {
		forced = append(forced, &internalv1.LockForceRecord{Name: f.Name, Token: f.Token, Session: f.Session, Owner: f.Owner,
			AtUnixMs: f.AtUnixMs, Reason: f.Reason, Revision: f.Revision, HeldSinceUnixMs: f.HeldSince, ByClient: f.ByClient})
	}
	hdr := &internalv1.LockSectionHeader{Locks: uint64(len(locks)), Waiters: uint64(len(waiters)), Forced: uint64(len(forced))}
	return 1 + hdr.Locks + hdr.Waiters + hdr.Forced, func(w *record.Writer) error {
		if err := w.Write(hdr); err != nil {
			return err
		}
		for _, r := range locks {
			if err := w.Write(r); err != nil {
				return err
			}
		}
		for _, r := range waiters {
			if err := w.Write(r); err != nil {
				return err
			}
		}
		for _, r := range forced {
			if err := w.Write(r); err != nil {
				return err
			}
		}
		return nil
	}
}

// Restore replaces the table with n records read from r.
func (t *Table) Restore(n uint64, r *record.Reader) error {
	if n == 0 {
		t.Reset()
		return nil
	}
	var hdr internalv1.LockSectionHeader
	if err := r.Read(&hdr); err != nil {
		return fmt.Errorf("lock header: %w", err)
	}
	if 1+hdr.GetLocks()+hdr.GetWaiters()+hdr.GetForced() != n {
		return fmt.Errorf("%w: lock section counts do not add up", record.ErrCorrupt)
	}
	fresh := NewTable(t.sessions)
	for i := uint64(0); i < hdr.GetLocks(); i++ {
		var rec internalv1.LockRecord
		if err := r.Read(&rec); err != nil {
			return fmt.Errorf("lock record %d: %w", i, err)
		}
		l := &Lock{Name: rec.GetName(), Kind: Kind(rec.GetKind()), Capacity: rec.GetCapacity(), Queue: rec.GetQueue()}
		for _, h := range rec.GetHolders() {
			if c := h.GetHoldCountedMs(); c < 0 || c > max(h.GetHoldMs(), 0) {
				return fmt.Errorf("%w: lock %q: a holder counted %d ms of a hold time of %d ms", record.ErrCorrupt, l.Name, c, h.GetHoldMs())
			}
			l.Holders = append(l.Holders, &Holder{Session: h.GetSession(), Owner: h.GetOwner(), Token: h.GetToken(), Mode: Mode(h.GetMode()),
				Permits: h.GetPermits(), SinceUnixMs: h.GetSinceUnixMs(), HoldMs: h.GetHoldMs(), HoldCountedMs: h.GetHoldCountedMs()})
			fresh.involve(h.GetSession(), l.Name)
		}
		fresh.holders += len(l.Holders)
		if fresh.locks[l.Name] != nil {
			return fmt.Errorf("%w: lock %q twice", record.ErrCorrupt, l.Name)
		}
		fresh.locks[l.Name] = l
	}
	for i := uint64(0); i < hdr.GetWaiters(); i++ {
		var rec internalv1.LockWaiterRecord
		if err := r.Read(&rec); err != nil {
			return fmt.Errorf("lock waiter %d: %w", i, err)
		}
		w := &Waiter{ID: rec.GetId(), Session: rec.GetSession(), Owner: rec.GetOwner(), HoldMs: rec.GetHoldMs(), SinceUnixMs: rec.GetSinceUnixMs()}
		for _, c := range rec.GetClaims() {
			w.Claims = append(w.Claims, Claim{Name: c.GetName(), Kind: Kind(c.GetKind()), Mode: Mode(c.GetMode()), Permits: c.GetPermits(), Capacity: c.GetCapacity()})
			fresh.involve(w.Session, c.GetName())
		}
		if w.ID == 0 || fresh.waiters[w.ID] != nil {
			return fmt.Errorf("%w: waiter ID %d is zero or twice", record.ErrCorrupt, w.ID)
		}
		fresh.waiters[w.ID] = w
		fresh.queued += len(w.Claims)
	}
	if err := fresh.checkRestored(); err != nil {
		return err
	}
	// The table keeps the last forceHistory records.
	if hdr.GetForced() > forceHistory {
		return fmt.Errorf("%w: %d force-release records; the table keeps %d", record.ErrCorrupt, hdr.GetForced(), forceHistory)
	}
	for i := uint64(0); i < hdr.GetForced(); i++ {
		var rec internalv1.LockForceRecord
		if err := r.Read(&rec); err != nil {
			return fmt.Errorf("lock force record %d: %w", i, err)
		}
		// Its token is that of the grant it ended, its revision the index
		// of the release: a grant precedes its release.
		if rec.GetToken() == 0 || rec.GetToken() > rec.GetRevision() {
			return fmt.Errorf("%w: force-release record %d of token %d at revision %d", record.ErrCorrupt, i, rec.GetToken(), rec.GetRevision())
		}
		fresh.forced = append(fresh.forced, ForceRecord{Name: rec.GetName(), Token: rec.GetToken(), Session: rec.GetSession(), Owner: rec.GetOwner(),
			AtUnixMs: rec.GetAtUnixMs(), Reason: rec.GetReason(), Revision: rec.GetRevision(), HeldSince: rec.GetHeldSinceUnixMs(), ByClient: rec.GetByClient()})
	}
	t.Adopt(fresh)
	return nil
}

// sessionOwner names an owner of a session.
type sessionOwner struct {
	session int64
	owner   string
}

// checkRestored refuses a restored table that applying commands could not
// have built, and on which they could fail (a snapshot file is operator
// input): every lock is of a known kind and holds what its kind allows,
// every queue entry is a waiter that claims that lock, once, in the order
// of their IDs (the order they queued in), no owner holds a lock twice or
// waits for one it holds, every claim of a waiter is queued on its lock,
// every waiter claims what an acquire queues (normalized claims of its
// locks' kinds and capacities), and every holder and waiter belongs to a
// session of the snapshot (or nothing would ever release it). A waiter queued on a lock it did not claim made the
// restored cluster's members all crash at the same entry; one claiming a
// mode, permits or kind its lock does not take became, once granted, a
// holder that made every later snapshot unrestorable.
func (t *Table) checkRestored() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: lock section: %s", record.ErrCorrupt, fmt.Sprintf(format, args...))
	}
	// queuedOn[id] names the locks waiter id is queued on: linear in the
	// table (a lock may queue a million waiters; a scan of its queue per
	// waiter would be quadratic).
	queuedOn := make(map[uint64][]string, len(t.waiters))
	for name, l := range t.locks {
		if name == "" {
			return bad("a lock without a name")
		}
		var permits int64
		exclusive := 0
		// An owner holds a lock once, and does not wait for what it holds:
		// its acquire is answered with what it has.
		owners := map[sessionOwner]bool{}
		for _, h := range l.Holders {
			if owners[sessionOwner{h.Session, h.Owner}] {
				return bad("lock %q is held twice by owner %q of session %d", name, h.Owner, h.Session)
			}
			owners[sessionOwner{h.Session, h.Owner}] = true
			if !t.sessions.Exists(h.Session) {
				return bad("lock %q is held by session %d, which the snapshot does not hold", name, h.Session)
			}
			// A token is the revision of its grant: never 0 (which fenced
			// writes and releases take for "no token").
			if h.Token == 0 {
				return bad("lock %q has a holder of token 0", name)
			}
			if h.Permits < 1 || h.Permits > MaxCapacity || (h.Mode != Exclusive && h.Mode != Shared) {
				return bad("lock %q has a holder with mode %d and %d permits", name, h.Mode, h.Permits)
			}
			permits += h.Permits
			if h.Mode == Exclusive {
				exclusive++
			}
		}
		switch l.Kind {
		case KindMutex:
			if len(l.Holders) > 1 || exclusive != len(l.Holders) {
				return bad("mutex %q has %d holders", name, len(l.Holders))
			}
		case KindRW:
			if exclusive > 1 || (exclusive == 1 && len(l.Holders) > 1) {
				return bad("read-write lock %q has a writer beside other holders", name)
			}
		case KindSemaphore:
			if l.Capacity < 1 || l.Capacity > MaxCapacity || permits > l.Capacity || exclusive > 0 {
				return bad("semaphore %q holds %d of %d permits", name, permits, l.Capacity)
			}
		default:
			return bad("lock %q is of unknown kind %d", name, l.Kind)
		}
		seen := map[uint64]bool{}
		for i, id := range l.Queue {
			w := t.waiters[id]
			if w == nil || seen[id] {
				return bad("lock %q queues waiter %d, unknown or twice", name, id)
			}
			// Waiters queue in the order of their IDs: out of it, two
			// waiters for the same locks could each head one queue and
			// wait for the other for good.
			if i > 0 && id < l.Queue[i-1] {
				return bad("lock %q queues waiter %d after waiter %d, which queued later", name, id, l.Queue[i-1])
			}
			seen[id] = true
			if !slices.ContainsFunc(w.Claims, func(c Claim) bool { return c.Name == name }) {
				return bad("lock %q queues waiter %d, which does not claim it", name, id)
			}
			if owners[sessionOwner{w.Session, w.Owner}] {
				return bad("lock %q queues waiter %d of owner %q of session %d, which holds it", name, id, w.Owner, w.Session)
			}
			queuedOn[id] = append(queuedOn[id], name)
		}
	}
	for id, w := range t.waiters {
		if !t.sessions.Exists(w.Session) {
			return bad("waiter %d belongs to session %d, which the snapshot does not hold", id, w.Session)
		}
		if len(w.Claims) == 0 {
			return bad("waiter %d claims nothing", id)
		}
		if len(w.Claims) > MaxClaims {
			return bad("waiter %d claims %d locks", id, len(w.Claims))
		}
		for i, c := range w.Claims {
			if slices.ContainsFunc(w.Claims[:i], func(o Claim) bool { return o.Name == c.Name }) {
				return bad("waiter %d claims lock %q twice", id, c.Name)
			}
			if !slices.Contains(queuedOn[id], c.Name) {
				return bad("waiter %d claims lock %q but is not queued on it", id, c.Name)
			}
		}
		// Its claims are those an acquire queues (normalized, of the kind
		// and capacity of their locks): granted, any other would become
		// a holder this check refuses (and every later snapshot with it),
		// or never be granted and block its queue.
		claims, err := normalize(Request{Claims: w.Claims, Session: w.Session, Owner: w.Owner, HoldMs: w.HoldMs})
		if err != nil {
			return bad("waiter %d is no request an acquire queues: %v", id, err)
		}
		if !slices.Equal(claims, w.Claims) {
			return bad("waiter %d claims %+v, not as an acquire queues them", id, w.Claims)
		}
		for _, c := range claims {
			if l := t.locks[c.Name]; l.Kind != c.Kind || (l.Kind == KindSemaphore && l.Capacity != c.Capacity) {
				return bad("waiter %d claims %q as a %s of capacity %d; it is a %s of capacity %d", id, c.Name, c.Kind, c.Capacity, l.Kind, l.Capacity)
			}
		}
	}
	return nil
}

// MaxRevision returns the highest revision the table holds: a holder's
// token (the revision of its grant), a waiter's ID (that of its acquire), a
// force-release record's revision. A restore checks it against the
// snapshot's index.
func (t *Table) MaxRevision() uint64 {
	var rev uint64
	for _, l := range t.locks {
		for _, h := range l.Holders {
			rev = max(rev, h.Token)
		}
	}
	for id := range t.waiters {
		rev = max(rev, id)
	}
	for _, f := range t.forced {
		rev = max(rev, f.Revision)
	}
	return rev
}

// Adopt takes over the content of other, keeping t's wiring.
func (t *Table) Adopt(other *Table) {
	t.locks, t.waiters, t.bySession, t.forced, t.holders, t.queued = other.locks, other.waiters, other.bySession, other.forced, other.holders, other.queued
	// The ends remembered belong to the history the table leaves.
	t.ends, t.endNext = other.ends, other.endNext
	if t.observer != nil {
		t.observer.Replaced(t.Holds())
	}
}

// Reset empties the table.
func (t *Table) Reset() { t.Adopt(NewTable(t.sessions)) }
