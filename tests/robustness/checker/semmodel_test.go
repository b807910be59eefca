package checker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/tests/robustness/history"
)

// semop builds a recorded operation on semaphore "s" (capacity 3 in these
// tests) by process p, owner owner(p); times in milliseconds.
func semop(p int, kind history.Kind, call, ret int64, status history.Status, f func(*history.Op)) history.Op {
	o := history.Op{Process: p, Workload: "semaphores", Kind: kind, Key: "s", Owner: owner(p), Session: int64(100 + p),
		Call: call * 1e6, Return: ret * 1e6, Status: status}
	if f != nil {
		f(&o)
	}
	return o
}

func semGranted(p int, call, ret int64, permits int64, token uint64, f ...func(*history.Op)) history.Op {
	return semop(p, KindSemAcquire, call, ret, history.OK, both(append(f, func(o *history.Op) { o.Succeeded, o.Token, o.Count = true, token, permits })...))
}

func semTryGranted(p int, call, ret int64, permits int64, token uint64) history.Op {
	return semop(p, KindSemTry, call, ret, history.OK, func(o *history.Op) { o.Succeeded, o.Token, o.Count = true, token, permits })
}

func semTryRefused(p int, call, ret int64, permits int64) history.Op {
	return semop(p, KindSemTry, call, ret, history.OK, func(o *history.Op) { o.Count = permits })
}

func semAcquireUnknown(p int, call, ret int64, permits int64) history.Op {
	return semop(p, KindSemAcquire, call, ret, history.Unknown, func(o *history.Op) { o.Count = permits })
}

func semReleased(p int, call, ret int64, token uint64) history.Op {
	return semop(p, KindSemRelease, call, ret, history.OK, func(o *history.Op) { o.Succeeded, o.Token = true, token })
}

func semNotHeld(p int, call, ret int64, token uint64) history.Op {
	return semop(p, KindSemRelease, call, ret, history.OK, func(o *history.Op) { o.Token = token })
}

func semGone(p int, sess int64, call, ret int64) history.Op {
	return semop(p, KindLockSessionGone, call, ret, history.OK, func(o *history.Op) { o.Key, o.Owner, o.Session = "", "", sess })
}

// semInspected reads holders given as owner(process) -> permits@token.
func semInspected(p int, call, ret int64, holders ...SemHolderView) history.Op {
	return semop(p, KindSemInspect, call, ret, history.OK, func(o *history.Op) {
		o.Owner, o.Holders, o.Value = "", len(holders), EncodeSemHolders(holders)
		for _, h := range holders {
			o.Count += int64(h.Permits)
		}
	})
}

func hv(p, permits int, token uint64) SemHolderView {
	return SemHolderView{Owner: owner(p), Permits: permits, Token: token}
}

func checkSem(t *testing.T, ops []history.Op) []Violation {
	t.Helper()
	opt := SemOptions{
		LockOptions: LockOptions{MaxClockRate: 1, Margin: func(time.Duration) time.Duration { return 0 }},
		Capacity:    func(string) int { return 3 },
	}
	_, vs := CheckLinearizable(SemModel, SemOperations(ops, opt), LinearizableOptions{Name: "semaphores", Timeout: 10 * time.Second, PartitionName: SemPartitionName})
	return vs
}

