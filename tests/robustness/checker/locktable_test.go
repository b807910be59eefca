package checker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/tests/robustness/history"
)

// on puts an operation on lock name.
func on(name string) func(*history.Op) {
	return func(o *history.Op) { o.Key = name }
}

// tryQuota is a try-lock of name refused over the lock limit.
func tryQuota(p int, name string, call, ret int64) history.Op {
	return lop(p, KindLockTry, call, ret, history.OK, func(o *history.Op) { o.Key, o.Quota = name, true })
}

func tryGrantedOn(p int, name string, call, ret int64, token uint64, f ...func(*history.Op)) history.Op {
	return lop(p, KindLockTry, call, ret, history.OK, both(append(f, func(o *history.Op) { o.Key, o.Succeeded, o.Token = name, true, token })...))
}

// tryAll is a try-lock of several mutexes at once by process p, as the
// workload records it: one operation per mutex, with the call's owner and
// return (each part's call a little later than the one before); f shapes
// each.
func tryAll(p int, names []string, call, ret int64, status history.Status, f ...func(*history.Op)) []history.Op {
	ops := make([]history.Op, len(names))
	for i, n := range names {
		ops[i] = lop(p, KindLockTry, call, ret, status, both(append(f, func(o *history.Op) { o.Key, o.Locks, o.Call = n, len(names), o.Call+int64(i) })...))
	}
	return ops
}

func tryAllGranted(p int, names []string, call, ret int64, token uint64, f ...func(*history.Op)) []history.Op {
	return tryAll(p, names, call, ret, history.OK, append(f, func(o *history.Op) { o.Succeeded, o.Token = true, token })...)
}

func tryAllQuota(p int, names []string, call, ret int64) []history.Op {
	return tryAll(p, names, call, ret, history.OK, func(o *history.Op) { o.Quota = true })
}

// waitGranted is a waiting acquire of name by process p, answered QUEUED at
// queued and granted token at ret.
func waitGranted(p int, name string, call, queued, ret int64, token uint64, f ...func(*history.Op)) history.Op {
	return lop(p, KindLockAcquire, call, ret, history.OK, both(append(f, func(o *history.Op) {
		o.Key, o.Succeeded, o.Token, o.Queued = name, true, token, queued*1e6
	})...))
}

// waitQuota is a waiting acquire of name refused over the lock limit.
func waitQuota(p int, name string, call, ret int64) history.Op {
	return lop(p, KindLockAcquire, call, ret, history.OK, func(o *history.Op) { o.Key, o.Quota = name, true })
}

// waitUnknown is a waiting acquire of name of unknown outcome, answered
// QUEUED at queued (0: no answer came).
func waitUnknown(p int, name string, call, queued, ret int64, f ...func(*history.Op)) history.Op {
	return lop(p, KindLockAcquire, call, ret, history.Unknown, both(append(f, func(o *history.Op) { o.Key, o.Queued = name, queued*1e6 })...))
}

func ops(parts ...any) []history.Op {
	var out []history.Op
	for _, p := range parts {
		switch p := p.(type) {
		case history.Op:
			out = append(out, p)
		case []history.Op:
			out = append(out, p...)
		}
	}
	return out
}

