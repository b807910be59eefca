package ids

import (
	"bytes"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/internal/fsm/record"
	"github.com/concord-dev/concord/internal/session"
)

type live map[int64]bool

func (l live) Exists(id int64) bool { return l[id] }

func TestWorkerLeaseGuardAndHighWater(t *testing.T) {
	sessions := live{1: true, 2: true, 3: true}
	tb := NewTable(sessions)
	w0, err := tb.LeaseWorker(1000, "p", 1, 1, "a", 500)
	require.NoError(t, err)
	require.EqualValues(t, 0, w0.ID)
	w1, err := tb.LeaseWorker(1000, "p", 1, 2, "b", 500)
	require.NoError(t, err)
	require.EqualValues(t, 1, w1.ID)
	_, err = tb.LeaseWorker(1000, "p", 1, 3, "c", 500)
	require.ErrorIs(t, err, ErrNoWorkerIDs)

	require.True(t, tb.HasPool("p"))
	require.False(t, tb.HasPool("q"))
	p, ok := tb.Pool("p")
	require.True(t, ok)
	require.Equal(t, 1, p.WorkerBits)
	p.Workers[0].Owner = "changed"
	p2, _ := tb.Pool("p")
	require.Equal(t, "a", p2.Workers[0].Owner, "Pool returns a copy")
	_, ok = tb.Pool("q")
	require.False(t, ok)

	hw, err := tb.ReserveWorker(1000, "p", 0, 1, "a", 5000)
	require.NoError(t, err)
	require.EqualValues(t, 5000, hw)
	hw, err = tb.ReserveWorker(1000, "p", 0, 1, "a", 4000)
	require.NoError(t, err)
	require.EqualValues(t, 5000, hw, "the mark never goes down")
	_, err = tb.ReserveWorker(1000, "p", 0, 2, "b", 9000)
	require.ErrorIs(t, err, ErrWorkerNotHeld)
	// A mark far past the clock would stall the worker's next holder.
	for _, until := range []int64{-1, 1000 + MaxReserveAheadMs + 1, math.MaxInt64} {
		_, err = tb.ReserveWorker(1000, "p", 0, 1, "a", until)
		require.ErrorIs(t, err, ErrInvalid, "until %d", until)
	}
	hw, err = tb.ReserveWorker(1000, "p", 0, 1, "a", 1000+MaxReserveAheadMs)
	require.NoError(t, err)
	require.EqualValues(t, 1000+MaxReserveAheadMs, hw, "the bound itself is allowed")
	hw, err = tb.ReserveWorker(1000, "p", 0, 1, "a", 5000)
	require.NoError(t, err)
	require.EqualValues(t, 1000+MaxReserveAheadMs, hw)

	// Session 1 ends: worker 0 is freed but guarded for 500 ms.
	delete(sessions, 1)
	require.EqualValues(t, 1, tb.EndSession(2000, 1))
	_, err = tb.LeaseWorker(2400, "p", 1, 3, "c", 500)
	require.ErrorIs(t, err, ErrNoWorkerIDs, "inside the guard interval")
	w, err := tb.LeaseWorker(2500, "p", 1, 3, "c", 500)
	require.NoError(t, err)
	require.EqualValues(t, 0, w.ID)
	require.EqualValues(t, 1000+MaxReserveAheadMs, w.HighWater, "the new holder learns the old holder's mark")

	_, err = tb.LeaseWorker(2500, "p", 2, 3, "c", 500)
	require.ErrorIs(t, err, ErrLayoutMismatch)
	_, err = tb.LeaseWorker(2500, "q", 1, 99, "c", 500)
	require.ErrorIs(t, err, session.ErrNotFound)
	require.ErrorIs(t, tb.ReleaseWorker(2600, "p", 1, 3, "c"), ErrWorkerNotHeld)
	require.NoError(t, tb.ReleaseWorker(2600, "p", 1, 2, "b"))
}

