package kv

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func ev(rev uint64, key string) Event {
	return Event{Rev: rev, Type: EventPut, Item: &Item{Key: []byte(key), ModRev: rev}}
}

func TestHistoryReadsWholeRevisionsInOrder(t *testing.T) {
	h := NewHistory(100, 0)
	h.Append([]Event{ev(1, "a"), ev(2, "b"), ev(2, "a"), ev(3, "c")})
	h.Advance(5)
	all := Span{Start: nil}
	evs, through, _, err := h.Read(1, all, 2)
	require.NoError(t, err)
	require.Len(t, evs, 3, "the second revision is not split")
	require.EqualValues(t, 2, through)
	evs, through, _, err = h.Read(through+1, all, 0)
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.EqualValues(t, 5, through)

	onlyA := Span{Start: []byte("a"), Single: true}
	evs, _, _, err = h.Read(1, onlyA, 0)
	require.NoError(t, err)
	require.Len(t, evs, 2)
}

func TestHistoryCompactsOldest(t *testing.T) {
	h := NewHistory(3, 0)
	h.Append([]Event{ev(1, "a"), ev(2, "a"), ev(3, "a"), ev(4, "a")})
	h.Advance(4)
	_, _, _, err := h.Read(1, Span{}, 0)
	require.ErrorIs(t, err, ErrCompacted)
	evs, _, _, err := h.Read(2, Span{}, 0)
	require.NoError(t, err)
	require.Len(t, evs, 3)

	h.Reset(10)
	_, _, _, err = h.Read(10, Span{}, 0)
	require.ErrorIs(t, err, ErrCompacted)
	evs, through, wait, err := h.Read(11, Span{}, 0)
	require.NoError(t, err)
	require.Empty(t, evs)
	require.EqualValues(t, 10, through)
	select {
	case <-wait:
		t.Fatal("wait closed before anything happened")
	default:
	}
	h.Advance(11)
	select {
	case <-wait:
	default:
		t.Fatal("wait not closed by Advance")
	}
}

func TestHistoryByteBound(t *testing.T) {
	h := NewHistory(1000, 3*ev(1, "a").size())
	for i := uint64(1); i <= 10; i++ {
		h.Append([]Event{ev(i, "a")})
	}
	h.Advance(10)
	require.EqualValues(t, 7, h.Compacted())
}

// Events appended before Advance are not read yet: a read in between
// would report them below its "through" revision and deliver them again on
// the next read. (Regression: found by tests/robustness, bug 6.)
func TestHistoryHidesEventsUntilAdvance(t *testing.T) {
	h := NewHistory(100, 0)
	h.Append([]Event{ev(1, "a")})
	h.Advance(1)
	h.Append([]Event{ev(2, "b"), ev(3, "c")})
	evs, through, _, err := h.Read(2, Span{}, 0)
	require.NoError(t, err)
	require.Empty(t, evs)
	require.EqualValues(t, 1, through)
	h.Advance(3)
	evs, through, _, err = h.Read(through+1, Span{}, 0)
	require.NoError(t, err)
	require.Len(t, evs, 2)
	require.EqualValues(t, 3, through)
}