func TestLockTableModel(t *testing.T) {
	// Limit 4: two held mutexes fill it (a lock and its grant each).
	table := LockTable{Names: []string{"a", "b", "c"}, Limit: 4}
	tests := []tableCase{
		{"two grants fit, the third is refused", []history.Op{
			tryGrantedOn(0, "a", 0, 10, 5), tryGrantedOn(1, "b", 11, 20, 6), tryQuota(2, "c", 21, 30),
		}, true},
		{"a third grant past the limit", []history.Op{
			tryGrantedOn(0, "a", 0, 10, 5, protected(5000)), tryGrantedOn(1, "b", 11, 20, 6, protected(5000)),
			tryGrantedOn(2, "c", 21, 30, 7),
		}, false},
		{"a refusal while there was room", []history.Op{
			tryGrantedOn(0, "a", 0, 10, 5), tryQuota(2, "c", 21, 30),
		}, false},
		{"a refusal after a release made room", []history.Op{
			tryGrantedOn(0, "a", 0, 10, 5), tryGrantedOn(1, "b", 11, 20, 6), released(1, 21, 30, 6, on("b")),
			tryQuota(2, "c", 31, 40),
		}, false},
		{"a refusal concurrent with the release that made room", []history.Op{
			tryGrantedOn(0, "a", 0, 10, 5), tryGrantedOn(1, "b", 11, 20, 6), released(1, 21, 30, 6, on("b")),
			tryQuota(2, "c", 25, 40),
		}, true},
		{"a try-lock of a held mutex at the limit fails as locked", []history.Op{
			tryGrantedOn(0, "a", 0, 10, 5, protected(5000)), tryGrantedOn(1, "b", 11, 20, 6, protected(5000)),
			lop(2, KindLockTry, 21, 30, history.OK, on("a")),
		}, true},
		{"a try-lock of a held mutex at the limit refused as over it", []history.Op{
			tryGrantedOn(0, "a", 0, 10, 5, protected(5000)), tryGrantedOn(1, "b", 11, 20, 6, protected(5000)),
			tryQuota(2, "a", 21, 30),
		}, false},
		{"a grant past the limit once another grant's session may have expired", []history.Op{
			tryGrantedOn(0, "a", 0, 10, 5, protected(100)), tryGrantedOn(1, "b", 11, 20, 6, protected(5000)),
			tryGrantedOn(2, "c", 200, 210, 7),
			notHeld(0, 300, 310, 5),
		}, true},
		{"the grant that made room shows alive afterwards", []history.Op{
			tryGrantedOn(0, "a", 0, 10, 5, protected(100)), tryGrantedOn(1, "b", 11, 20, 6, protected(5000)),
			tryGrantedOn(2, "c", 200, 210, 7),
			released(0, 300, 310, 5, on("a")),
		}, false},
		{"an acquire of unknown outcome may have been refused", []history.Op{
			tryGrantedOn(0, "a", 0, 10, 5), lop(1, KindLockTry, 11, 20, history.Unknown, on("b")),
			tryGrantedOn(2, "c", 21, 30, 7), tryQuota(3, "b", 31, 40),
		}, true},
		{"a session seen gone frees its grants on every mutex", []history.Op{
			tryGrantedOn(0, "a", 0, 10, 5, inSession(3), protected(5000)), tryGrantedOn(1, "b", 11, 20, 6, inSession(3), protected(5000)),
			sessionGone(2, 3, 21, 30), tryGrantedOn(2, "c", 31, 40, 7), tryGrantedOn(4, "a", 41, 50, 8),
		}, true},
		{"a session seen gone cannot leave a grant behind", []history.Op{
			tryGrantedOn(0, "a", 0, 10, 5, inSession(3), protected(5000)), tryGrantedOn(1, "b", 11, 20, 6, inSession(3), protected(5000)),
			sessionGone(2, 3, 21, 30), tryQuota(2, "c", 31, 40),
		}, false},
		{"a refusal in a session seen gone", []history.Op{
			tryGrantedOn(0, "a", 0, 10, 5, protected(5000)), tryGrantedOn(1, "b", 11, 20, 6, protected(5000)),
			sessionGone(2, 9, 21, 30), lop(2, KindLockTry, 31, 40, history.OK, both(on("c"), inSession(9), func(o *history.Op) { o.Quota = true })),
		}, false},
		{"a refusal in a session seen gone, concurrent with the observation", []history.Op{
			tryGrantedOn(0, "a", 0, 10, 5, protected(5000)), tryGrantedOn(1, "b", 11, 20, 6, protected(5000)),
			sessionGone(2, 9, 21, 30), lop(3, KindLockTry, 25, 40, history.OK, both(on("c"), inSession(9), func(o *history.Op) { o.Quota = true })),
		}, true},
		{"an acquire of two fills the limit, a third mutex is refused", ops(
			tryAllGranted(0, []string{"a", "b"}, 0, 10, 5, protected(5000)), tryQuota(1, "c", 11, 20),
		), true},
		{"an acquire of two refused over the limit where one alone would fit", ops(
			tryGrantedOn(0, "a", 0, 10, 5, protected(5000)), tryAllQuota(1, []string{"b", "c"}, 11, 20),
		), true},
		{"an acquire of two refused while both fit", ops(
			tryAllQuota(1, []string{"b", "c"}, 0, 10),
		), false},
		{"an acquire of two granted past the limit", ops(
			tryGrantedOn(0, "a", 0, 10, 5, protected(5000)), tryAllGranted(1, []string{"b", "c"}, 11, 20, 6),
		), false},
		{"an acquire of two fails as locked while one of them is held", ops(
			tryGrantedOn(0, "a", 0, 10, 5, protected(5000)), tryAll(1, []string{"a", "b"}, 11, 20, history.OK),
		), true},
		{"an acquire of two fails as locked while both are free", ops(
			tryAll(1, []string{"a", "b"}, 0, 10, history.OK),
		), false},
		{"an acquire of two takes both", ops(
			tryAllGranted(0, []string{"a", "b"}, 0, 10, 5, protected(5000)), tryGrantedOn(1, "b", 11, 20, 6),
		), false},
		{"an acquire of two released one mutex at a time", ops(
			tryAllGranted(0, []string{"a", "b"}, 0, 10, 5, protected(5000)),
			released(0, 11, 20, 5, on("a")), released(0, 11, 20, 5, on("b")),
			tryAllGranted(1, []string{"b", "c"}, 21, 30, 6),
		), true},
		// Waits: a held mutex is two entries, each waiter queued for it
		// one more.
		{"a waiter's place fills the limit", ops(
			tryGrantedOn(0, "a", 0, 10, 5, protected(5000)), waitGranted(1, "a", 11, 20, 60, 8, protected(5000)),
			tryQuota(2, "c", 21, 30), released(0, 40, 50, 5, on("a")),
		), true},
		{"a grant past the limit a waiter's place fills", ops(
			tryGrantedOn(0, "a", 0, 10, 5, protected(5000)), waitGranted(1, "a", 11, 20, 60, 8, protected(5000)),
			tryGrantedOn(2, "b", 21, 30, 7), released(0, 40, 50, 5, on("a")),
		), false},
		{"a waiter granted before the holder released", ops(
			tryGrantedOn(0, "a", 0, 10, 5, protected(5000)), waitGranted(1, "a", 11, 20, 30, 8, protected(5000)),
			released(0, 40, 50, 5, on("a")),
		), false},
		{"a waiter granted while its holder's session lives", ops(
			tryGrantedOn(0, "a", 0, 10, 5, protected(5000)), waitGranted(1, "a", 11, 20, 30, 8, protected(5000)),
			inspected(2, 31, 35, 1, 8, on("a")),
		), false},
		{"a waiter granted a token below its predecessor's", ops(
			tryGrantedOn(0, "a", 0, 10, 5, protected(5000)), waitGranted(1, "a", 11, 20, 60, 4, protected(5000)),
			released(0, 40, 50, 5, on("a")),
		), false},
		{"a waiter granted when its holder's session may have ended", ops(
			tryGrantedOn(0, "a", 0, 10, 5, protected(100)), waitGranted(1, "a", 11, 20, 300, 8, protected(5000)),
			notHeld(0, 400, 410, 5),
		), true},
		{"a wait queued for a free mutex", ops(
			waitGranted(1, "a", 11, 20, 60, 8, protected(5000)),
		), false},
		{"a wait granted at once, with no QUEUED answer", ops(
			lop(1, KindLockAcquire, 11, 20, history.OK, func(o *history.Op) { o.Key, o.Succeeded, o.Token = "a", true, 8 }),
			tryGrantedOn(2, "b", 21, 30, 9),
		), true},
		{"a wait granted, with no QUEUED answer, after the holder released", ops(
			tryGrantedOn(0, "a", 0, 10, 5, protected(5000)), tryGrantedOn(2, "b", 1, 9, 6, protected(5000)),
			lop(1, KindLockAcquire, 11, 60, history.OK, both(protected(5000), func(o *history.Op) { o.Key, o.Succeeded, o.Token = "a", true, 8 })),
			tryQuota(3, "c", 21, 30), released(0, 40, 50, 5, on("a")),
		), true},
		{"a wait refused over the limit with room for its place", ops(
			tryGrantedOn(0, "a", 0, 10, 5, protected(5000)), waitQuota(1, "a", 11, 20),
		), false},
		{"a wait refused over the limit without room for its place", ops(
			tryGrantedOn(0, "a", 0, 10, 5, protected(5000)), tryGrantedOn(2, "b", 1, 9, 6, protected(5000)),
			waitQuota(1, "a", 11, 20),
		), true},
		{"a try-lock of a mutex handed to its waiter fails as locked", ops(
			tryGrantedOn(0, "a", 0, 10, 5, protected(5000)), waitGranted(1, "a", 11, 20, 60, 8, protected(5000)),
			released(0, 40, 50, 5, on("a")), lop(2, KindLockTry, 51, 55, history.OK, on("a")),
		), true},
		{"a try-lock granted ahead of a waiter", ops(
			tryGrantedOn(0, "a", 0, 10, 5, protected(5000)), waitGranted(1, "a", 11, 20, 80, 10, protected(5000)),
			released(0, 40, 50, 5, on("a")), tryGrantedOn(2, "a", 51, 55, 9), released(2, 56, 60, 9, on("a")),
		), false},
		{"a waiter whose session may have ended leaves room", ops(
			tryGrantedOn(0, "a", 0, 10, 5, protected(5000)), waitUnknown(1, "a", 11, 20, 30, protected(100)),
			tryGrantedOn(2, "b", 200, 210, 7),
		), true},
		{"a wait of unknown outcome may have taken a place", ops(
			tryGrantedOn(0, "a", 0, 10, 5, protected(5000)), waitUnknown(1, "a", 11, 0, 20, protected(5000)),
			tryQuota(2, "c", 21, 30),
		), true},
		{"a session seen gone takes its places back", ops(
			tryGrantedOn(0, "a", 0, 10, 5, protected(5000)), waitUnknown(1, "a", 11, 20, 25, inSession(3), protected(5000)),
			sessionGone(3, 3, 31, 40), tryGrantedOn(2, "b", 41, 50, 7),
		), true},
		{"a place kept past the session seen gone", ops(
			tryGrantedOn(0, "a", 0, 10, 5, protected(5000)), waitUnknown(1, "a", 11, 20, 25, inSession(3), protected(5000)),
			sessionGone(3, 3, 31, 40), tryQuota(2, "b", 41, 50),
		), false},
		{"a refusal the place explains, before the session is seen gone", ops(
			tryGrantedOn(0, "a", 0, 10, 5, protected(5000)), waitUnknown(1, "a", 11, 20, 25, inSession(3), protected(5000)),
			tryQuota(2, "b", 26, 30), sessionGone(3, 3, 31, 40),
		), true},
		{"an acquire of two of unknown outcome may have been refused", ops(
			tryGrantedOn(0, "a", 0, 10, 5, protected(5000)), tryAll(1, []string{"b", "c"}, 11, 20, history.Unknown),
			tryGrantedOn(2, "b", 21, 30, 7, protected(5000)),
		), true},
	}
	checkTableCases(t, table, tests)
}

