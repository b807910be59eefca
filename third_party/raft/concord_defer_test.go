package raft

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

type deferredOutcome struct {
	index uint64
	err   error
	at    time.Time
}

func applyDeferred(t *testing.T, r *Raft, data []byte, within time.Duration) <-chan deferredOutcome {
	t.Helper()
	ch := make(chan deferredOutcome, 1)
	// The leader takes an entry only when its loop is ready for it (the
	// apply channel may have no buffer): offer it until it does.
	for deadline := time.Now().Add(5 * time.Second); ; {
		if r.ApplyNotifyDeferred(data, within, func(f ApplyFuture) {
			ch <- deferredOutcome{f.Index(), f.Error(), time.Now()}
		}) {
			return ch
		}
		if time.Now().After(deadline) {
			t.Fatal("ApplyNotifyDeferred: the leader did not take the entry")
		}
		time.Sleep(time.Millisecond)
	}
}

func fsmHas(r *Raft, data []byte) bool {
	m := getMockFSM(r.fsm)
	m.Lock()
	defer m.Unlock()
	for _, l := range m.logs {
		if bytes.Equal(l, data) {
			return true
		}
	}
	return false
}

// TestDeferredEntriesWaitForCompany: entries applied with
// ApplyNotifyDeferred wait, in their order, for the next entry that is not
// deferred, and are dispatched with it in one batch, ahead of it.
func TestDeferredEntriesWaitForCompany(t *testing.T) {
	c := MakeCluster(3, t, steadyConfig(t))
	defer c.Close()
	leader := c.Leader()

	first := applyDeferred(t, leader, []byte("deferred-1"), time.Minute)
	second := applyDeferred(t, leader, []byte("deferred-2"), time.Minute)
	// Long enough for the leader loop to have dispatched them, had it not
	// parked them; parking is what the check below can see fail.
	time.Sleep(300 * time.Millisecond)
	select {
	case o := <-first:
		t.Fatalf("a deferred entry with nothing after it was settled at once: index %d, %v", o.index, o.err)
	default:
	}
	for _, r := range c.rafts {
		if fsmHas(r, []byte("deferred-1")) {
			t.Fatal("a parked entry was applied")
		}
	}

	f := leader.Apply([]byte("company"), 0)
	if err := f.Error(); err != nil {
		t.Fatalf("apply: %v", err)
	}
	o1, o2 := <-first, <-second
	if o1.err != nil || o2.err != nil {
		t.Fatalf("deferred entries: %v, %v", o1.err, o2.err)
	}
	if o1.index+1 != o2.index || o2.index+1 != f.Index() {
		t.Fatalf("indexes %d, %d, then the company at %d: want consecutive, in the order applied", o1.index, o2.index, f.Index())
	}
	var l1, l3 Log
	if err := leader.logs.GetLog(o1.index, &l1); err != nil {
		t.Fatal(err)
	}
	if err := leader.logs.GetLog(f.Index(), &l3); err != nil {
		t.Fatal(err)
	}
	if !l1.AppendedAt.Equal(l3.AppendedAt) {
		t.Fatalf("the deferred entry was dispatched at %v, its company at %v: want one batch", l1.AppendedAt, l3.AppendedAt)
	}
	c.WaitForReplication(3)
	for _, r := range c.rafts {
		m := getMockFSM(r.fsm)
		m.Lock()
		got := append([][]byte(nil), m.logs...)
		m.Unlock()
		want := [][]byte{[]byte("deferred-1"), []byte("deferred-2"), []byte("company")}
		if len(got) != len(want) {
			t.Fatalf("%s applied %q, want %q", r.localID, got, want)
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("%s applied %q, want %q", r.localID, got, want)
			}
		}
	}
}

// TestDeferredEntryDispatchedWhenDue: with nothing else to write, a
// deferred entry is written once its time is up, not before.
func TestDeferredEntryDispatchedWhenDue(t *testing.T) {
	c := MakeCluster(3, t, steadyConfig(t))
	defer c.Close()
	leader := c.Leader()

	const within = 200 * time.Millisecond
	long := applyDeferred(t, leader, []byte("long"), time.Minute)
	start := time.Now() // before the leader could have parked the next one
	short := applyDeferred(t, leader, []byte("short"), within)
	// The earliest deadline decides for every parked entry.
	var got []deferredOutcome
	for _, ch := range []<-chan deferredOutcome{long, short} {
		select {
		case o := <-ch:
			if o.err != nil {
				t.Fatalf("deferred entry: %v", o.err)
			}
			got = append(got, o)
		case <-time.After(10 * time.Second):
			t.Fatal("a deferred entry was not written when its time was up")
		}
	}
	if waited := got[1].at.Sub(start); waited < within {
		t.Fatalf("the entry was settled %v after it was applied, before its %v were up", waited, within)
	}
	if got[0].index+1 != got[1].index {
		t.Fatalf("indexes %d, %d: want consecutive, in the order applied", got[0].index, got[1].index)
	}
}

