package lock

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/internal/clock"
	"github.com/concord-dev/concord/internal/fsm/record"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
)

func holderOf(t *testing.T, tb *Table, name string, session int64, owner string) Holder {
	t.Helper()
	l, _, ok := tb.Get(name)
	require.True(t, ok, "lock %q", name)
	h := l.holder(session, owner)
	require.NotNil(t, h, "no holder %d/%s of %q", session, owner, name)
	return *h
}

// A checkpoint records the count of exactly the grant it names, only
// grows, never passes the hold time, and survives a snapshot; an upgrade,
// a new grant, starts from nothing.
func TestCheckpointHold(t *testing.T) {
	tb, _, _ := newTable()
	_, err := tb.Acquire(1, 1, Request{Claims: []Claim{reader("rw")}, Session: 1, Owner: "a", HoldMs: 10_000})
	require.NoError(t, err)
	_, err = tb.Acquire(2, 2, Request{Claims: []Claim{mutex("plain")}, Session: 2, Owner: "b"})
	require.NoError(t, err)
	ref := HoldRef{Name: "rw", Token: 1, Session: 1, Owner: "a"}

	require.True(t, tb.CheckpointHold(3, 3, ref, 4_000))
	require.Equal(t, int64(4_000), holderOf(t, tb, "rw", 1, "a").HoldCountedMs)
	require.False(t, tb.CheckpointHold(4, 4, ref, 3_000), "a lower count")
	require.False(t, tb.CheckpointHold(4, 4, ref, 4_000), "the same count")
	require.Equal(t, int64(4_000), holderOf(t, tb, "rw", 1, "a").HoldCountedMs)

	_, before := encode(t, tb)
	for _, other := range []HoldRef{
		{Name: "rw", Token: 2, Session: 1, Owner: "a"},    // another token
		{Name: "rw", Token: 1, Session: 2, Owner: "a"},    // another session
		{Name: "rw", Token: 1, Session: 1, Owner: "x"},    // another owner
		{Name: "none", Token: 1, Session: 1, Owner: "a"},  // no such lock
		{Name: "plain", Token: 2, Session: 2, Owner: "b"}, // no hold time
	} {
		require.False(t, tb.CheckpointHold(5, 5, other, 9_000), "%+v", other)
	}
	_, after := encode(t, tb)
	require.Equal(t, before, after, "checkpoints of other grants changed the table")

	require.True(t, tb.CheckpointHold(6, 6, ref, 60_000))
	require.Equal(t, int64(10_000), holderOf(t, tb, "rw", 1, "a").HoldCountedMs, "the count stops at the hold time")
	require.Equal(t, []Grant{{Name: "rw", Session: 1, Owner: "a", Token: 1, HoldMs: 10_000, Since: 1, HoldCountedMs: 10_000}}, tb.Holds())

	n, snap := encode(t, tb)
	restored := NewTable(liveSessions{1: true, 2: true})
	require.NoError(t, restored.Restore(n, record.NewReader(bytes.NewReader(snap))))
	require.Equal(t, int64(10_000), holderOf(t, restored, "rw", 1, "a").HoldCountedMs)

	// The upgrade is a new grant (its own token, its time from now): its
	// hold time is counted anew.
	out, err := tb.Acquire(7, 7, Request{Claims: []Claim{writer("rw")}, Session: 1, Owner: "a", HoldMs: 10_000})
	require.NoError(t, err)
	require.Equal(t, Outcome{State: Granted, Token: 7, Converted: 1}, out)
	require.Zero(t, holderOf(t, tb, "rw", 1, "a").HoldCountedMs)
	// A downgrade keeps the grant, and its count.
	require.True(t, tb.CheckpointHold(8, 8, HoldRef{Name: "rw", Token: 7, Session: 1, Owner: "a"}, 2_500))
	out, err = tb.Acquire(9, 9, Request{Claims: []Claim{reader("rw")}, Session: 1, Owner: "a", HoldMs: 10_000})
	require.NoError(t, err)
	require.Equal(t, Outcome{State: Granted, Token: 7, Converted: 7}, out)
	require.Equal(t, int64(2_500), holderOf(t, tb, "rw", 1, "a").HoldCountedMs)
}

// A snapshot whose holder counted more than its hold time, or less than
// nothing, is refused as corrupt.
func TestCheckpointedCountOutsideTheHoldTimeIsCorrupt(t *testing.T) {
	for _, counted := range []int64{-1, 1_001} {
		var buf bytes.Buffer
		w := record.NewWriter(&buf)
		require.NoError(t, w.Write(&internalv1.LockSectionHeader{Locks: 1}))
		require.NoError(t, w.Write(&internalv1.LockRecord{Name: "m", Kind: uint32(KindMutex), Holders: []*internalv1.LockHolderRecord{
			{Session: 1, Owner: "a", Token: 1, Mode: uint32(Exclusive), Permits: 1, SinceUnixMs: 1, HoldMs: 1_000, HoldCountedMs: counted}}}))
		require.NoError(t, w.Flush())
		err := NewTable(liveSessions{1: true}).Restore(2, record.NewReader(bytes.NewReader(buf.Bytes())))
		require.ErrorIs(t, err, record.ErrCorrupt, "counted %d", counted)
	}
}