func TestSegmentsAndSequences(t *testing.T) {
	tb := NewTable(live{})
	_, _, err := tb.AllocSegment(1, "orders", 10)
	require.ErrorIs(t, err, ErrUnknownTag)
	_, err = tb.CreateTag(1, "orders", 1000, 100)
	require.NoError(t, err)
	_, err = tb.CreateTag(2, "orders", 1000, 100)
	require.NoError(t, err, "creating again with the same settings is idempotent")
	_, err = tb.CreateTag(2, "orders", 1, 100)
	require.ErrorIs(t, err, ErrTagExists)
	s, e, err := tb.AllocSegment(3, "orders", 100)
	require.NoError(t, err)
	require.EqualValues(t, 1000, s)
	require.EqualValues(t, 1100, e)
	s, _, err = tb.AllocSegment(4, "orders", 5)
	require.NoError(t, err)
	require.EqualValues(t, 1100, s)
	_, _, err = tb.AllocSegment(4, "orders", 0)
	require.ErrorIs(t, err, ErrInvalid)

	first, last, err := tb.NextSequence("invoice", 3)
	require.NoError(t, err)
	require.Equal(t, [2]int64{1, 3}, [2]int64{first, last})
	first, last, err = tb.NextSequence("invoice", 1)
	require.NoError(t, err)
	require.Equal(t, [2]int64{4, 4}, [2]int64{first, last})

	_, err = tb.CreateTag(5, "huge", 1<<62, 1)
	require.NoError(t, err)
	// At the end of the range a segment is what is left, not refused while
	// numbers remain; then the tag is exhausted.
	start, end, err := tb.AllocSegment(6, "huge", 1<<62)
	require.NoError(t, err)
	require.Equal(t, [2]int64{1 << 62, math.MaxInt64}, [2]int64{start, end})
	_, _, err = tb.AllocSegment(6, "huge", 1)
	require.ErrorIs(t, err, ErrExhausted)
	_, err = tb.CreateTag(5, "nearly", math.MaxInt64-4, 5)
	require.NoError(t, err)
	start, end, err = tb.AllocSegment(6, "nearly", 5)
	require.NoError(t, err)
	require.Equal(t, [2]int64{math.MaxInt64 - 4, math.MaxInt64}, [2]int64{start, end}, "the 4 numbers left")

	// Snapshot round trip.
	var buf bytes.Buffer
	n, write := tb.Capture()
	w := record.NewWriter(&buf)
	require.NoError(t, write(w))
	require.NoError(t, w.Flush())
	got := NewTable(live{})
	require.NoError(t, got.Restore(n, record.NewReader(&buf)))
	require.Equal(t, tb.Tags(), got.Tags())
	require.EqualValues(t, 4, got.Sequence("invoice"))
}

// A restore's bump moves every tag and sequence past the values the old
// cluster may have handed out, never past the int64 range; 0 moves none.
func TestBumpMovesTagsAndSequences(t *testing.T) {
	tb := NewTable(live{})
	_, err := tb.CreateTag(0, "orders", 100, 10)
	require.NoError(t, err)
	_, err = tb.CreateTag(0, "edge", math.MaxInt64-5, 1)
	require.NoError(t, err)
	start, _, err := tb.AllocSegment(0, "orders", 10)
	require.NoError(t, err)
	require.EqualValues(t, 100, start)
	_, last, err := tb.NextSequence("invoices", 3)
	require.NoError(t, err)
	require.EqualValues(t, 3, last)

	tags, seqs := tb.Bump(0)
	require.Zero(t, tags+seqs)
	tags, seqs = tb.Bump(1000)
	require.Equal(t, 2, tags)
	require.Equal(t, 1, seqs)
	start, _, err = tb.AllocSegment(0, "orders", 10)
	require.NoError(t, err)
	require.EqualValues(t, 1110, start, "the next segment starts the bump past the last one handed out")
	first, _, err := tb.NextSequence("invoices", 1)
	require.NoError(t, err)
	require.EqualValues(t, 1004, first)
	tg, _ := tb.Tag("edge")
	require.EqualValues(t, int64(math.MaxInt64), tg.Next, "capped at the end of the range")
	_, _, err = tb.AllocSegment(0, "edge", 1)
	require.ErrorIs(t, err, ErrExhausted)
}
