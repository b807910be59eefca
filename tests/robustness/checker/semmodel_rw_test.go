package checker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/tests/robustness/history"
)

// Read-write locks ("rw"), mutexes ("m"), hold times and force-releases in
// the semaphore model. Times in milliseconds; with the test options a
// session vouched for until ms lives until ms, and a hold of h ms lasts h.

func onKey(key string) func(*history.Op) { return func(o *history.Op) { o.Key = key } }

func held(ms int64) func(*history.Op) { return func(o *history.Op) { o.HoldMs = ms } }

// rwRead and rwWrite are granted acquires of the read-write lock.
func rwRead(p int, call, ret int64, token uint64, f ...func(*history.Op)) history.Op {
	return semGranted(p, call, ret, 1, token, append([]func(*history.Op){onKey("rw")}, f...)...)
}

func rwWrite(p int, call, ret int64, token uint64, f ...func(*history.Op)) history.Op {
	return semGranted(p, call, ret, RWCapacity, token, append([]func(*history.Op){onKey("rw")}, f...)...)
}

func rwConvert(p int, kind history.Kind, call, ret int64, ok bool, token uint64, f ...func(*history.Op)) history.Op {
	return semop(p, kind, call, ret, history.OK, both(append([]func(*history.Op){onKey("rw"), func(o *history.Op) { o.Succeeded, o.Token = ok, token }}, f...)...))
}

func rwReleased(p int, call, ret int64, token uint64) history.Op {
	return semop(p, KindSemRelease, call, ret, history.OK, both(onKey("rw"), func(o *history.Op) { o.Succeeded, o.Token = true, token }))
}

func rwInspected(p int, call, ret int64, holders ...SemHolderView) history.Op {
	return semop(p, KindSemInspect, call, ret, history.OK, both(onKey("rw"), func(o *history.Op) {
		o.Owner, o.Holders, o.Value = "", len(holders), EncodeSemHolders(holders)
	}))
}

// forced is a force-release of key under token that released n holders
// (n = 0: refused, nothing held).
func forced(p int, key string, call, ret int64, token uint64, n int) history.Op {
	return semop(p, KindSemForce, call, ret, history.OK, func(o *history.Op) {
		o.Key, o.Owner, o.Session, o.Token, o.Holders, o.Succeeded = key, "", 0, token, n, n > 0
	})
}

func reader(p int, token uint64) SemHolderView { return hv(p, 1, token) }
func writer(p int, token uint64) SemHolderView { return hv(p, RWCapacity, token) }

func checkShared(t *testing.T, ops []history.Op) []Violation {
	t.Helper()
	opt := SemOptions{
		LockOptions: LockOptions{MaxClockRate: 1, Margin: func(time.Duration) time.Duration { return 0 }},
		Capacity: func(name string) int {
			switch name {
			case "rw":
				return RWCapacity
			case "m":
				return 1
			}
			return 3
		},
	}
	_, vs := CheckLinearizable(SemModel, SemOperations(ops, opt), LinearizableOptions{Name: "semaphores", Timeout: 10 * time.Second, PartitionName: SemPartitionName})
	return vs
}

// semCase is a history and whether the model must accept it.
type semCase struct {
	name  string
	ops   []history.Op
	legal bool
}

// runSemCases checks each case; an illegal one must be reported as a
// linearizability violation naming partition (when not empty).
func runSemCases(t *testing.T, cases []semCase, check func(*testing.T, []history.Op) []Violation, partition string) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			vs := check(t, tt.ops)
			if tt.legal {
				require.Empty(t, vs)
				return
			}
			require.NotEmpty(t, vs)
			require.Equal(t, "linearizability", vs[0].Checker)
			if partition != "" {
				require.Contains(t, vs[0].Summary, partition)
			}
		})
	}
}

