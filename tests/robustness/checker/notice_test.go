package checker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/tests/robustness/history"
)

// ms is a clock reading in milliseconds.
func ms(n int64) int64 { return n * int64(time.Millisecond) }

func mutexGrant(owner string, token uint64, granted int64) history.Grant {
	return history.Grant{Workload: "locks", Owner: owner, Session: int64(token), TTL: 2000, Locks: []string{"lock/m0"},
		Capacity: 1, Permits: 1, Token: token, Call: granted - ms(5), Granted: granted}
}

func TestLossNoticeReleasedThenGranted(t *testing.T) {
	a := mutexGrant("a", 1, ms(100))
	a.Ended, a.EndDeadline, a.Released = ms(300), ms(2100), true
	a.Lost, a.Cause = ms(310), "released"
	b := mutexGrant("b", 2, ms(305)) // granted while a's release was on its way back
	st, vs := CheckLossNotice([]history.Grant{a, b}, nil, NoticeOptions{MaxClockRate: 1})
	require.Empty(t, vs)
	require.Equal(t, 2, st.Checked)
}

func TestLossNoticeSessionDeadlineDue(t *testing.T) {
	// a's session lost its keep-alives: the SDK's deadline was 2.1s, its
	// timer fired 30ms late, after b was granted: the loss was due.
	a := mutexGrant("a", 1, ms(100))
	a.Lost, a.LostDeadline, a.Cause = ms(2130), ms(2100), "session ended"
	a.Ended, a.EndDeadline = ms(2200), ms(2100)
	b := mutexGrant("b", 2, ms(2120))
	_, vs := CheckLossNotice([]history.Grant{a, b}, nil, NoticeOptions{MaxClockRate: 1})
	require.Empty(t, vs)
}

func TestLossNoticeLateDeadlineIsAViolation(t *testing.T) {
	// The SDK's deadline was a second later than the server's expiry: b
	// got the lock at 2.2s while a's deadline was 3.1s and its Lost open.
	a := mutexGrant("a", 1, ms(100))
	a.Lost, a.LostDeadline, a.Cause = ms(3100), ms(3100), "session ended"
	a.Ended, a.EndDeadline = ms(3200), ms(3100)
	b := mutexGrant("b", 2, ms(2200))
	_, vs := CheckLossNotice([]history.Grant{a, b}, nil, NoticeOptions{MaxClockRate: 1})
	require.Len(t, vs, 1)
	require.Equal(t, "loss-notice", vs[0].Checker)
	require.Contains(t, vs[0].Summary, "lock/m0 granted to b (token 2) at 2.200s")
	require.Contains(t, vs[0].Details, "ended by 3.100s")

	// A lease clock running 1.5x fast ends a 2s TTL 667ms early: b
	// granted at 2.5s is then within what the SDK can promise (its
	// deadline counts as 2.433s), b at 2.2s is not.
	_, vs = CheckLossNotice([]history.Grant{a, mutexGrant("b", 2, ms(2500))}, nil, NoticeOptions{MaxClockRate: 1.5})
	require.Empty(t, vs)
	_, vs = CheckLossNotice([]history.Grant{a, b}, nil, NoticeOptions{MaxClockRate: 1.5})
	require.Len(t, vs, 1)
}

func TestLossNoticeNeverToldIsAViolation(t *testing.T) {
	// a was never told (its Lost never closed, its deadline kept moving)
	// yet b was granted: the SDK was silent.
	a := mutexGrant("a", 1, ms(100))
	a.Ended, a.EndDeadline = ms(5000), ms(6000)
	b := mutexGrant("b", 2, ms(1000))
	_, vs := CheckLossNotice([]history.Grant{a, b}, nil, NoticeOptions{})
	require.Len(t, vs, 1)
	require.Contains(t, vs[0].Details, "ended by 5.000s")
}

