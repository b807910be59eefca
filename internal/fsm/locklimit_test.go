package fsm

import (
	"testing"

	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
)

func acquireWithLimit(limit int64, sess int64, owner string, wait bool, names ...string) *internalv1.Command {
	var claims []*concordv1.LockClaim
	for _, n := range names {
		claims = append(claims, &concordv1.LockClaim{Name: n, Kind: concordv1.LockKind_LOCK_KIND_MUTEX})
	}
	return &internalv1.Command{LockLimit: limit, Op: &internalv1.Command_LockAcquire{LockAcquire: &concordv1.AcquireRequest{
		Claims: claims, Session: sess, Owner: owner, Wait: wait}}}
}

func entriesOf(f *FSM) (n int) {
	f.Read(func(s State) { n = s.Locks.Entries() })
	return n
}

// From RulesLockLimit the state machine keeps the bound an acquire's
// command carries (the proposing member's --max-locks): acquires that each
// passed their member's check against the same earlier state, as racing
// acquires do, cannot take the table past it together. Below that rules
// version the field changes nothing, as on a member of a release that
// does not know it.
func TestLockLimitFromItsRulesVersion(t *testing.T) {
	session := func(f *FSM, idx uint64) int64 {
		return apply(t, f, idx, &internalv1.Command{Op: &internalv1.Command_CreateSession{CreateSession: &internalv1.CreateSession{TtlMs: 60000}}}).GetCreateSession().GetId()
	}
	state := func(res *internalv1.Result) concordv1.AcquireState { return res.GetLockAcquire().GetState() }

	// Below the rules version: three new locks (six entries) under a
	// limit of 4 all pass, and the state is the one without the field.
	old, plain := New(Config{}), New(Config{})
	for _, f := range []*FSM{old, plain} {
		f.ApplyBatch(entries(t, 1, raiseRules(RulesClusterID)))
		require.EqualValues(t, 2, session(f, 2))
	}
	for i, name := range []string{"a", "b", "c"} {
		res := apply(t, old, uint64(3+i), acquireWithLimit(4, 2, "o", false, name))
		require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, state(res), "below RulesLockLimit the limit is ignored")
		apply(t, plain, uint64(3+i), acquireWithLimit(0, 2, "o", false, name))
	}
	require.Equal(t, 6, entriesOf(old))
	_, ho := hashOf(t, old)
	_, hp := hashOf(t, plain)
	require.Equal(t, hp, ho, "the ignored field changed nothing")

	// From the rules version. twin applies the same entries with a Noop
	// in place of each refused one.
	f, twin := New(Config{}), New(Config{})
	var s int64
	for _, m := range []*FSM{f, twin} {
		m.ApplyBatch(entries(t, 1, raiseRules(RulesLockLimit)))
		s = session(m, 2)
		// Two acquires judged against the same empty table by their
		// members (each adds 2 of a limit of 5): both pass.
		require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, state(apply(t, m, 3, acquireWithLimit(5, s, "o1", false, "a"))))
		require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, state(apply(t, m, 4, acquireWithLimit(5, s, "o2", false, "b"))))
	}
	// A third new lock would make 6.
	res := apply(t, f, 5, acquireWithLimit(5, s, "o3", false, "c"))
	require.ErrorIs(t, ResultError(res), ErrQuotaExceeded)
	require.Contains(t, res.GetError().GetMessage(), "holds 4 locks, grants and waiters and this acquire could add 2; the maximum is 5")
	// A LockAll of an existing lock and a new one adds 3: refused whole.
	res = apply(t, f, 6, acquireWithLimit(5, s, "o4", true, "a", "d"))
	require.ErrorIs(t, ResultError(res), ErrQuotaExceeded)
	for i := uint64(5); i <= 6; i++ {
		apply(t, twin, i, &internalv1.Command{Op: &internalv1.Command_Noop{Noop: &internalv1.Noop{}}})
	}
	_, hf := hashOf(t, f)
	_, ht := hashOf(t, twin)
	require.Equal(t, ht, hf, "the refusals changed nothing")
	f.Read(func(st State) {
		for _, name := range []string{"c", "d"} {
			_, _, ok := st.Locks.Get(name)
			require.False(t, ok, "a refused acquire created %s", name)
		}
	})

	// Room for one: a place in a's queue fits.
	res = apply(t, f, 7, acquireWithLimit(5, s, "o5", true, "a"))
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_QUEUED, state(res))
	require.Equal(t, 5, entriesOf(f))
	// At the limit, what adds nothing still passes: the holder's
	// reentrant acquire, the waiter's retry, a resumed grant.
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, state(apply(t, f, 8, acquireWithLimit(5, s, "o1", false, "a"))))
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_QUEUED, state(apply(t, f, 9, acquireWithLimit(5, s, "o5", true, "a"))))
	resume := acquireWithLimit(5, s, "o2", false, "b")
	resume.GetLockAcquire().ResumeToken = 4
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, state(apply(t, f, 10, resume)))
	// Another place in the queue does not fit; without a limit (0) it
	// does.
	require.ErrorIs(t, ResultError(apply(t, f, 11, acquireWithLimit(5, s, "o6", true, "b"))), ErrQuotaExceeded)
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_QUEUED, state(apply(t, f, 12, acquireWithLimit(0, s, "o6", true, "b"))))
	require.Equal(t, 6, entriesOf(f))

	// At the limit, a try-lock of a held lock fails as it would (it takes
	// nothing), and an acquire of an ended session is told so, not
	// refused as past the limit.
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_NOT_ACQUIRED, state(apply(t, f, 13, acquireWithLimit(1, s, "o7", false, "a"))))
	res = apply(t, f, 14, acquireWithLimit(1, 999, "o7", true, "z"))
	require.Error(t, ResultError(res))
	require.NotErrorIs(t, ResultError(res), ErrQuotaExceeded, "an ended session's acquire: %v", ResultError(res))
}