func TestSemModelReadWriteLocks(t *testing.T) {
	p := protected(5000)
	tests := []semCase{
		{"two readers, inspected, released", []history.Op{
			rwRead(0, 0, 10, 5, p), rwRead(1, 11, 20, 8, p), rwInspected(2, 21, 22, reader(0, 5), reader(1, 8)),
			rwReleased(0, 23, 30, 5), rwReleased(1, 31, 40, 8), rwWrite(2, 41, 50, 12),
		}, true},
		{"a write acquire of unknown outcome granted after its session was seen gone", []history.Op{
			semop(1, KindSemAcquire, 0, 5, history.Unknown, both(onKey("rw"), func(o *history.Op) { o.Count = RWCapacity })),
			semGone(1, 101, 15, 20), rwInspected(2, 30, 31, writer(1, 12)),
		}, false},
		{"an upgrade of unknown outcome granted after its session was seen gone", []history.Op{
			rwRead(1, 0, 10, 5), semop(1, KindSemUpgrade, 11, 15, history.Unknown, onKey("rw")),
			semGone(1, 101, 16, 20), rwInspected(2, 30, 31, writer(1, 12)),
		}, false},
		{"a writer granted while a reader holds", []history.Op{rwRead(0, 0, 10, 5, p), rwWrite(1, 11, 20, 8)}, false},
		{"a reader granted while a writer holds", []history.Op{rwWrite(0, 0, 10, 5, p), rwRead(1, 11, 20, 8)}, false},
		{"a writer granted once the reader's session may have expired", []history.Op{
			rwRead(0, 0, 10, 5, protected(50)), rwWrite(1, 100, 110, 8),
		}, true},
		{"an inspection shows a writer and a reader", []history.Op{
			rwWrite(0, 0, 10, 5), rwInspected(2, 21, 22, writer(0, 5), reader(1, 5)),
		}, false},
		{"the only reader upgrades under a new token", []history.Op{
			rwRead(0, 0, 10, 5, p), rwConvert(0, KindSemUpgrade, 11, 20, true, 9, p), rwInspected(1, 21, 22, writer(0, 9)), rwReleased(0, 23, 30, 9),
		}, true},
		{"an upgrade granted while another reader holds", []history.Op{
			rwRead(0, 0, 10, 5, p), rwRead(1, 0, 10, 5, p), rwConvert(0, KindSemUpgrade, 11, 20, true, 9, p),
		}, false},
		{"an upgrade refused while another reader holds", []history.Op{
			rwRead(0, 0, 10, 5, p), rwRead(1, 0, 10, 5, p), rwConvert(0, KindSemUpgrade, 11, 20, false, 0, p), rwInspected(2, 21, 22, reader(0, 5), reader(1, 5)),
		}, true},
		{"an upgrade refused while alone", []history.Op{
			rwRead(0, 0, 10, 5, p), rwConvert(0, KindSemUpgrade, 11, 20, false, 0, p),
		}, false},
		{"an upgrade answered with the read grant's token", []history.Op{
			rwRead(0, 0, 10, 5, p), rwConvert(0, KindSemUpgrade, 11, 20, true, 5, p),
		}, false},
		{"an upgrade granted once the other reader's session may have expired", []history.Op{
			rwRead(0, 0, 10, 5, p), rwRead(1, 0, 10, 5, protected(50)), rwConvert(0, KindSemUpgrade, 100, 110, true, 9, p),
		}, true},
		{"a downgrade keeps the token and lets a reader in", []history.Op{
			rwWrite(0, 0, 10, 5, p), rwConvert(0, KindSemDowngrade, 11, 20, true, 5, p), rwRead(1, 21, 30, 12, p),
			rwInspected(2, 31, 32, reader(0, 5), reader(1, 12)),
		}, true},
		{"a downgrade answered with a new token while the write grant lives", []history.Op{
			rwWrite(0, 0, 10, 5, p), rwConvert(0, KindSemDowngrade, 11, 20, true, 9, p),
		}, false},
		{"a reader granted before the writer downgraded", []history.Op{
			rwWrite(0, 0, 10, 5, p), rwRead(1, 11, 20, 8), rwConvert(0, KindSemDowngrade, 21, 30, true, 5, p),
		}, false},
		{"a write grant lasts its hold time, then may end", []history.Op{
			rwWrite(0, 0, 10, 5, p, held(100)), rwWrite(1, 150, 160, 9, p), rwInspected(2, 161, 162, writer(1, 9)),
		}, true},
		{"a writer granted within another's hold time", []history.Op{
			rwWrite(0, 0, 10, 5, p, held(100)), rwWrite(1, 50, 60, 9, p),
		}, false},
		{"an upgrade restarts the hold clock", []history.Op{
			rwRead(0, 0, 10, 5, p, held(100)), rwConvert(0, KindSemUpgrade, 80, 90, true, 7, p), rwWrite(1, 150, 160, 9, p),
		}, false},
		{"an upgraded grant ends its hold time after the upgrade", []history.Op{
			rwRead(0, 0, 10, 5, p, held(100)), rwConvert(0, KindSemUpgrade, 80, 90, true, 7, p), rwWrite(1, 200, 210, 9, p),
		}, true},
	}
	runSemCases(t, tests, checkShared, "read-write lock rw")
}

