package checker

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/tests/robustness/history"
)

// rwLost is a conversion of the read-write lock answered LOST: the grant it
// converted had ended, and it took nothing.
func rwLost(p int, kind history.Kind, call, ret int64, f ...func(*history.Op)) history.Op {
	return semop(p, kind, call, ret, history.OK, both(append([]func(*history.Op){onKey("rw"), func(o *history.Op) { o.Lost = true }}, f...)...))
}

// TestSemModelConversionAnsweredLost checks conversions answered LOST: legal
// only where the owner's grant may have ended (a force-release, its hold
// time, its session), and taking nothing.
func TestSemModelConversionAnsweredLost(t *testing.T) {
	p := protected(5000)
	tests := []semCase{
		{"an upgrade answered LOST after a force-release of every holder, then another writer", []history.Op{
			rwRead(0, 0, 10, 5, p), forced(2, "rw", 11, 12, 0, 1), rwLost(0, KindSemUpgrade, 20, 30, p),
			rwInspected(2, 31, 32), rwWrite(1, 40, 50, 9, p),
		}, true},
		{"a downgrade answered LOST after a force-release of its token", []history.Op{
			rwWrite(0, 0, 10, 5, p), forced(2, "rw", 11, 12, 5, 1), rwLost(0, KindSemDowngrade, 20, 30, p), rwRead(1, 40, 50, 9, p),
		}, true},
		{"an upgrade answered LOST once its hold time may be over", []history.Op{
			rwRead(0, 0, 10, 5, p, held(100)), rwRead(1, 11, 20, 8, p), rwLost(0, KindSemUpgrade, 150, 160, p),
			rwInspected(2, 170, 171, reader(1, 8)),
		}, true},
		{"an upgrade answered LOST, its hold time over by its return only", []history.Op{
			rwRead(0, 0, 10, 5, p, held(100)), rwLost(0, KindSemUpgrade, 50, 100, p),
		}, true},
		{"a downgrade answered LOST once the hold time of the upgraded grant may be over", []history.Op{
			rwRead(0, 0, 10, 5, p, held(100)), rwConvert(0, KindSemUpgrade, 50, 60, true, 9, p, held(100)),
			rwLost(0, KindSemDowngrade, 160, 170, p),
		}, true},
		{"a downgrade answered LOST once its session may have expired", []history.Op{
			rwWrite(0, 0, 10, 5, protected(50)), rwLost(0, KindSemDowngrade, 100, 110),
		}, true},
		{"an upgrade answered LOST after its session was seen gone", []history.Op{
			rwRead(0, 0, 10, 5, p), semGone(3, 100, 20, 30), rwLost(0, KindSemUpgrade, 40, 50),
		}, true},
		{"an upgrade answered LOST, the read acquire's outcome unknown", []history.Op{
			semop(0, KindSemAcquire, 0, 10, history.Unknown, both(onKey("rw"), func(o *history.Op) { o.Count = 1 })),
			rwLost(0, KindSemUpgrade, 20, 30, p),
		}, true},
		{"an upgrade answered LOST while the reader provably holds", []history.Op{
			rwRead(0, 0, 10, 5, p), rwLost(0, KindSemUpgrade, 20, 30, p),
		}, false},
		{"a downgrade answered LOST while the writer provably holds", []history.Op{
			rwWrite(0, 0, 10, 5, p), rwLost(0, KindSemDowngrade, 20, 30, p),
		}, false},
		{"an upgrade answered LOST before the hold time may be over", []history.Op{
			rwRead(0, 0, 10, 5, p, held(100)), rwLost(0, KindSemUpgrade, 50, 60, p),
		}, false},
		{"an upgrade answered LOST after a force-release of another reader's token", []history.Op{
			rwRead(0, 0, 10, 5, p), rwRead(1, 11, 20, 8, p), forced(2, "rw", 21, 22, 8, 1), rwLost(0, KindSemUpgrade, 30, 40, p),
		}, false},
		{"a downgrade answered LOST right after the upgrade made the write grant", []history.Op{
			rwRead(0, 0, 10, 5, p, held(100)), rwConvert(0, KindSemUpgrade, 50, 60, true, 9, p, held(100)),
			rwLost(0, KindSemDowngrade, 110, 120, p),
		}, false},
		{"a grant still listed after its upgrade was answered LOST", []history.Op{
			rwRead(0, 0, 10, 5, p, held(100)), rwLost(0, KindSemUpgrade, 150, 160, p), rwInspected(2, 170, 171, reader(0, 5)),
		}, false},
		{"an upgrade answered LOST that took the write lock", []history.Op{
			rwRead(0, 0, 10, 5, p, held(100)), rwLost(0, KindSemUpgrade, 150, 160, p), rwInspected(2, 170, 171, writer(0, 9)),
		}, false},
		{"an upgrade answered LOST that queued for the write lock", []history.Op{
			rwRead(0, 0, 10, 5, p), rwRead(1, 11, 20, 8, p), forced(2, "rw", 21, 22, 5, 1), rwLost(0, KindSemUpgrade, 30, 40, p),
			rwReleased(1, 41, 50, 8), rwInspected(2, 60, 61, writer(0, 12)),
		}, false},
	}
	runSemCases(t, tests, checkShared, "read-write lock rw")
}

// TestSemModelLostMarksOnlyFailedConversions checks that the Lost marker is
// read only on a conversion that did not succeed: a succeeded upgrade
// marked Lost is checked as the upgrade it is.
func TestSemModelLostMarksOnlyFailedConversions(t *testing.T) {
	p := protected(5000)
	upgraded := rwConvert(0, KindSemUpgrade, 11, 20, true, 9, p)
	upgraded.Lost = true
	require.Empty(t, checkShared(t, []history.Op{rwRead(0, 0, 10, 5, p), upgraded, rwInspected(1, 21, 22, writer(0, 9))}))
	ops := SemOperations([]history.Op{rwLost(0, KindSemUpgrade, 0, 10), rwConvert(1, KindSemUpgrade, 0, 10, false, 0)},
		SemOptions{Capacity: func(string) int { return RWCapacity }})
	require.Len(t, ops, 2)
	require.True(t, ops[0].Output.(SemOutput).Lost)
	require.False(t, ops[1].Output.(SemOutput).Lost, "refused (others read), not lost")
}
