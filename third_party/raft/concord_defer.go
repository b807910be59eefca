package raft

import (
	"sync/atomic"
	"time"
)

// concord: deferred entries.
//
// An entry applied with ApplyNotifyDeferred is one whose caller does not
// need it soon (concord's acquire of a lock that others already wait for:
// the waiter only joins a queue). The leader loop parks such entries for up
// to the time each allows and dispatches them with the next entry that is
// not deferred, ahead of it, so that both share one write of the leader's
// log and one append to each follower, instead of two writes in a row on
// the same disks. Parked entries are dispatched when their time is up,
// when a batch arrives that holds any entry not deferred, before a
// configuration change, or when maxAppendEntries of them wait. They are
// never dispatched out of their arrival order relative to each other or
// to later entries. A leader that steps down answers them ErrNotLeader
// (none was dispatched, so none can be applied), a user restore
// ErrAbortedByRestore, and a leadership transfer in progress, when they
// come due, ErrLeadershipTransferInProgress.

// deferred is the leader's set of parked entries. Main goroutine only.
type deferred struct {
	parked   []*logFuture
	deadline time.Time
	timer    *time.Timer
	// total counts the entries ever parked; read by DeferredParked.
	total atomic.Uint64
}

// DeferredParked reports how many entries this node's leader loop has
// parked (ApplyNotifyDeferred) since it started: those that arrived in a
// batch of deferred entries only. Safe to call from any goroutine.
func (r *Raft) DeferredParked() uint64 { return r.leaderState.deferred.total.Load() }

// ApplyNotifyDeferred is ApplyNotify for an entry that may wait up to
// within for company before the leader writes it (see above). within must
// be positive; the wait adds at most within to the entry's commit time.
func (r *Raft) ApplyNotifyDeferred(cmd []byte, within time.Duration, done func(ApplyFuture)) bool {
	f := newApplyFuture(Log{Data: cmd})
	f.deferFor = within
	f.notify = func(error) { done(f) }
	return r.offer(f)
}

// park keeps ready for later if every entry in it may wait, and reports
// whether it did.
func (d *deferred) park(ready []*logFuture, max int) bool {
	for _, f := range ready {
		if f.deferFor <= 0 {
			return false
		}
	}
	if len(d.parked)+len(ready) > max {
		return false
	}
	now := time.Now()
	for _, f := range ready {
		if at := now.Add(f.deferFor); len(d.parked) == 0 || at.Before(d.deadline) {
			d.deadline = at
			if d.timer == nil {
				d.timer = time.NewTimer(f.deferFor)
			} else {
				d.timer.Reset(f.deferFor)
			}
		}
		d.parked = append(d.parked, f)
	}
	d.total.Add(uint64(len(ready)))
	return true
}

// due is the channel that fires when the parked entries' time is up; nil
// when none is parked.
func (d *deferred) due() <-chan time.Time {
	if len(d.parked) == 0 {
		return nil
	}
	return d.timer.C
}

// take returns the parked entries followed by ready, and forgets them.
func (d *deferred) take(ready []*logFuture) []*logFuture {
	if len(d.parked) == 0 {
		return ready
	}
	out := append(d.parked, ready...)
	d.parked = nil
	d.timer.Stop()
	return out
}

// refuse answers every parked entry with err, which must say that it was
// not applied.
func (d *deferred) refuse(err error) {
	for _, f := range d.parked {
		f.respond(err)
	}
	d.parked = nil
	if d.timer != nil {
		d.timer.Stop()
	}
}