func TestSemModel(t *testing.T) {
	tests := []semCase{
		{"two holders within capacity, inspected, released", []history.Op{
			semGranted(0, 0, 10, 2, 5), semGranted(1, 11, 20, 1, 8), semInspected(2, 21, 22, hv(0, 2, 5), hv(1, 1, 8)),
			semReleased(0, 23, 30, 5), semReleased(1, 31, 40, 8), semInspected(2, 41, 42),
		}, true},
		{"a waiter is granted when permits are released", []history.Op{
			semGranted(0, 0, 10, 3, 5), semGranted(1, 5, 40, 2, 12), semReleased(0, 11, 15, 5), semReleased(1, 41, 50, 12),
		}, true},
		{"one release grants two waiters under one token", []history.Op{
			semGranted(0, 0, 10, 3, 5, protected(5000)), semGranted(1, 5, 40, 1, 12), semGranted(2, 6, 40, 2, 12), semReleased(0, 11, 15, 5),
			semInspected(3, 41, 42, hv(1, 1, 12), hv(2, 2, 12)),
		}, true},
		{"over capacity: two grants of 2 of 3 permits overlap", []history.Op{
			semGranted(0, 0, 10, 2, 5, protected(5000)), semGranted(1, 11, 20, 2, 8),
		}, false},
		{"over capacity: the first holder releases after the second was granted", []history.Op{
			semGranted(0, 0, 10, 2, 5), semGranted(1, 20, 30, 2, 9), semReleased(0, 40, 50, 5),
		}, false},
		{"a grant may end by expiry to make room", []history.Op{
			semGranted(0, 0, 10, 2, 5, protected(100)), semGranted(1, 200, 210, 2, 9), semNotHeld(0, 300, 310, 5), semReleased(1, 311, 320, 9),
		}, true},
		{"try-acquire granted over capacity", []history.Op{
			semGranted(0, 0, 10, 3, 5, protected(5000)), semTryGranted(1, 11, 12, 1, 9),
		}, false},
		{"try-acquire refused while held", []history.Op{semGranted(0, 0, 10, 3, 5), semTryRefused(1, 11, 12, 1)}, true},
		{"try-acquire refused while free", []history.Op{semTryRefused(1, 0, 1, 1)}, false},
		{"release by a non-holder reported ok", []history.Op{semGranted(0, 0, 10, 1, 5), semReleased(1, 11, 20, 5)}, false},
		{"release under the wrong token reported ok", []history.Op{semGranted(0, 0, 10, 1, 5), semReleased(0, 11, 20, 6)}, false},
		{"release refused while the session was known to live", []history.Op{
			semGranted(0, 0, 10, 1, 5, protected(5000)), semNotHeld(0, 100, 110, 5),
		}, false},
		{"release refused after the session may have expired", []history.Op{
			semGranted(0, 0, 10, 1, 5, protected(50)), semNotHeld(0, 100, 110, 5),
		}, true},
		{"inspection shows more permits than the capacity", []history.Op{
			semGranted(0, 0, 10, 2, 5), semGranted(1, 0, 10, 2, 8), semInspected(2, 11, 12, hv(0, 2, 5), hv(1, 2, 8)),
		}, false},
		{"inspection shows the wrong permits", []history.Op{semGranted(0, 0, 10, 2, 5), semInspected(1, 11, 12, hv(0, 1, 5))}, false},
		{"inspection shows a holder never granted", []history.Op{semInspected(1, 0, 1, hv(2, 1, 5))}, false},
		{"inspection misses a protected holder", []history.Op{semGranted(0, 0, 10, 2, 5, protected(5000)), semInspected(1, 11, 12)}, false},
		{"inspection misses a holder whose session may have expired", []history.Op{
			semGranted(0, 0, 10, 2, 5, protected(5)), semInspected(1, 11, 12), semNotHeld(0, 13, 14, 5),
		}, true},
		{"token going back", []history.Op{
			semGranted(0, 0, 10, 1, 9), semReleased(0, 11, 20, 9), semGranted(1, 21, 30, 1, 5),
		}, false},
		{"token going back while both hold", []history.Op{semGranted(0, 0, 10, 1, 9), semGranted(1, 21, 30, 1, 5)}, false},
		{"equal token after another operation", []history.Op{
			semGranted(0, 0, 10, 1, 9), semInspected(2, 11, 12, hv(0, 1, 9)), semGranted(1, 21, 30, 1, 9),
		}, false},
		{"equal token from a try-acquire", []history.Op{semGranted(0, 0, 10, 1, 9), semTryGranted(1, 21, 30, 1, 9)}, false},
		{"acquire of unknown outcome may be granted", []history.Op{
			semAcquireUnknown(0, 0, 5, 2), semInspected(1, 10, 11, hv(0, 2, 7)), semGranted(2, 20, 30, 1, 9), semInspected(1, 31, 32, hv(0, 2, 7), hv(2, 1, 9)),
		}, true},
		{"acquire of unknown outcome may never apply", []history.Op{
			semAcquireUnknown(0, 0, 5, 3), semGranted(1, 10, 20, 3, 8, protected(5000)), semInspected(2, 21, 22, hv(1, 3, 8)),
		}, true},
		{"a later grant below the token of an unknown acquire", []history.Op{
			semAcquireUnknown(0, 0, 5, 1), semInspected(1, 10, 11, hv(0, 1, 7)), semGranted(2, 20, 30, 1, 6),
		}, false},
		{"acquire of unknown outcome, session gone: it may never have applied", []history.Op{
			semGranted(0, 0, 10, 2, 5, protected(5000)), semop(1, KindSemAcquire, 100, 110, history.Unknown, func(o *history.Op) { o.Count = 2 }),
			semGone(3, 101, 115, 120), semInspected(2, 200, 210, hv(0, 2, 5)),
		}, true},
		{"acquire of unknown outcome granted after its session was seen gone", []history.Op{
			semAcquireUnknown(1, 0, 5, 1), semGone(1, 101, 15, 20), semInspected(2, 30, 31, hv(1, 1, 12)),
		}, false},
		{"acquire of unknown outcome returning after its session was seen gone, granted later", []history.Op{
			semGone(1, 101, 5, 10), semAcquireUnknown(1, 0, 15, 1), semInspected(2, 30, 31, hv(1, 1, 12)),
		}, false},
		{"acquire of unknown outcome granted while its session was being revoked", []history.Op{
			semAcquireUnknown(1, 0, 5, 1), semInspected(2, 16, 17, hv(1, 1, 12)), semGone(1, 101, 15, 20), semInspected(2, 30, 31),
		}, true},
		{"a holder of a session seen gone is inspected", []history.Op{
			semGranted(1, 0, 10, 1, 5), semGone(3, 101, 15, 20), semInspected(2, 30, 31, hv(1, 1, 5)),
		}, false},
		{"semaphores are independent", []history.Op{
			semGranted(0, 0, 10, 3, 5), semop(1, KindSemAcquire, 11, 20, history.OK, func(o *history.Op) { o.Key, o.Succeeded, o.Token, o.Count = "t", true, 7, 3 }),
			semReleased(0, 21, 30, 5),
		}, true},
	}
	runSemCases(t, tests, checkSem, "semaphore s")
}