// tableCase is a history, and whether the lock-table model must accept it.
type tableCase struct {
	name  string
	ops   []history.Op
	legal bool
}

// checkTableCases checks each case's history against table, with no clock
// margin; an operation on lock "m" (lop's default) is one on "a".
func checkTableCases(t *testing.T, table LockTable, cases []tableCase) {
	t.Helper()
	opt := LockOptions{MaxClockRate: 1, Margin: func(time.Duration) time.Duration { return 0 }}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			ops := make([]history.Op, len(tt.ops))
			for i, o := range tt.ops {
				if o.Key == "m" {
					o.Key = "a"
				}
				ops[i] = o
			}
			_, vs := CheckLinearizable(table.Model(), table.Operations(ops, opt), LinearizableOptions{Name: "lock-limit", Timeout: 10 * time.Second, PartitionName: LockTablePartitionName})
			if tt.legal {
				require.Empty(t, vs)
			} else {
				require.NotEmpty(t, vs)
				require.Equal(t, "linearizability", vs[0].Checker)
				require.Contains(t, vs[0].Summary, "lock table")
			}
		})
	}
}

func TestLockTableOperationsSplitAWait(t *testing.T) {
	table := LockTable{Names: []string{"a"}, Limit: 4}
	got := table.Operations([]history.Op{
		waitGranted(0, "a", 10, 20, 30, 5),
		waitUnknown(1, "a", 40, 0, 50),
		waitQuota(2, "a", 60, 70),
	}, LockOptions{})
	require.Len(t, got, 5, "a wait that may have queued is two operations; one refused is one")
	queue, grant := got[0].Input.(LockTableInput), got[1].Input.(LockTableInput)
	require.Equal(t, PhaseQueue, queue.Phase)
	require.Equal(t, int64(20e6), got[0].Return, "the first part ends when the client learned it was queued")
	require.Equal(t, int64(20e6), queue.Return)
	require.True(t, got[0].Output.(LockOutput).Queued)
	require.Equal(t, PhaseGrant, grant.Phase)
	require.Equal(t, int64(10e6), got[1].Call, "the second part spans the whole call")
	require.Equal(t, LockOutput{OK: true, Token: 5}, got[1].Output)
	require.Equal(t, PhaseQueue, got[2].Input.(LockTableInput).Phase)
	require.True(t, got[2].Output.(LockOutput).Unknown)
	require.Equal(t, PhaseGrant, got[3].Input.(LockTableInput).Phase)
	require.Zero(t, got[4].Input.(LockTableInput).Phase)
	require.True(t, got[4].Output.(LockOutput).Quota)
}