func TestSemModelForceRelease(t *testing.T) {
	p := protected(5000)
	onM := onKey("m")
	tests := []semCase{
		{"two mutex holders", []history.Op{semGranted(0, 0, 10, 1, 5, p, onM), semGranted(1, 11, 20, 1, 8, onM)}, false},
		{"a force-release ends a protected holder", []history.Op{
			semGranted(0, 0, 10, 1, 5, p, onM), forced(2, "m", 11, 12, 0, 1), semGranted(1, 13, 20, 1, 8, p, onM),
			semop(0, KindSemRelease, 21, 22, history.OK, both(onM, func(o *history.Op) { o.Token = 5 })),
		}, true},
		{"a force-release counts a holder that was not there", []history.Op{
			semGranted(0, 0, 10, 1, 5, p, onM), forced(2, "m", 11, 12, 0, 2),
		}, false},
		{"a force-release refused while a holder is protected", []history.Op{
			semGranted(0, 0, 10, 1, 5, p, onM), forced(2, "m", 11, 12, 0, 0),
		}, false},
		{"a force-release refused once the holder may have ended", []history.Op{
			semGranted(0, 0, 10, 1, 5, protected(50), onM), forced(2, "m", 100, 101, 0, 0),
		}, true},
		{"a force-release under another token leaves the holder", []history.Op{
			semGranted(0, 0, 10, 1, 5, p, onM), forced(2, "m", 11, 12, 4, 0),
			semop(0, KindSemRelease, 21, 22, history.OK, both(onM, func(o *history.Op) { o.Succeeded, o.Token = true, 5 })),
		}, true},
		{"a holder released after its force-release", []history.Op{
			semGranted(0, 0, 10, 1, 5, p, onM), forced(2, "m", 11, 12, 5, 1),
			semop(0, KindSemRelease, 21, 22, history.OK, both(onM, func(o *history.Op) { o.Succeeded, o.Token = true, 5 })),
		}, false},
		{"a force-release of one reader by token", []history.Op{
			rwRead(0, 0, 10, 5, p), rwRead(1, 11, 20, 8, p), forced(2, "rw", 21, 22, 8, 1), rwInspected(2, 23, 24, reader(0, 5)),
		}, true},
		{"a force-release by token ends the other reader", []history.Op{
			rwRead(0, 0, 10, 5, p), rwRead(1, 11, 20, 8, p), forced(2, "rw", 21, 22, 8, 1), rwInspected(2, 23, 24),
		}, false},
		{"a force-release of unknown outcome may or may not apply", []history.Op{
			semGranted(0, 0, 10, 1, 5, p, onM),
			semop(2, KindSemForce, 11, 12, history.Unknown, func(o *history.Op) { o.Key, o.Owner, o.Session = "m", "", 0 }),
			semop(0, KindSemRelease, 21, 22, history.OK, both(onM, func(o *history.Op) { o.Succeeded, o.Token = true, 5 })),
		}, true},
	}
	runSemCases(t, tests, checkShared, "")
}

func TestSemOperationsHold(t *testing.T) {
	ops := []history.Op{rwWrite(0, 0, 10, 5, held(300))}
	got := SemOperations(ops, SemOptions{LockOptions: LockOptions{MaxClockRate: 1.5}, Capacity: func(string) int { return RWCapacity }})
	require.Len(t, got, 1)
	// 300ms at a clock 1.5x fast is 200ms, less the margin (30ms + 50ms).
	require.Equal(t, int64(120e6), got[0].Input.(SemInput).Hold)
	require.Equal(t, int64(0), got[0].Input.(SemInput).Call)
	got = SemOperations([]history.Op{rwWrite(0, 0, 10, 5)}, SemOptions{LockOptions: LockOptions{MaxClockRate: 1}, Capacity: func(string) int { return RWCapacity }})
	require.Zero(t, got[0].Input.(SemInput).Hold, "no hold time")
}

func TestSemModelForceReleaseUnknownToken(t *testing.T) {
	// The acquire's grant may carry token 7: a force-release under 7
	// may have ended it.
	ops := []history.Op{
		semop(0, KindSemAcquire, 0, 5, history.Unknown, both(onKey("m"), func(o *history.Op) { o.Count = 1 })),
		forced(2, "m", 10, 11, 7, 1),
	}
	require.Empty(t, checkShared(t, ops))
	// Not under a token below what it may carry: the lock's floor is 9.
	onM := onKey("m")
	ops = []history.Op{
		semGranted(1, 0, 5, 1, 9, onM),
		semop(1, KindSemRelease, 6, 7, history.OK, both(onM, func(o *history.Op) { o.Succeeded, o.Token = true, 9 })),
		semop(0, KindSemAcquire, 10, 15, history.Unknown, both(onM, func(o *history.Op) { o.Count = 1 })),
		forced(2, "m", 20, 21, 8, 1),
	}
	require.NotEmpty(t, checkShared(t, ops))
	ops[3] = forced(2, "m", 20, 21, 12, 1)
	require.Empty(t, checkShared(t, ops))
}