// TestDeferredEntriesRefusedWhenLeadershipEnds: a leader that loses its
// leadership with entries parked answers them ErrNotLeader, and no member
// ever applies them.
func TestDeferredEntriesRefusedWhenLeadershipEnds(t *testing.T) {
	conf := inmemConfig(t)
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.HeartbeatTimeout = 100 * time.Millisecond
	conf.ElectionTimeout = 100 * time.Millisecond
	c := MakeCluster(3, t, conf)
	defer c.Close()
	leader := c.Leader()

	parked := applyDeferred(t, leader, []byte("parked"), time.Minute)
	c.Disconnect(leader.localAddr)
	select {
	case o := <-parked:
		if !errors.Is(o.err, ErrNotLeader) {
			t.Fatalf("parked entry of a leader that stepped down: %v, want ErrNotLeader", o.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the parked entry of a leader that stepped down was never answered")
	}
	c.FullyConnect()
	newLeader := c.Leader()
	if err := newLeader.Apply([]byte("after"), 0).Error(); err != nil {
		t.Fatalf("apply on the new leader: %v", err)
	}
	c.WaitForReplication(1)
	for _, r := range c.rafts {
		if fsmHas(r, []byte("parked")) {
			t.Fatalf("%s applied an entry its leader refused", r.localID)
		}
	}
}

// steadyConfig keeps a test cluster's leader in place on a loaded machine
// for the seconds a test holds entries parked: the default test timeouts
// (50 ms) let a slow scheduler start an election, which would answer the
// parked entries ErrNotLeader.
func steadyConfig(t *testing.T) *Config {
	conf := inmemConfig(t)
	conf.HeartbeatTimeout = 500 * time.Millisecond
	conf.ElectionTimeout = 500 * time.Millisecond
	conf.LeaderLeaseTimeout = 500 * time.Millisecond
	return conf
}

// TestDeferredEntriesGoBeforeAConfigurationChange: a configuration change
// is not deferred and arrives after the parked entries, so they are
// written before it; and the leader counts what it parked.
func TestDeferredEntriesGoBeforeAConfigurationChange(t *testing.T) {
	c := MakeCluster(3, t, steadyConfig(t))
	defer c.Close()
	leader := c.Leader()
	before := leader.DeferredParked()

	parked := applyDeferred(t, leader, []byte("parked"), time.Minute)
	time.Sleep(100 * time.Millisecond)
	follower := c.Followers()[0]
	change := leader.RemoveServer(follower.localID, 0, 0)
	if err := change.Error(); err != nil {
		t.Fatalf("remove server: %v", err)
	}
	select {
	case o := <-parked:
		if o.err != nil {
			t.Fatalf("parked entry: %v", o.err)
		}
		if o.index >= change.Index() {
			t.Fatalf("the parked entry got index %d, the configuration change that came after it %d", o.index, change.Index())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the parked entry was not written with the configuration change")
	}
	if got := leader.DeferredParked() - before; got != 1 {
		t.Fatalf("DeferredParked grew by %d, want 1", got)
	}
}

// TestDeferredEntriesRefusedByARestore: a user restore answers the parked
// entries ErrAbortedByRestore (they would apply on top of the restored
// state), and no member ever applies them.
func TestDeferredEntriesRefusedByARestore(t *testing.T) {
	c := MakeCluster(3, t, steadyConfig(t))
	defer c.Close()
	leader := c.Leader()
	if err := leader.Apply([]byte("before"), 0).Error(); err != nil {
		t.Fatalf("apply: %v", err)
	}
	snap := leader.Snapshot()
	if err := snap.Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}

	parked := applyDeferred(t, leader, []byte("parked"), time.Minute)
	meta, reader, err := snap.Open()
	if err != nil {
		t.Fatalf("open snapshot: %v", err)
	}
	defer func() { _ = reader.Close() }()
	if err := leader.Restore(meta, reader, 5*time.Second); err != nil {
		t.Fatalf("restore: %v", err)
	}
	select {
	case o := <-parked:
		if !errors.Is(o.err, ErrAbortedByRestore) {
			t.Fatalf("parked entry at a restore: %v, want ErrAbortedByRestore", o.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the parked entry was not answered at the restore")
	}
	if err := leader.Apply([]byte("after"), 0).Error(); err != nil {
		t.Fatalf("apply after the restore: %v", err)
	}
	waitApplied(t, c, []byte("after"))
	for _, r := range c.rafts {
		if fsmHas(r, []byte("parked")) {
			t.Fatalf("%s applied an entry the restore refused", r.localID)
		}
	}
}

// TestDeferredEntriesRefusedDuringATransfer: parked entries that come due
// while a leadership transfer is in progress are answered
// ErrLeadershipTransferInProgress, as entries applied then are, and no
// member ever applies them. The transfer's target is cut off, so the
// transfer stays in progress until its timeout (ElectionTimeout), past
// the entry's deadline.
func TestDeferredEntriesRefusedDuringATransfer(t *testing.T) {
	c := MakeCluster(3, t, steadyConfig(t))
	defer c.Close()
	leader := c.Leader()
	target := c.Followers()[0]

	// The target misses an entry, so the transfer first tries to bring it
	// up to date, and keeps trying until it times out.
	c.Disconnect(target.localAddr)
	if err := leader.Apply([]byte("missed"), 0).Error(); err != nil {
		t.Fatalf("apply: %v", err)
	}
	parked := applyDeferred(t, leader, []byte("parked"), 200*time.Millisecond)
	transfer := leader.LeadershipTransferToServer(target.localID, target.localAddr)
	select {
	case o := <-parked:
		if !errors.Is(o.err, ErrLeadershipTransferInProgress) {
			t.Fatalf("parked entry that came due during a transfer: %v, want ErrLeadershipTransferInProgress", o.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the parked entry was never answered")
	}
	if err := transfer.Error(); err == nil {
		t.Fatal("the transfer to a member cut off succeeded")
	}
	c.FullyConnect()
	newLeader := c.Leader()
	if err := newLeader.Apply([]byte("after"), 0).Error(); err != nil {
		t.Fatalf("apply after the transfer: %v", err)
	}
	waitApplied(t, c, []byte("after"))
	for _, r := range c.rafts {
		if fsmHas(r, []byte("parked")) {
			t.Fatalf("%s applied an entry refused during the transfer", r.localID)
		}
	}
}

// waitApplied waits until every member of c has applied data (after a
// restore the followers catch up by snapshot, and their FSMs' logs no
// longer count every entry, so WaitForReplication cannot tell).
func waitApplied(t *testing.T, c *cluster, data []byte) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		all := true
		for _, r := range c.rafts {
			all = all && fsmHas(r, data)
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q was not applied on every member", data)
		}
	}
}

// TestDeferredEntriesRefusedAfterATransfer: a leader that hands its
// leadership on with an entry parked answers it ErrNotLeader when it steps
// down, and no member ever applies it (the caller sends it again to the
// new leader).
func TestDeferredEntriesRefusedAfterATransfer(t *testing.T) {
	c := MakeCluster(3, t, steadyConfig(t))
	defer c.Close()
	leader := c.Leader()
	target := c.Followers()[0]

	parked := applyDeferred(t, leader, []byte("parked"), time.Minute)
	if err := leader.LeadershipTransferToServer(target.localID, target.localAddr).Error(); err != nil {
		t.Fatalf("transfer: %v", err)
	}
	select {
	case o := <-parked:
		if !errors.Is(o.err, ErrNotLeader) {
			t.Fatalf("parked entry of a leader that handed its leadership on: %v, want ErrNotLeader", o.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the parked entry was never answered")
	}
	newLeader := c.Leader()
	if err := newLeader.Apply([]byte("after"), 0).Error(); err != nil {
		t.Fatalf("apply on the new leader: %v", err)
	}
	waitApplied(t, c, []byte("after"))
	for _, r := range c.rafts {
		if fsmHas(r, []byte("parked")) {
			t.Fatalf("%s applied an entry its leader refused", r.localID)
		}
	}
}

// TestDeferredEntryWrittenAfterAFailedTransfer: a transfer that fails at
// once (its target is cut off but was up to date, so the leader goes
// straight to TimeoutNow) leaves the parked entry parked, and it is
// written when it comes due, by the leader that stayed.
func TestDeferredEntryWrittenAfterAFailedTransfer(t *testing.T) {
	c := MakeCluster(3, t, steadyConfig(t))
	defer c.Close()
	leader := c.Leader()
	target := c.Followers()[0]
	c.WaitForReplication(0)

	c.Disconnect(target.localAddr)
	parked := applyDeferred(t, leader, []byte("parked"), 300*time.Millisecond)
	if err := leader.LeadershipTransferToServer(target.localID, target.localAddr).Error(); err == nil {
		t.Fatal("the transfer to a member cut off succeeded")
	}
	select {
	case o := <-parked:
		if o.err != nil {
			t.Fatalf("parked entry after a failed transfer: %v, want it written", o.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the parked entry was never answered")
	}
	c.FullyConnect()
	waitApplied(t, c, []byte("parked"))
}