func TestLockModelKnowsNoLimit(t *testing.T) {
	_, vs := CheckLinearizable(LockModel, LockOperations([]history.Op{tryQuota(0, "m", 0, 10)}, LockOptions{}),
		LinearizableOptions{Name: "locks", Timeout: 10 * time.Second, PartitionName: LockPartitionName})
	require.NotEmpty(t, vs, "a refusal over a limit is a violation where no limit is set")
}

func TestLockTableOperations(t *testing.T) {
	table := LockTable{Names: []string{"a", "b"}, Limit: 4}
	ops := []history.Op{
		tryGrantedOn(0, "a", 0, 10, 5, inSession(7)),
		lop(1, KindLockTry, 1, 2, history.Unknown, both(on("b"), inSession(7))),
		tryGrantedOn(2, "z", 3, 4, 9),
		sessionGone(3, 7, 5, 6),
		sessionGone(3, 8, 7, 8),
	}
	got := table.Operations(ops, LockOptions{})
	require.Len(t, got, 4, "an operation on a lock the model does not follow is dropped; an observation is one operation")
	require.Zero(t, got[0].Input.(LockTableInput).Also, "a try-lock of one mutex claims no other")
	require.Equal(t, 1, got[1].Input.(LockTableInput).Index)
	gone := got[2].Input.(LockTableInput)
	require.Equal(t, KindLockSessionGone, gone.Kind)
	require.Equal(t, uint32(0b11), gone.Seals, "grants of both locks were requested in session 7")
	require.Equal(t, uint32(0), got[3].Input.(LockTableInput).Seals)
}