func TestSemSteps(t *testing.T) {
	in := func(kind history.Kind, o string, permits int) SemInput {
		return SemInput{Kind: kind, Name: "s", Capacity: 2, Owner: o, Permits: permits, Return: 10}
	}
	s := SemState{}
	next := SemSteps(s, in(KindSemAcquire, "a", 2), SemOutput{OK: true, Token: 4})
	require.Len(t, next, 1)
	require.Equal(t, 2, next[0].used())
	require.Empty(t, SemSteps(s, in(KindSemAcquire, "a", 3), SemOutput{OK: true, Token: 4}), "more permits than the capacity")
	// Two endable holders of 1 permit each: a grant of 1 ends either.
	two := SemState{Holders: []SemHolder{{Owner: "a", Permits: 1, Token: 3}, {Owner: "b", Permits: 1, Token: 4}}, Floor: 4}
	require.Len(t, SemSteps(two, in(KindSemAcquire, "c", 1), SemOutput{OK: true, Token: 6}), 2)
	// A protected one cannot end.
	two.Holders[0].Protected = 100
	require.Len(t, SemSteps(two, in(KindSemAcquire, "c", 1), SemOutput{OK: true, Token: 6}), 1)
	require.Empty(t, SemSteps(two, in(KindSemAcquire, "c", 2), SemOutput{OK: true, Token: 6}))
	// Unknown and bounded: granted, or (bounded) never applied.
	require.Len(t, SemSteps(s, in(KindSemAcquire, "a", 1), SemOutput{Unknown: true}), 1)
	require.Len(t, SemSteps(s, in(KindSemAcquire, "a", 1), SemOutput{Unknown: true, Bounded: true}), 2)
}

func TestSemOperations(t *testing.T) {
	ops := []history.Op{
		semGranted(0, 0, 10, 2, 5, protected(900)),
		semAcquireUnknown(1, 1, 2, 1),
		semop(2, KindSemInspect, 3, 4, history.Fail, nil),
		semInspected(3, 7, 8, hv(0, 2, 5)),
		semop(4, KindSemAcquire, 9, 9, history.OK, func(o *history.Op) { o.Key, o.Count, o.Succeeded, o.Token = "t", 1, true, 9 }),
		semGone(5, 101, 11, 12),
	}
	got := SemOperations(ops, SemOptions{LockOptions: LockOptions{MaxClockRate: 1, Margin: func(time.Duration) time.Duration { return 0 }}, Capacity: func(string) int { return 3 }})
	require.Len(t, got, 6, "failed inspections dropped, the session-gone observation in both partitions")
	require.Equal(t, int64(900e6), got[0].Input.(SemInput).Protected)
	require.Equal(t, 2, got[0].Input.(SemInput).Permits)
	require.Equal(t, 3, got[0].Input.(SemInput).Capacity)
	require.True(t, got[1].Output.(SemOutput).Bounded, "the unknown acquire's session 101 was seen gone")
	require.Equal(t, int64(12e6), got[1].Return)
	require.Equal(t, []SemHolderView{hv(0, 2, 5)}, got[2].Output.(SemOutput).Holders)
	require.Equal(t, KindLockSessionGone, got[4].Input.(SemInput).Kind)
	require.ElementsMatch(t, []string{"s", "t"}, []string{got[4].Input.(SemInput).Name, got[5].Input.(SemInput).Name})
}