func TestLossNoticeHoldTime(t *testing.T) {
	// A hold time of 300ms from the acquire's invocation at 95ms: due at
	// 395ms, whatever the SDK's timer did.
	a := mutexGrant("a", 1, ms(100))
	a.HoldMs = 300
	a.Lost, a.LostDeadline, a.Cause = ms(420), ms(2000), "hold time of 300ms ended"
	a.Ended, a.EndDeadline = ms(430), ms(2000)
	_, vs := CheckLossNotice([]history.Grant{a, mutexGrant("b", 2, ms(400))}, nil, NoticeOptions{})
	require.Empty(t, vs)
	_, vs = CheckLossNotice([]history.Grant{a, mutexGrant("b", 2, ms(390))}, nil, NoticeOptions{})
	require.Len(t, vs, 1, "granted before a's hold time could have ended")
}

func TestLossNoticeForceRelease(t *testing.T) {
	a := mutexGrant("a", 7, ms(100))
	a.Lost, a.LostDeadline, a.Cause = ms(900), ms(2500), "force-released"
	a.Ended, a.EndDeadline = ms(950), ms(2500)
	b := mutexGrant("b", 8, ms(600))
	force := history.Op{Workload: "locks", Kind: KindSemForce, Key: "lock/m0", Token: 7, Call: ms(500), Return: ms(550),
		Status: history.OK, Succeeded: true}
	_, vs := CheckLossNotice([]history.Grant{a, b}, []history.Op{force}, NoticeOptions{})
	require.Empty(t, vs, "the SDK learns of a force-release at the next keep-alive")

	other := force
	other.Token = 3
	_, vs = CheckLossNotice([]history.Grant{a, b}, []history.Op{other}, NoticeOptions{})
	require.Len(t, vs, 1, "a force-release of another grant does not end a's")

	nothing := force
	nothing.Succeeded = false
	_, vs = CheckLossNotice([]history.Grant{a, b}, []history.Op{nothing}, NoticeOptions{})
	require.Len(t, vs, 1, "a force-release that released nothing does not end a's")
}

// Seed 1156 of the long campaign: b's wait was granted, the lock was
// force-released (of every holder), a took it, and only then did b's
// answer reach b, from a member that served the grant it had applied
// before the force-release. b held nothing; the SDK learns so at the
// next keep-alive.
func TestLossNoticeGrantForceReleasedBeforeItsAnswer(t *testing.T) {
	b := mutexGrant("b", 5, ms(834))
	b.Call = ms(485)
	b.Ended, b.EndDeadline = ms(1015), ms(3500)
	b.Lost, b.LostDeadline, b.Cause = ms(1017), ms(3500), "lock not held"
	a := mutexGrant("a", 9, ms(829))
	a.Ended, a.EndDeadline, a.Released = ms(863), ms(3575), true
	a.Lost, a.Cause = ms(865), "released"
	force := history.Op{Workload: "locks", Kind: KindSemForce, Key: "lock/m0", Call: ms(673), Return: ms(677),
		Status: history.OK, Succeeded: true}
	_, vs := CheckLossNotice([]history.Grant{a, b}, []history.Op{force}, NoticeOptions{MaxClockRate: 1})
	require.Empty(t, vs, "b may have been force-released before its answer reached it")

	// A force-release acknowledged before b even asked ended nothing of
	// b's: b held the lock with a.
	before := force
	before.Call, before.Return = ms(400), ms(450)
	_, vs = CheckLossNotice([]history.Grant{a, b}, []history.Op{before}, NoticeOptions{MaxClockRate: 1})
	require.Len(t, vs, 1)
	require.Contains(t, vs[0].Summary, "lock/m0 granted to b (token 5) at 0.834s")
}

func TestLossNoticeSemaphorePermits(t *testing.T) {
	sem := func(owner string, token uint64, granted int64, permits int) history.Grant {
		g := mutexGrant(owner, token, granted)
		g.Workload, g.Locks, g.Capacity, g.Permits = "semaphores", []string{"sem/s0"}, 3, permits
		g.Ended, g.EndDeadline = ms(9000), ms(10000)
		return g
	}
	// Permits within the capacity: no conflict.
	_, vs := CheckLossNotice([]history.Grant{sem("a", 1, ms(100), 1), sem("b", 2, ms(200), 2)}, nil, NoticeOptions{})
	require.Empty(t, vs)
	// One permit too many.
	_, vs = CheckLossNotice([]history.Grant{sem("a", 1, ms(100), 2), sem("b", 2, ms(200), 2)}, nil, NoticeOptions{})
	require.Len(t, vs, 1)

	rw := func(owner string, token uint64, granted int64, write bool) history.Grant {
		g := sem(owner, token, granted, 1)
		g.Locks, g.Capacity = []string{"sem/rw0"}, RWCapacity
		if write {
			g.Permits = RWCapacity
		}
		return g
	}
	_, vs = CheckLossNotice([]history.Grant{rw("a", 1, ms(100), false), rw("b", 2, ms(200), false)}, nil, NoticeOptions{})
	require.Empty(t, vs, "readers share")
	_, vs = CheckLossNotice([]history.Grant{rw("a", 1, ms(100), false), rw("b", 2, ms(200), true)}, nil, NoticeOptions{})
	require.Len(t, vs, 1, "a writer while a reader holds")
	_, vs = CheckLossNotice([]history.Grant{rw("a", 1, ms(100), true), rw("b", 2, ms(200), false)}, nil, NoticeOptions{})
	require.Len(t, vs, 1, "a reader while a writer holds")
}