func TestLockTableOperationsJoinAnAcquireOfSeveral(t *testing.T) {
	table := LockTable{Names: []string{"a", "b", "c"}, Limit: 6}
	got := table.Operations(ops(
		tryAllGranted(0, []string{"c", "a"}, 0, 10, 5),
		tryAllGranted(1, []string{"a", "b"}, 20, 30, 6), // another call: another owner and call
		released(0, 11, 12, 5, on("c")), released(0, 11, 12, 5, on("a")),
	), LockOptions{})
	require.Len(t, got, 4, "each acquire of several mutexes is one operation; its release is one per mutex")
	first := got[0].Input.(LockTableInput)
	require.Equal(t, 2, first.Index)
	require.Equal(t, int64(0), got[0].Call, "the call starts with its first part")
	require.Equal(t, uint32(0b101), first.claims())
	require.Equal(t, uint32(0b011), got[1].Input.(LockTableInput).claims())
	require.Zero(t, got[2].Input.(LockTableInput).Also)
}

func TestLockTableQueueEncodingKeepsSDKOwners(t *testing.T) {
	// SDK owner IDs hold a "/" (client ID / counter).
	ws := []waiter{{Owner: "sdk-b333ceedae956c6c960afeae/22", Session: 14, Protected: 2334205747}, {Owner: "sdk-a0/7", Session: 3}}
	q := formatQueue(ws)
	require.Equal(t, 2, queueLen(q))
	require.ElementsMatch(t, ws, parseQueue(q))
	var st LockTableState
	st.Queues[0] = q
	d, w, ok := st.dequeue(0, "sdk-b333ceedae956c6c960afeae/22")
	require.True(t, ok)
	require.Equal(t, ws[0], w)
	require.Equal(t, []waiter{ws[1]}, parseQueue(d.Queues[0]))
}

