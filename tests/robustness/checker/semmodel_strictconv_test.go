package checker

import (
	"testing"

	"github.com/concord-dev/concord/tests/robustness/history"
)

// TestSemModelConversionNeedsTheGrant checks that a conversion that
// succeeds is legal only where its owner may still hold the grant it
// converts (cluster rules version 2: a conversion of a grant that has ended
// is answered LOST and takes nothing, never granted anew), while every
// order porcupine may choose among operations concurrent with it (a
// force-release, an acquire or a conversion of unknown outcome, an expiry)
// is still allowed.
func TestSemModelConversionNeedsTheGrant(t *testing.T) {
	p := protected(5000)
	acquireUnknown := semop(0, KindSemAcquire, 0, 10, history.Unknown, both(onKey("rw"), func(o *history.Op) { o.Count = 1 }))
	tests := []semCase{
		// Granted while the owner holds nothing.
		{"an upgrade granted after a force-release of every holder", []history.Op{
			rwRead(0, 0, 10, 5, p), rwRead(1, 0, 10, 5, p), forced(3, "rw", 11, 12, 0, 2),
			rwConvert(0, KindSemUpgrade, 20, 30, true, 14, p), rwInspected(2, 31, 32, writer(0, 14)),
		}, false},
		{"a downgrade granted after a force-release of its token", []history.Op{
			rwWrite(0, 0, 10, 5, p), forced(3, "rw", 11, 12, 5, 1), rwConvert(0, KindSemDowngrade, 20, 30, true, 14, p),
		}, false},
		{"an upgrade granted after its owner released", []history.Op{
			rwRead(0, 0, 10, 5, p), rwReleased(0, 11, 20, 5), rwConvert(0, KindSemUpgrade, 30, 40, true, 14, p),
		}, false},
		{"an upgrade granted to an owner that never held", []history.Op{
			rwConvert(0, KindSemUpgrade, 0, 10, true, 5, p),
		}, false},
		{"a downgrade granted after an inspection saw the owner's grant gone", []history.Op{
			rwWrite(0, 0, 10, 5, protected(50)), rwInspected(2, 100, 110), rwConvert(0, KindSemDowngrade, 120, 130, true, 14, p),
		}, false},
		{"an upgrade refused (others read) after a force-release of the owner's token", []history.Op{
			rwRead(0, 0, 10, 5, p), rwRead(1, 11, 20, 8, p), forced(3, "rw", 21, 22, 5, 1),
			rwConvert(0, KindSemUpgrade, 30, 40, false, 0, p),
		}, false},
		{"an upgrade of unknown outcome after a force-release took the write lock", []history.Op{
			rwRead(0, 0, 10, 5, p), forced(3, "rw", 11, 12, 0, 1),
			semop(0, KindSemUpgrade, 20, 30, history.Unknown, both(onKey("rw"), p)), rwInspected(2, 40, 41, writer(0, 14)),
		}, false},
		{"an upgrade granted while a force-release of its read token, concurrent with it, released the reader", []history.Op{
			rwRead(0, 0, 10, 5, p), forced(3, "rw", 20, 40, 5, 1), rwConvert(0, KindSemUpgrade, 25, 35, true, 14, p),
		}, false},

		// The grant may still be held: legal.
		{"an upgrade granted, concurrent with a force-release of its read token that found nothing", []history.Op{
			rwRead(0, 0, 10, 5, p), forced(3, "rw", 20, 40, 5, 0), rwConvert(0, KindSemUpgrade, 25, 35, true, 14, p),
			rwInspected(2, 50, 51, writer(0, 14)),
		}, true},
		{"an upgrade granted, concurrent with a force-release of every holder", []history.Op{
			rwRead(0, 0, 10, 5, p), forced(3, "rw", 20, 40, 0, 1), rwConvert(0, KindSemUpgrade, 25, 35, true, 14, p),
			rwInspected(2, 50, 51),
		}, true},
		{"an upgrade granted, the read acquire's outcome unknown", []history.Op{
			acquireUnknown, rwConvert(0, KindSemUpgrade, 20, 30, true, 14, p), rwInspected(2, 40, 41, writer(0, 14)),
		}, true},
		{"an upgrade granted once the read grant's hold time may be over", []history.Op{
			rwRead(0, 0, 10, 5, p, held(100)), rwConvert(0, KindSemUpgrade, 150, 160, true, 14, p, held(100)),
			rwInspected(2, 170, 171, writer(0, 14)),
		}, true},
		{"a downgrade granted once the write grant's session may have expired", []history.Op{
			rwWrite(0, 0, 10, 5, protected(50)), rwConvert(0, KindSemDowngrade, 100, 110, true, 5),
			rwInspected(2, 120, 121, reader(0, 5)),
		}, true},
		{"an upgrade of unknown outcome after a force-release, then another writer", []history.Op{
			rwRead(0, 0, 10, 5, p), forced(3, "rw", 11, 12, 0, 1),
			semop(0, KindSemUpgrade, 20, 30, history.Unknown, both(onKey("rw"), p)), rwWrite(1, 40, 50, 14, p),
			rwInspected(2, 60, 61, writer(1, 14)),
		}, true},
		{"an upgrade refused (others read), concurrent with a force-release of the owner's token that released it", []history.Op{
			rwRead(0, 0, 10, 5, p), rwRead(1, 11, 20, 8, p), forced(3, "rw", 30, 50, 5, 1),
			rwConvert(0, KindSemUpgrade, 35, 45, false, 0, p), rwInspected(2, 60, 61, reader(1, 8)),
		}, true},
	}
	runSemCases(t, tests, checkShared, "read-write lock rw")
}