func TestSemModelMultiLock(t *testing.T) {
	onM := onKey("m")
	multi := func(o *history.Op) { o.Locks = 2 }
	// A try of two mutexes refused because the other one is held.
	require.Empty(t, checkShared(t, []history.Op{semop(0, KindSemTry, 0, 5, history.OK, both(onM, multi, func(o *history.Op) { o.Count = 1 }))}))
	// A try of this mutex alone refused while a waiter for both mutexes
	// may be queued on it, waiting for the other.
	waiter := semGranted(1, 0, 100, 1, 9, onM, multi)
	require.Empty(t, checkShared(t, []history.Op{waiter, semop(0, KindSemTry, 10, 20, history.OK, both(onM, func(o *history.Op) { o.Count = 1 }))}))
	// Not once it was granted and released.
	require.NotEmpty(t, checkShared(t, []history.Op{waiter,
		semop(1, KindSemRelease, 110, 120, history.OK, both(onM, multi, func(o *history.Op) { o.Succeeded, o.Token = true, 9 })),
		semop(0, KindSemTry, 130, 140, history.OK, both(onM, func(o *history.Op) { o.Count = 1 }))}))
	// Both parts of a grant of both mutexes still exclude others.
	require.NotEmpty(t, checkShared(t, []history.Op{semGranted(1, 0, 10, 1, 9, onM, multi, protected(5000)), semGranted(2, 11, 20, 1, 12, onM)}))
}

// A conversion of unknown outcome is taken back by the SDK (client/lock.go,
// abandon): the owner's grant, converted or not, ends at a moment of the
// SDK's choosing, while the session is still protected.
func TestSemModelUnknownConversionTakenBack(t *testing.T) {
	p, rw := protected(5000), onKey("rw")
	notHeld := semop(0, KindSemRelease, 31, 35, history.OK, both(rw, p, func(o *history.Op) { o.Token = 5 }))
	require.Empty(t, checkShared(t, []history.Op{
		rwRead(0, 0, 10, 5, p), rwRead(1, 0, 10, 8, p),
		semop(0, KindSemUpgrade, 20, 30, history.Unknown, both(rw, p)), notHeld, semGone(3, 100, 40, 50),
	}), "an upgrade taken back: the read grant released")
	require.Empty(t, checkShared(t, []history.Op{
		rwWrite(0, 0, 10, 5, p), semop(0, KindSemDowngrade, 20, 30, history.Unknown, both(rw, p)), notHeld, semGone(3, 100, 40, 50),
	}), "a downgrade taken back")
	require.Empty(t, checkShared(t, []history.Op{
		rwRead(0, 0, 10, 5, p), semop(0, KindSemUpgrade, 20, 30, history.Unknown, both(rw, p)), rwWrite(1, 40, 45, 12, p), semGone(3, 100, 60, 70),
	}), "a writer granted once the upgraded grant was taken back")
	// A known outcome keeps the protection.
	require.NotEmpty(t, checkShared(t, []history.Op{
		rwRead(0, 0, 10, 5, p), rwConvert(0, KindSemUpgrade, 20, 30, true, 9, p), rwWrite(1, 40, 45, 12, p),
	}))
}

// A try-acquire is refused only when its claim does not fit or the lock
// has waiters (internal/lock: Acquire); a single-lock waiter queues only
// behind a holder.
func TestSemModelTryRefusedWithRoom(t *testing.T) {
	p := protected(5000)
	require.NotEmpty(t, checkShared(t, []history.Op{
		rwRead(0, 0, 10, 5, p), semop(1, KindSemTry, 11, 12, history.OK, both(onKey("rw"), func(o *history.Op) { o.Count = 1 })),
	}), "a read try refused beside one reader, with no waiter")
	require.NotEmpty(t, checkSem(t, []history.Op{semGranted(0, 0, 10, 1, 5, p), semTryRefused(1, 11, 12, 1)}), "room for it, no waiter")
	require.Empty(t, checkSem(t, []history.Op{
		semGranted(0, 0, 10, 1, 5, p), semGranted(2, 5, 100, 3, 20), semTryRefused(1, 11, 12, 1), semReleased(0, 50, 60, 5),
	}), "a waiter may be queued")
	require.Empty(t, checkSem(t, []history.Op{semGranted(0, 0, 10, 2, 5, p), semTryRefused(1, 11, 12, 2)}), "no room")
}

// The session-gone observation starts before the revoke's first attempt:
// an attempt that timed out may have applied it.
func TestSemModelRevokeFromFirstAttempt(t *testing.T) {
	require.Empty(t, checkSem(t, []history.Op{
		semGranted(0, 0, 10, 1, 5, protected(2800)),
		semop(0, KindSemAcquire, 20, 30, history.Unknown, both(onKey("t"), func(o *history.Op) { o.Count = 1 })),
		semInspected(1, 50, 60),
		semGone(3, 100, 31, 3110),
	}))
}