// shared marks an operation a read claim of a read-write lock.
func shared(o *history.Op) { o.Shared = true }

// readGranted is a try-lock of read-write lock "rw" to read, granted.
func readGranted(p int, call, ret int64, token uint64, f ...func(*history.Op)) history.Op {
	return tryGrantedOn(p, "rw", call, ret, token, append(f, shared)...)
}

// readQuota is a try-lock of "rw" to read, refused over the lock limit.
func readQuota(p int, call, ret int64) history.Op {
	return lop(p, KindLockTry, call, ret, history.OK, func(o *history.Op) { o.Key, o.Quota, o.Shared = "rw", true, true })
}

// readLocked is a try-lock of "rw" to read, refused as locked.
func readLocked(p int, call, ret int64) history.Op {
	return lop(p, KindLockTry, call, ret, history.OK, both(on("rw"), shared))
}

// readUnknown is a try-lock of "rw" to read of unknown outcome.
func readUnknown(p int, call, ret int64) history.Op {
	return lop(p, KindLockTry, call, ret, history.Unknown, both(on("rw"), shared))
}

// readReleased is the release of a read grant of "rw" under token.
func readReleased(p int, call, ret int64, token uint64) history.Op {
	return released(p, call, ret, token, on("rw"), shared)
}

// readNotHeld is the release of a read grant of "rw" under token, answered
// not held.
func readNotHeld(p int, call, ret int64, token uint64) history.Op {
	return lop(p, KindLockRelease, call, ret, history.OK, func(o *history.Op) { o.Key, o.Token, o.Shared = "rw", token, true })
}