// The tracker gives a grant the rest of its hold time after what was
// checkpointed, and checkpoints what it counts every interval while more
// than an interval is left.
func TestTrackerCountsOnFromTheCheckpoint(t *testing.T) {
	fc := clock.NewFake(time.Unix(1_000, 0))
	tr := NewHoldTracker(fc)
	tr.SetCheckpointEvery(time.Second)
	ref := HoldRef{Name: "m", Token: 5, Session: 1, Owner: "a"}
	short := HoldRef{Name: "s", Token: 6, Session: 1, Owner: "b"}
	tr.Start([]Grant{
		{Name: "m", Token: 5, Session: 1, Owner: "a", HoldMs: 10_000, HoldCountedMs: 6_500},
		{Name: "s", Token: 6, Session: 1, Owner: "b", HoldMs: 900}, // under an interval: never checkpointed
	})

	cps, next := tr.DueCheckpoints(10)
	require.Empty(t, cps)
	require.Equal(t, time.Second, next)
	fc.Advance(time.Second)
	due, _ := tr.Due(10)
	require.Equal(t, []HoldRef{short}, due)
	cps, _ = tr.DueCheckpoints(10)
	require.Equal(t, []HoldCheckpoint{{Ref: ref, CountedMs: 7_500}}, cps)
	fc.Advance(time.Second)
	cps, _ = tr.DueCheckpoints(10)
	require.Equal(t, []HoldCheckpoint{{Ref: ref, CountedMs: 8_500}}, cps)
	fc.Advance(time.Second)
	cps, _ = tr.DueCheckpoints(10)
	require.Equal(t, []HoldCheckpoint{{Ref: ref, CountedMs: 9_500}}, cps, "1.5 s were left at the last one, more than an interval")
	due, _ = tr.Due(10)
	require.Empty(t, due, "500 ms of the hold time are left")
	fc.Advance(400 * time.Millisecond)
	cps, _ = tr.DueCheckpoints(10)
	require.Empty(t, cps, "less than an interval was left: no more checkpoints")
	fc.Advance(100 * time.Millisecond)
	due, _ = tr.Due(10)
	require.Equal(t, []HoldRef{ref}, due, "6.5 s counted before, 3.5 s since: the hold time is over")

	// A grant made on this leader starts from nothing; its release ends
	// its checkpoints.
	tr.Granted(Grant{Name: "n", Token: 9, Session: 2, Owner: "c", HoldMs: 5_000})
	fc.Advance(time.Second)
	cps, _ = tr.DueCheckpoints(10)
	require.Equal(t, []HoldCheckpoint{{Ref: HoldRef{Name: "n", Token: 9, Session: 2, Owner: "c"}, CountedMs: 1_000}}, cps)
	tr.Released(Release{Name: "n", Token: 9, Session: 2, Owner: "c", HoldMs: 5_000})
	fc.Advance(time.Second)
	cps, _ = tr.DueCheckpoints(10)
	require.Empty(t, cps)

	// Without an interval nothing is checkpointed.
	off := NewHoldTracker(fc)
	off.Start([]Grant{{Name: "m", Token: 5, Session: 1, Owner: "a", HoldMs: 10_000}})
	fc.Advance(5 * time.Second)
	cps, _ = off.DueCheckpoints(10)
	require.Empty(t, cps)
}

// A leader that restores a snapshot counts on from the counts in it; a
// grant put back after a failed expiry proposal is due at once and is not
// checkpointed.
func TestTrackerReplaceAndRetry(t *testing.T) {
	fc := clock.NewFake(time.Unix(1_000, 0))
	tr := NewHoldTracker(fc)
	tr.SetCheckpointEvery(time.Second)
	tr.Start(nil)
	ref := HoldRef{Name: "m", Token: 5, Session: 1, Owner: "a"}
	tr.Replace([]Grant{{Name: "m", Token: 5, Session: 1, Owner: "a", HoldMs: 10_000, HoldCountedMs: 8_000}})
	fc.Advance(time.Second)
	cps, _ := tr.DueCheckpoints(10)
	require.Equal(t, []HoldCheckpoint{{Ref: ref, CountedMs: 9_000}}, cps)
	due, _ := tr.Due(10)
	require.Empty(t, due)
	fc.Advance(time.Second)
	due, _ = tr.Due(10)
	require.Equal(t, []HoldRef{ref}, due, "8 s counted in the snapshot, 2 s since")

	tr.Retry(due)
	due, _ = tr.Due(10)
	require.Equal(t, []HoldRef{ref}, due, "a retried expiry is due at once")
	tr.Retry(due)
	fc.Advance(5 * time.Second)
	cps, _ = tr.DueCheckpoints(10)
	require.Empty(t, cps, "a grant whose hold time is over is not checkpointed")
}
