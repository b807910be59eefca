package checker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/tests/robustness/history"
)

// permitsOf makes an operation a claim of k permits of semaphore "s".
func permitsOf(k int) func(*history.Op) {
	return func(o *history.Op) { o.Key, o.Count = "s", int64(k) }
}

// takeGranted is a try-lock of k permits of "s", granted token.
func takeGranted(p, k int, call, ret int64, token uint64, f ...func(*history.Op)) history.Op {
	return tryGrantedOn(p, "s", call, ret, token, append(f, permitsOf(k))...)
}

// takeQuota is a try-lock of k permits of "s", refused over the lock limit.
func takeQuota(p, k int, call, ret int64) history.Op {
	return lop(p, KindLockTry, call, ret, history.OK, both(permitsOf(k), func(o *history.Op) { o.Quota = true }))
}

// takeLocked is a try-lock of k permits of "s", refused as taken.
func takeLocked(p, k int, call, ret int64) history.Op {
	return lop(p, KindLockTry, call, ret, history.OK, permitsOf(k))
}

// takeUnknown is a try-lock of k permits of "s" of unknown outcome.
func takeUnknown(p, k int, call, ret int64) history.Op {
	return lop(p, KindLockTry, call, ret, history.Unknown, permitsOf(k))
}

// takeReleased is the release of a grant of "s" under token.
func takeReleased(p int, call, ret int64, token uint64) history.Op {
	return released(p, call, ret, token, on("s"))
}

// takeNotHeld is the release of a grant of "s" under token, answered not
// held.
func takeNotHeld(p int, call, ret int64, token uint64) history.Op {
	return lop(p, KindLockRelease, call, ret, history.OK, func(o *history.Op) { o.Key, o.Token = "s", token })
}

// takeWaitGranted is a waiting acquire of k permits of "s", granted token
// (the workload's last acquire of a semaphore).
func takeWaitGranted(p, k int, call, ret int64, token uint64) history.Op {
	return lop(p, KindLockAcquire, call, ret, history.OK, both(permitsOf(k), func(o *history.Op) { o.Succeeded, o.Token = true, token }))
}