func TestLossNoticeSameOwnerAndOtherLocks(t *testing.T) {
	a := mutexGrant("a", 1, ms(100))
	a.Ended = ms(9000)
	again := mutexGrant("a", 2, ms(200)) // a conversion of a's own grant
	other := mutexGrant("c", 3, ms(300))
	other.Locks = []string{"lock/m1"}
	_, vs := CheckLossNotice([]history.Grant{a, again, other}, nil, NoticeOptions{})
	require.Empty(t, vs)
}

func TestLossNoticeLiveness(t *testing.T) {
	// Lost closed 1.5s past the session's deadline.
	a := mutexGrant("a", 1, ms(100))
	a.Lost, a.LostDeadline, a.Cause = ms(3600), ms(2100), "session ended"
	a.Ended, a.EndDeadline = ms(3700), ms(2100)
	_, vs := CheckLossNotice([]history.Grant{a}, nil, NoticeOptions{})
	require.Len(t, vs, 1)
	require.Contains(t, vs[0].Summary, "its Lost closed at 3.600s, 1.5s past the SDK's deadline of 2.100s")

	// The holder gave it up 2s past its hold time, Lost still open.
	b := mutexGrant("b", 2, ms(100))
	b.HoldMs = 200
	b.Ended, b.EndDeadline = ms(2300), ms(4000)
	b.Lost, b.Cause = ms(2310), "released"
	_, vs = CheckLossNotice([]history.Grant{b}, nil, NoticeOptions{})
	require.Len(t, vs, 1)
	require.Contains(t, vs[0].Summary, "its holder gave it up with Lost still open at 2.300s, 2s past the SDK's deadline of 0.300s")

	// Within the slack, and a holder that gave it up early: fine.
	a.Lost = ms(2900)
	b.Ended = ms(250)
	_, vs = CheckLossNotice([]history.Grant{a, b}, nil, NoticeOptions{})
	require.Empty(t, vs)
}

func TestLossNoticeForceReleaseLiveness(t *testing.T) {
	a := mutexGrant("a", 7, ms(100))
	a.Ended, a.EndDeadline = ms(5000), ms(6000)
	force := history.Op{Workload: "locks", Kind: KindSemForce, Key: "lock/m0", Token: 7, Call: ms(500), Return: ms(550),
		Status: history.OK, Succeeded: true}
	_, vs := CheckLossNotice([]history.Grant{a}, []history.Op{force}, NoticeOptions{})
	require.Len(t, vs, 1, "never told of the force-release while held for 4.4s more")
	require.Contains(t, vs[0].Summary, "force-released at 0.550s, and its Lost still open at 3.550s")

	a.Lost, a.Cause = ms(1200), "force-released"
	_, vs = CheckLossNotice([]history.Grant{a}, []history.Op{force}, NoticeOptions{})
	require.Empty(t, vs, "told at the next keep-alive")

	a.Lost = 0
	early := force
	early.Call = ms(50) // may have applied before a was granted
	_, vs = CheckLossNotice([]history.Grant{a}, []history.Op{early}, NoticeOptions{})
	require.Empty(t, vs)

	a.Ended = ms(900) // the holder gave it up first
	_, vs = CheckLossNotice([]history.Grant{a}, []history.Op{force}, NoticeOptions{})
	require.Empty(t, vs)
}