// Readers of a read-write lock count one entry each against the limit,
// besides the lock: shared grants under --max-locks.
func TestLockTableReaders(t *testing.T) {
	// Limit 4: a read-write lock with three readers fills it, or a held
	// mutex and one reader.
	table := LockTable{Names: []string{"a", "b", "rw"}, RW: 1 << 2, Limit: 4}
	p5 := protected(5000)
	tests := []tableCase{
		{"three readers fit, a fourth is refused", ops(
			readGranted(0, 0, 10, 5), readGranted(1, 11, 20, 6), readGranted(2, 21, 30, 7), readQuota(3, 31, 40),
		), true},
		{"a fourth reader past the limit", ops(
			readGranted(0, 0, 10, 5, p5), readGranted(1, 11, 20, 6, p5), readGranted(2, 21, 30, 7, p5),
			readGranted(3, 31, 40, 8),
		), false},
		{"a read refused while there was room", ops(
			readGranted(0, 0, 10, 5), readQuota(1, 11, 20),
		), false},
		{"a read refused over the limit while a writer writes", ops(
			tryGrantedOn(0, "rw", 0, 10, 5, p5), tryGrantedOn(1, "a", 11, 20, 6, p5), readQuota(2, 21, 30),
		), false},
		{"a second reader refused beside a held mutex", ops(
			tryGrantedOn(0, "a", 0, 10, 5), readGranted(1, 11, 20, 6), readQuota(2, 21, 30),
		), true},
		{"a second reader granted beside a held mutex at the limit", ops(
			tryGrantedOn(0, "a", 0, 10, 5, p5), readGranted(1, 11, 20, 6, p5), readGranted(2, 21, 30, 7),
		), false},
		{"a mutex refused while readers fill the table", ops(
			readGranted(0, 0, 10, 5), readGranted(1, 11, 20, 6), tryQuota(2, "a", 21, 30),
		), true},
		{"a mutex granted while readers fill the table", ops(
			readGranted(0, 0, 10, 5, p5), readGranted(1, 11, 20, 6, p5), tryGrantedOn(2, "a", 21, 30, 7),
		), false},
		{"a reader's release makes room for a mutex", ops(
			readGranted(0, 0, 10, 5, p5), readGranted(1, 11, 20, 6, p5), readReleased(0, 21, 30, 5),
			tryGrantedOn(2, "a", 31, 40, 7),
		), true},
		{"a reader's release under another token", ops(
			readGranted(0, 0, 10, 5, p5), readReleased(0, 11, 20, 9),
		), false},
		{"a reader's release answered not held while its session lived", ops(
			readGranted(0, 0, 10, 5, p5), readNotHeld(0, 11, 20, 5),
		), false},
		{"a try-write while a reader reads fails as locked", ops(
			readGranted(0, 0, 10, 5, p5), lop(1, KindLockTry, 11, 20, history.OK, on("rw")),
		), true},
		{"a try-write granted while a reader reads", ops(
			readGranted(0, 0, 10, 5, p5), tryGrantedOn(1, "rw", 11, 20, 6),
		), false},
		{"a try-write granted once the reader's session may have expired", ops(
			readGranted(0, 0, 10, 5, protected(100)), tryGrantedOn(1, "rw", 200, 210, 6),
		), true},
		{"the reader that ended for a writer shows alive afterwards", ops(
			readGranted(0, 0, 10, 5, protected(100)), tryGrantedOn(1, "rw", 200, 210, 6), readReleased(0, 300, 310, 5),
		), false},
		{"a read while a writer writes fails as locked", ops(
			tryGrantedOn(0, "rw", 0, 10, 5, p5), readLocked(1, 11, 20),
		), true},
		{"a read granted while a writer writes", ops(
			tryGrantedOn(0, "rw", 0, 10, 5, p5), readGranted(1, 11, 20, 6),
		), false},
		{"a read of a free lock fails as locked", ops(
			readLocked(0, 0, 10),
		), false},
		{"a read with a token not above the last write's", ops(
			tryGrantedOn(0, "rw", 0, 10, 10), released(0, 11, 20, 10, on("rw")), readGranted(1, 21, 30, 9),
		), false},
		{"readers of a session seen gone make room", ops(
			readGranted(0, 0, 10, 5, inSession(3), p5), readGranted(1, 11, 20, 6, inSession(4), p5),
			readGranted(2, 21, 30, 7, inSession(5), p5), sessionGone(4, 3, 31, 40), readGranted(3, 41, 50, 8),
		), true},
		{"a reader made room for by a session not seen gone", ops(
			readGranted(0, 0, 10, 5, inSession(3), p5), readGranted(1, 11, 20, 6, inSession(4), p5),
			readGranted(2, 21, 30, 7, inSession(5), p5), sessionGone(4, 6, 31, 40), readGranted(3, 41, 50, 8),
		), false},
		{"a read of unknown outcome explains a refusal", ops(
			readGranted(0, 0, 10, 5, p5), readGranted(1, 11, 20, 6, p5), readUnknown(2, 21, 30), readQuota(3, 31, 40),
		), true},
		{"a reader whose session may have expired ends to make room", ops(
			readGranted(0, 0, 10, 5, protected(100)), readGranted(1, 11, 20, 6, p5), readGranted(2, 21, 30, 7, p5),
			readGranted(3, 200, 210, 8), readNotHeld(0, 300, 310, 5),
		), true},
		{"the reader that made room shows alive afterwards", ops(
			readGranted(0, 0, 10, 5, protected(100)), readGranted(1, 11, 20, 6, p5), readGranted(2, 21, 30, 7, p5),
			readGranted(3, 200, 210, 8), readReleased(0, 300, 310, 5),
		), false},
	}
	checkTableCases(t, table, tests)
}

func TestLockModelRefusesReaders(t *testing.T) {
	_, vs := CheckLinearizable(LockModel, LockOperations([]history.Op{readGranted(0, 0, 10, 5)}, LockOptions{}),
		LinearizableOptions{Name: "locks", Timeout: 10 * time.Second, PartitionName: LockPartitionName})
	require.NotEmpty(t, vs, "a read grant is a violation where only mutexes are modelled")
	got := LockTable{Names: []string{"rw"}, RW: 1}.Operations([]history.Op{readGranted(0, 0, 10, 5), readReleased(0, 11, 20, 5)}, LockOptions{})
	require.Len(t, got, 2)
	require.True(t, got[0].Input.(LockTableInput).Shared, "the read claim reaches the model")
	require.True(t, got[1].Input.(LockTableInput).Shared, "the release of a read grant reaches the model")
}

func TestLockTableReaderEncodingKeepsSDKOwners(t *testing.T) {
	rs := []readGrant{{Owner: "c-1f2e/17", Session: 42, Protected: 1500, Token: 9}, {Owner: "c-1f2e/3", Session: 7, Min: 12}}
	got := parseReaders(formatReaders(rs))
	require.ElementsMatch(t, rs, got)
}