// The grants of a semaphore count one entry each against the limit,
// besides the lock, and together take at most its capacity of permits.
func TestLockTableSemaphores(t *testing.T) {
	// Limit 4: a semaphore with three holders fills it, or a held mutex
	// and one holder. The semaphore has 3 permits.
	table := LockTable{Names: []string{"a", "rw", "s"}, RW: 1 << 1, Limit: 4}
	table.Capacity[2] = 3
	p5 := protected(5000)
	tests := []tableCase{
		{"holders fill the permits, and a try past them fails as taken", ops(
			takeGranted(0, 2, 0, 10, 5, p5), takeGranted(1, 1, 11, 20, 6, p5), takeLocked(2, 1, 21, 30),
		), true},
		{"a try granted past the permits", ops(
			takeGranted(0, 2, 0, 10, 5, p5), takeGranted(1, 2, 11, 20, 6),
		), false},
		{"a try refused as taken while its permits fit", ops(
			takeGranted(0, 1, 0, 10, 5, p5), takeLocked(1, 2, 11, 20),
		), false},
		{"a try of a free semaphore refused as taken", ops(
			takeLocked(0, 1, 0, 10),
		), false},
		{"three holders fill the limit, and a mutex is refused over it", ops(
			takeGranted(0, 1, 0, 10, 5, p5), takeGranted(1, 1, 11, 20, 6, p5), takeGranted(2, 1, 21, 30, 7, p5),
			tryQuota(3, "a", 31, 40),
		), true},
		{"a mutex granted while three holders fill the limit", ops(
			takeGranted(0, 1, 0, 10, 5, p5), takeGranted(1, 1, 11, 20, 6, p5), takeGranted(2, 1, 21, 30, 7, p5),
			tryGrantedOn(3, "a", 31, 40, 8),
		), false},
		{"one holder beside a held mutex, a second refused over the limit", ops(
			tryGrantedOn(0, "a", 0, 10, 5, p5), takeGranted(1, 1, 11, 20, 6, p5), takeQuota(2, 1, 21, 30),
		), true},
		{"a second holder granted beside a held mutex at the limit", ops(
			tryGrantedOn(0, "a", 0, 10, 5, p5), takeGranted(1, 1, 11, 20, 6, p5), takeGranted(2, 1, 21, 30, 7),
		), false},
		{"a try refused over the limit while there was room", ops(
			takeGranted(0, 1, 0, 10, 5, p5), takeQuota(1, 1, 11, 20),
		), false},
		{"a try refused over the limit when its permits did not fit", ops(
			// The state machine answers a claim that does not fit its
			// lock as taken before it counts the table.
			tryGrantedOn(0, "a", 0, 10, 5, p5), takeGranted(1, 3, 11, 20, 6, p5), takeQuota(2, 1, 21, 30),
		), false},
		{"a holder whose session may have expired ends to give back its permits", ops(
			takeGranted(0, 3, 0, 10, 5, protected(100)), takeGranted(1, 1, 200, 210, 6),
		), true},
		{"the holder that ended for permits shows alive afterwards", ops(
			takeGranted(0, 3, 0, 10, 5, protected(100)), takeGranted(1, 1, 200, 210, 6), takeReleased(0, 300, 310, 5),
		), false},
		{"the holder that gave back enough permits ended, not the other", ops(
			// Two permits were needed: only process 1's grant gives them
			// back alone, so process 0's still holds.
			takeGranted(0, 1, 0, 10, 5, protected(100)), takeGranted(1, 2, 11, 20, 6, protected(100)),
			takeGranted(2, 2, 200, 210, 7), takeReleased(0, 300, 310, 5),
		), true},
		{"the holder that gave back its permits released afterwards", ops(
			takeGranted(0, 1, 0, 10, 5, protected(100)), takeGranted(1, 2, 11, 20, 6, protected(100)),
			takeGranted(2, 2, 200, 210, 7), takeReleased(1, 300, 310, 6),
		), false},
		{"a holder's release gives its permits back", ops(
			takeGranted(0, 3, 0, 10, 5, p5), takeReleased(0, 11, 20, 5), takeGranted(1, 3, 21, 30, 7),
		), true},
		{"a release under another token", ops(
			takeGranted(0, 1, 0, 10, 5, p5), takeReleased(0, 11, 20, 9),
		), false},
		{"a release answered not held while the session lived", ops(
			takeGranted(0, 1, 0, 10, 5, p5), takeNotHeld(0, 11, 20, 5),
		), false},
		{"a grant's token not above the last grant's", ops(
			takeGranted(0, 1, 0, 10, 10, p5), takeGranted(1, 1, 11, 20, 9),
		), false},
		{"holders of a session seen gone give back their permits", ops(
			takeGranted(0, 3, 0, 10, 5, inSession(3), p5), sessionGone(4, 3, 11, 20), takeGranted(1, 1, 21, 30, 6),
		), true},
		{"permits given back by a session not seen gone", ops(
			takeGranted(0, 3, 0, 10, 5, inSession(3), p5), sessionGone(4, 6, 11, 20), takeGranted(1, 1, 21, 30, 6),
		), false},
		{"a try of unknown outcome explains a refusal as taken", ops(
			takeGranted(0, 2, 0, 10, 5, p5), takeUnknown(1, 1, 11, 20), takeLocked(2, 1, 21, 30),
		), true},
		{"the last wait for every permit, once they are back", ops(
			takeGranted(0, 1, 0, 10, 5, p5), takeReleased(0, 11, 20, 5), takeWaitGranted(1, 3, 21, 30, 7),
		), true},
		{"the last wait for every permit granted while one is out", ops(
			takeGranted(0, 1, 0, 10, 5, p5), takeWaitGranted(1, 3, 21, 30, 7),
		), false},
		{"readers and holders share the limit", ops(
			readGranted(0, 0, 10, 5, p5), takeGranted(1, 1, 11, 20, 6, p5), readQuota(2, 21, 30),
		), true},
		{"a reader granted while readers and holders fill the limit", ops(
			readGranted(0, 0, 10, 5, p5), takeGranted(1, 1, 11, 20, 6, p5), readGranted(2, 21, 30, 7),
		), false},
		{"a claim of more permits than the semaphore has", ops(
			takeGranted(0, 4, 0, 10, 5),
		), false},
	}
	checkTableCases(t, table, tests)
}

func TestLockTableSemaphoreOperations(t *testing.T) {
	table := LockTable{Names: []string{"a", "s"}}
	table.Capacity[1] = 3
	got := table.Operations([]history.Op{takeGranted(0, 2, 0, 10, 5), takeWaitGranted(1, 3, 11, 20, 7), waitGranted(2, "a", 21, 25, 30, 8)}, LockOptions{})
	require.Len(t, got, 4, "a wait for a semaphore is one operation; a wait for a mutex is two")
	require.Equal(t, 2, got[0].Input.(LockTableInput).Permits, "the permits reach the model")
	require.Equal(t, 3, got[1].Input.(LockTableInput).Permits)
	require.Zero(t, got[1].Input.(LockTableInput).Phase, "the wait for a semaphore is not split")
	require.Equal(t, PhaseQueue, got[2].Input.(LockTableInput).Phase)
}

func TestLockModelRefusesSemaphores(t *testing.T) {
	_, vs := CheckLinearizable(LockModel, LockOperations([]history.Op{takeGranted(0, 1, 0, 10, 5)}, LockOptions{}),
		LinearizableOptions{Name: "locks", Timeout: 10 * time.Second, PartitionName: LockPartitionName})
	require.NotEmpty(t, vs, "a grant of permits is a violation where only mutexes are modelled")
}