// A retried acquire (the same request ID) gets the answer its first
// application got, whatever the limit says when it is applied again: a
// grant stays GRANTED after the table filled up, and a refusal stays
// QUOTA_EXCEEDED after room was made.
func TestLockLimitAnswersRetriesAsTheFirstTime(t *testing.T) {
	f := New(Config{})
	f.ApplyBatch(entries(t, 1, raiseRules(RulesLockLimit)))
	s := apply(t, f, 2, &internalv1.Command{Op: &internalv1.Command_CreateSession{CreateSession: &internalv1.CreateSession{TtlMs: 60000}}}).GetCreateSession().GetId()
	withMeta := func(cmd *internalv1.Command, id uint64) *internalv1.Command {
		cmd.Meta = &concordv1.WriteMeta{ClientId: "c", RequestId: id}
		return cmd
	}
	granted := apply(t, f, 3, withMeta(acquireWithLimit(4, s, "o1", false, "a"), 7))
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, granted.GetLockAcquire().GetState())
	apply(t, f, 4, &internalv1.Command{Op: &internalv1.Command_LockRelease{LockRelease: &concordv1.ReleaseRequest{Names: []string{"a"}, Session: s, Owner: "o1"}}})
	for i, name := range []string{"b", "c"} {
		require.NoError(t, ResultError(apply(t, f, uint64(5+i), acquireWithLimit(4, s, "o2", false, name))))
	}
	require.Equal(t, 4, entriesOf(f))
	again := apply(t, f, 7, withMeta(acquireWithLimit(4, s, "o1", false, "a"), 7))
	require.NoError(t, ResultError(again), "the retry of an applied grant at the limit")
	require.Equal(t, granted.GetLockAcquire().GetToken(), again.GetLockAcquire().GetToken(), "answered as the first time")
	require.Equal(t, 4, entriesOf(f), "the retry took nothing")

	refused := apply(t, f, 8, withMeta(acquireWithLimit(4, s, "o3", false, "d"), 8))
	require.ErrorIs(t, ResultError(refused), ErrQuotaExceeded)
	apply(t, f, 9, &internalv1.Command{Op: &internalv1.Command_LockRelease{LockRelease: &concordv1.ReleaseRequest{Names: []string{"b", "c"}, Session: s, Owner: "o2"}}})
	require.Zero(t, entriesOf(f))
	again = apply(t, f, 10, withMeta(acquireWithLimit(4, s, "o3", false, "d"), 8))
	require.ErrorIs(t, ResultError(again), ErrQuotaExceeded, "the retry of a refused acquire is answered as the first time")
	require.Zero(t, entriesOf(f))
}
