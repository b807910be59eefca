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
				Mode: uint32(h.Mode), Permits: h.Permits, SinceUnixMs: h.SinceUnixMs, HoldMs: h.HoldMs})
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
			l.Holders = append(l.Holders, &Holder{Session: h.GetSession(), Owner: h.GetOwner(), Token: h.GetToken(), Mode: Mode(h.GetMode()),
				Permits: h.GetPermits(), SinceUnixMs: h.GetSinceUnixMs(), HoldMs: h.GetHoldMs()})
			fresh.involve(h.GetSession(), l.Name)
		}
		fresh.holders += len(l.Holders)
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
		fresh.waiters[w.ID] = w
	}
	for _, l := range fresh.locks {
		for _, id := range l.Queue {
			if fresh.waiters[id] == nil {
				return fmt.Errorf("%w: lock %q queues unknown waiter %d", record.ErrCorrupt, l.Name, id)
			}
		}
	}
	for i := uint64(0); i < hdr.GetForced(); i++ {
		var rec internalv1.LockForceRecord
		if err := r.Read(&rec); err != nil {
			return fmt.Errorf("lock force record %d: %w", i, err)
		}
		fresh.forced = append(fresh.forced, ForceRecord{Name: rec.GetName(), Token: rec.GetToken(), Session: rec.GetSession(), Owner: rec.GetOwner(),
			AtUnixMs: rec.GetAtUnixMs(), Reason: rec.GetReason(), Revision: rec.GetRevision(), HeldSince: rec.GetHeldSinceUnixMs(), ByClient: rec.GetByClient()})
	}
	t.Adopt(fresh)
	return nil
}

// Adopt takes over the content of other, keeping t's wiring.
func (t *Table) Adopt(other *Table) {
	t.locks, t.waiters, t.bySession, t.forced, t.holders = other.locks, other.waiters, other.bySession, other.forced, other.holders
	if t.observer != nil {
		t.observer.Replaced(t.Holds())
	}
}

// Reset empties the table.
func (t *Table) Reset() { t.Adopt(NewTable(t.sessions)) }
