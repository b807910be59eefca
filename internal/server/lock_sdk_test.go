package server_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/client/concurrency"
	"github.com/concord-dev/concord/internal/testcluster"
)

// The SDK's side of the lock promises (docs/locks.md): what a handle, a
// grant and a session tell their user, against a real cluster.

// within runs f and fails the test unless it returns within d. f runs on
// another goroutine: it checks with assert, not require.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s has not returned after %s", what, d)
	}
}

// holders returns the tokens of the grants of lock name.
func holders(t *testing.T, ctx context.Context, cl *client.Client, name string) []uint64 {
	t.Helper()
	info, _, err := cl.InspectLock(ctx, name)
	require.NoError(t, err)
	var out []uint64
	for _, h := range info.GetHolders() {
		out = append(out, h.GetToken())
	}
	return out
}

// released is a condition: nobody holds lock name.
func released(ctx context.Context, cl *client.Client, name string) func() bool {
	return func() bool {
		info, _, err := cl.InspectLock(ctx, name)
		return err == nil && len(info.GetHolders()) == 0
	}
}

// waiters is a condition: n wait for lock name.
func waiters(ctx context.Context, cl *client.Client, name string, n int) func() bool {
	return func() bool {
		info, _, err := cl.InspectLock(ctx, name)
		return err == nil && len(info.GetWaiters()) == n
	}
}

// Client.Close stops keeping its sessions alive: they end at once, and so
// do the grants they hold, before the server expires the session and
// grants the lock to another.
func TestSDKClientCloseLosesHeldLocks(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl, err := client.New(ctx, client.Config{Endpoints: c.Endpoints()})
	require.NoError(t, err)
	sess, err := cl.NewSession(ctx, client.WithTTL(time.Second))
	require.NoError(t, err)
	m := concurrency.NewMutex(sess, "closed")
	require.NoError(t, m.Lock(ctx))
	require.NoError(t, cl.Close())

	require.ErrorIs(t, sess.Err(), client.ErrClosed)
	require.Error(t, m.Context().Err(), "the grant's Context is cancelled when Close returns")
	cause := context.Cause(m.Context())
	require.ErrorIs(t, cause, client.ErrLockLost)
	require.ErrorIs(t, cause, client.ErrClosed, "the cause says why: %v", cause)

	other := concurrency.NewMutex(session(t, c.Client(), 5*time.Second), "closed")
	require.NoError(t, other.Lock(ctx), "granted once the closed client's session expired")
	require.Greater(t, other.Token(), m.Token())
}

// A client cut off from the cluster loses its session at the session's
// deadline, even while it is between two keep-alive streams (backing off,
// looking for the leader): the lock's Context is cancelled before the
// server, having expired the session, grants the lock to another.
func TestSDKSessionLossIsToldAtTheDeadlineBetweenStreams(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	leader := c.WaitLeader(5 * time.Second)
	f := (leader + 1) % 3
	a := c.Client(f) // knows only the member that will die
	sess, err := a.NewSession(ctx, client.WithTTL(time.Second))
	require.NoError(t, err)
	m := concurrency.NewMutex(sess, "late")
	require.NoError(t, m.Lock(ctx))
	b := concurrency.NewMutex(session(t, c.Client(leader), 10*time.Second), "late")
	got := make(chan error, 1)
	go func() { got <- b.Lock(ctx) }()
	require.Eventually(t, waiters(ctx, c.Client(leader), "late", 1), 5*time.Second, 10*time.Millisecond)
	c.Kill(f)
	require.NoError(t, <-got)
	require.Error(t, m.Context().Err(), "the lock was granted to another session (token %d), yet the first holder's Context is live (session deadline %s ago)",
		b.Token(), time.Since(sess.Deadline()))
	require.ErrorIs(t, context.Cause(m.Context()), client.ErrLockLost)
	require.ErrorIs(t, sess.Err(), client.ErrSessionExpired)
}

// A Lock whose ctx ends while its acquire is in flight is taken back in the
// background. The handle's next Lock (same owner, which the server answers
// with what the owner has) waits for that take-back, so the take-back never
// ends the grant the next Lock returns.
func TestSDKAbandonedAcquireSparesTheHandlesNextLock(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	m := concurrency.NewMutex(session(t, cl, 30*time.Second), "ab")
	abandoned := 0
	for i := 0; i < 30; i++ {
		// The ctx ends at various points of the acquire's round trip.
		short, cancel := context.WithTimeout(ctx, time.Duration(1+i%8)*150*time.Microsecond)
		err := m.Lock(short)
		cancel()
		if err == nil {
			require.NoError(t, m.Unlock(ctx))
			continue
		}
		require.ErrorIs(t, err, context.DeadlineExceeded)
		abandoned++
		require.NoError(t, m.Lock(ctx), "retry")
		// A take-back racing the retry would land within this.
		time.Sleep(50 * time.Millisecond)
		require.Equal(t, []uint64{m.Token()}, holders(t, ctx, cl, "ab"),
			"round %d: the handle holds token %d (Context: %v); the server must hold it", i, m.Token(), m.Context().Err())
		require.NoError(t, m.Context().Err())
		require.NoError(t, m.Unlock(ctx))
	}
	require.NotZero(t, abandoned, "no acquire was abandoned in flight")
}

// A queued Lock whose ctx ends is cancelled in the background, by waiter
// ID. The handle's next Lock waits for that cancel, then queues anew: the
// cancel never removes the wait of the next Lock.
func TestSDKAbandonedWaitSparesTheHandlesNextWait(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	holder := concurrency.NewMutex(session(t, cl, 30*time.Second), "aq")
	w := concurrency.NewMutex(session(t, cl, 30*time.Second), "aq")
	for i := 0; i < 5; i++ {
		require.NoError(t, holder.Lock(ctx))
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		err := w.Lock(short)
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)
		got := make(chan error, 1)
		go func() { got <- w.Lock(ctx) }()
		require.Eventually(t, waiters(ctx, cl, "aq", 1), 5*time.Second, 5*time.Millisecond)
		// A cancel racing the retry would land within this.
		time.Sleep(100 * time.Millisecond)
		require.NoError(t, holder.Unlock(ctx))
		require.NoError(t, <-got, "round %d: the retried Lock must be granted once the lock is released", i)
		require.Equal(t, []uint64{w.Token()}, holders(t, ctx, cl, "aq"))
		require.NoError(t, w.Unlock(ctx))
	}
}

// A downgrade keeps the grant, and the hold clock the server started for
// it: the read lock's Context ends at the write lock's hold deadline, not a
// full hold time after the downgrade, and never after the server ended the
// grant.
func TestSDKDowngradeKeepsTheHoldDeadline(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	const hold = time.Second
	rw := concurrency.NewRWMutex(session(t, cl, 30*time.Second), "dg", concurrency.WithHoldTime(hold))
	start := time.Now()
	require.NoError(t, rw.Lock(ctx))
	time.Sleep(hold / 2) // spend half the hold time
	require.NoError(t, rw.Downgrade(ctx))
	require.NoError(t, rw.Context().Err(), "the downgraded grant is held")

	<-rw.Context().Done()
	require.Less(t, time.Since(start), hold+hold/4, "the hold clock restarted at the downgrade (that would end it %s after the Lock)", hold+hold/2)
	cause := context.Cause(rw.Context())
	require.ErrorIs(t, cause, client.ErrLockLost)
	require.ErrorContains(t, cause, "hold time")
	// The server ends it too, and never before the SDK did.
	require.Eventually(t, released(ctx, cl, "dg"), 5*time.Second, 10*time.Millisecond)
	writer := concurrency.NewRWMutex(session(t, cl, 30*time.Second), "dg")
	ok, err := writer.TryLock(ctx)
	require.NoError(t, err)
	require.True(t, ok)
}

// A Downgrade whose ctx ends while it is in flight may have been applied,
// and is taken back, with the lock: the write lock is lost at once, not
// left to look held while the server may have let readers in.
func TestSDKAbandonedDowngradeLosesTheWriteLock(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	rw := concurrency.NewRWMutex(session(t, cl, 30*time.Second), "ad")
	abandoned := 0
	for i := 0; i < 30 && abandoned < 3; i++ {
		require.NoError(t, rw.Lock(ctx))
		short, cancel := context.WithTimeout(ctx, time.Duration(1+i%8)*150*time.Microsecond)
		err := rw.Downgrade(short)
		cancel()
		if err == nil {
			require.NoError(t, rw.RUnlock(ctx))
			continue
		}
		require.ErrorIs(t, err, context.DeadlineExceeded)
		if rw.Context().Err() == nil {
			// Given up before anything was sent, then the write lock is
			// held as it was, after a take-back would have landed.
			time.Sleep(50 * time.Millisecond)
			info, _, err := cl.InspectLock(ctx, "ad")
			require.NoError(t, err)
			require.Len(t, info.GetHolders(), 1, "round %d: the write lock looks held (its Context is live), but the server holds nothing", i)
			require.Equal(t, client.ModeExclusive, info.GetHolders()[0].GetMode())
			require.NoError(t, rw.Context().Err())
			require.NoError(t, rw.Unlock(ctx))
			continue
		}
		abandoned++
		require.ErrorIs(t, context.Cause(rw.Context()), client.ErrLockLost)
		require.Eventually(t, released(ctx, cl, "ad"), 5*time.Second, 5*time.Millisecond, "taken back")
		err = rw.Unlock(ctx)
		require.True(t, err == nil || errors.Is(err, client.ErrLockLost), "%v", err)
		require.Zero(t, rw.Token())
	}
	require.NotZero(t, abandoned, "no downgrade was abandoned in flight")
}

// The leader starts a grant's hold clock when it applies the grant; the
// SDK cannot see that moment and counts from the acquire it sent, the last
// moment it knows to precede it. A waiter granted within its hold time gets
// a live Context, which ends before the server's grant does.
func TestSDKQueuedHoldTimeCountsFromTheAcquire(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	holder := concurrency.NewMutex(session(t, cl, 30*time.Second), "hq")
	require.NoError(t, holder.Lock(ctx))
	w := concurrency.NewMutex(session(t, cl, 30*time.Second), "hq", concurrency.WithHoldTime(time.Second))
	got := make(chan error, 1)
	go func() { got <- w.Lock(ctx) }()
	require.Eventually(t, waiters(ctx, cl, "hq", 1), 5*time.Second, 5*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // queue for part of the hold time
	require.NoError(t, holder.Unlock(ctx))
	require.NoError(t, <-got)
	require.NoError(t, w.Context().Err(), "granted within its hold time: %v", context.Cause(w.Context()))
	require.Equal(t, []uint64{w.Token()}, holders(t, ctx, cl, "hq"))

	<-w.Context().Done()
	require.ErrorIs(t, context.Cause(w.Context()), client.ErrLockLost)
	require.Equal(t, []uint64{w.Token()}, holders(t, ctx, cl, "hq"), "the SDK's Context ends before the server's grant")
	require.Eventually(t, released(ctx, cl, "hq"), 5*time.Second, 10*time.Millisecond)
}

// Unlock of a grant whose hold time the SDK counted over returns
// ErrLockLost with the reason, although the server (whose clock started
// later, at the grant) still held it and the release frees it. It used to
// return nil.
func TestSDKUnlockAfterTheSDKsHoldTimeIsLockLost(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	holder := concurrency.NewMutex(session(t, cl, 30*time.Second), "hl")
	require.NoError(t, holder.Lock(ctx))
	w := concurrency.NewMutex(session(t, cl, 30*time.Second), "hl", concurrency.WithHoldTime(2*time.Second))
	got := make(chan error, 1)
	go func() { got <- w.Lock(ctx) }()
	require.Eventually(t, waiters(ctx, cl, "hl", 1), 5*time.Second, 5*time.Millisecond)
	time.Sleep(time.Second) // the SDK's hold clock runs from the acquire
	require.NoError(t, holder.Unlock(ctx))
	require.NoError(t, <-got)
	<-w.Context().Done()
	require.Equal(t, []uint64{w.Token()}, holders(t, ctx, cl, "hl"), "the server's hold time is not over yet")
	err := w.Unlock(ctx)
	require.ErrorIs(t, err, client.ErrLockLost)
	require.ErrorContains(t, err, "hold time")
	require.True(t, released(ctx, cl, "hl")(), "the release freed the lock")
}

// A waiter granted after queueing longer than its hold time cannot be
// handed out with a live Context (the SDK cannot vouch for any of the hold
// left), nor with a cancelled one: Lock fails with ErrLockLost and gives
// the grant back at once, long before the server's hold time would end it.
func TestSDKQueuedPastItsHoldTimeIsGivenBack(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	holder := concurrency.NewMutex(session(t, cl, 30*time.Second), "hw")
	require.NoError(t, holder.Lock(ctx))
	w := concurrency.NewMutex(session(t, cl, 30*time.Second), "hw", concurrency.WithHoldTime(time.Second))
	got := make(chan error, 1)
	go func() { got <- w.Lock(ctx) }()
	require.Eventually(t, waiters(ctx, cl, "hw", 1), 5*time.Second, 5*time.Millisecond)
	time.Sleep(1200 * time.Millisecond) // queue past the hold time
	require.NoError(t, holder.Unlock(ctx))
	granted := time.Now()
	err := <-got
	require.ErrorIs(t, err, client.ErrLockLost)
	require.Zero(t, w.Token(), "Lock failed: the handle holds nothing")
	require.ErrorIs(t, context.Cause(w.Context()), client.ErrNotHeld)

	require.Eventually(t, released(ctx, cl, "hw"), 5*time.Second, 5*time.Millisecond)
	require.Less(t, time.Since(granted), 500*time.Millisecond, "given back, not left to the server's hold time")
	require.NoError(t, w.Lock(ctx), "the handle can lock again")
	require.NoError(t, w.Context().Err())
	require.NoError(t, w.Unlock(ctx))
}

// An acquire answered with a grant its owner held already (acquiring again
// is idempotent) cannot be timed from this acquire: the leader started the
// hold clock with the earlier grant. It is not handed out, nor taken from
// the earlier Grant, which keeps its own deadline.
func TestSDKReacquiredGrantIsNotTimedFromTheReacquire(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	sess := session(t, cl, 30*time.Second)
	claim := []*client.LockClaim{{Name: "re", Kind: client.KindMutex}}
	owner := cl.NewOwner()
	first, err := cl.AcquireLocks(ctx, sess, owner, claim, client.AcquireOptions{Hold: 5 * time.Second})
	require.NoError(t, err)
	_, err = cl.AcquireLocks(ctx, sess, owner, claim, client.AcquireOptions{Hold: 5 * time.Second})
	require.ErrorIs(t, err, client.ErrLockLost)
	require.NoError(t, first.Err())
	require.Equal(t, []uint64{first.Token}, holders(t, ctx, cl, "re"))
	require.NoError(t, first.Release(ctx))

	// Without a hold time only the session bounds a grant: acquiring again
	// answers the same grant.
	first, err = cl.AcquireLocks(ctx, sess, owner, claim, client.AcquireOptions{})
	require.NoError(t, err)
	again, err := cl.AcquireLocks(ctx, sess, owner, claim, client.AcquireOptions{})
	require.NoError(t, err)
	require.Equal(t, first.Token, again.Token)
	again.Detach()
	require.NoError(t, first.Release(ctx))
	require.Empty(t, holders(t, ctx, cl, "re"))
}

// Semaphore.Acquire returns the grant it took, while another goroutine may
// already release it through the semaphore (run with -race).
func TestSDKSemaphoreAcquireRacesRelease(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	sem := concurrency.NewSemaphore(session(t, c.Client(), 10*time.Second), "sr", 100)
	const n = 20
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			g, err := sem.Acquire(ctx, 1)
			if err != nil {
				t.Errorf("acquire: %v", err)
				return
			}
			if g == nil || g.Token == 0 {
				t.Errorf("Acquire returned no grant and no error")
			}
		}
	}()
	for released := 0; released < n; {
		if err := sem.Release(ctx); err == nil {
			released++
		} else if !errors.Is(err, client.ErrNotHeld) {
			t.Fatalf("release: %v", err)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		default:
		}
	}
	<-done
}

// While a handle's Lock waits in the queue, the handle's other calls do not
// wait behind it: Token and Context answer at once, TryLock answers false at
// once (the lock is taken: the handle's own wait queues for it), and Unlock
// gives up when its own ctx ends. TryLock used to wait for the queued Lock
// until its own ctx ended: with a long ctx, a try-lock blocked for as long as
// the queue did.
func TestSDKHandleCallsDoNotWaitBehindItsQueuedLock(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	holder := concurrency.NewMutex(session(t, cl, 10*time.Second), "blk")
	require.NoError(t, holder.Lock(ctx))
	w := concurrency.NewMutex(session(t, cl, 10*time.Second), "blk")
	queued := make(chan error, 1)
	go func() { queued <- w.Lock(ctx) }()
	require.Eventually(t, waiters(ctx, cl, "blk", 1), 5*time.Second, 10*time.Millisecond)

	within(t, time.Second, "Token and Context", func() {
		assert.Zero(t, w.Token())
		assert.ErrorIs(t, context.Cause(w.Context()), client.ErrNotHeld)
	})
	within(t, 3*time.Second, "TryLock with a 10s ctx", func() {
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		ok, err := w.TryLock(tctx)
		assert.NoError(t, err)
		assert.False(t, ok, "the lock is taken")
	})
	within(t, time.Second, "Unlock with a 100ms ctx", func() {
		uctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		assert.ErrorIs(t, w.Unlock(uctx), context.DeadlineExceeded)
	})

	require.NoError(t, holder.Unlock(ctx))
	require.NoError(t, <-queued)
	ok, err := w.TryLock(ctx)
	require.NoError(t, err)
	require.True(t, ok, "reentrant once the queued Lock holds")
	require.NoError(t, w.Unlock(ctx))
	require.NoError(t, w.Unlock(ctx))
	require.Empty(t, holders(t, ctx, cl, "blk"))
}

// A Lock queued when its client is closed returns at once, with
// ErrSessionExpired (Close ended the session) and not ErrClosed, which says
// a call had no effect: the acquire queued, and it stays queued until the
// session expires on the server.
func TestSDKQueuedLockEndsOnClientClose(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	holder := concurrency.NewMutex(session(t, c.Client(), 10*time.Second), "cl")
	require.NoError(t, holder.Lock(ctx))
	cl, err := client.New(ctx, client.Config{Endpoints: c.Endpoints()})
	require.NoError(t, err)
	s, err := cl.NewSession(ctx, client.WithTTL(10*time.Second))
	require.NoError(t, err)
	w := concurrency.NewMutex(s, "cl")
	got := make(chan error, 1)
	go func() { got <- w.Lock(context.Background()) }()
	require.Eventually(t, waiters(ctx, c.Client(), "cl", 1), 5*time.Second, 10*time.Millisecond)
	require.NoError(t, cl.Close())
	select {
	case err := <-got:
		require.ErrorIs(t, err, client.ErrSessionExpired)
		require.NotErrorIs(t, err, client.ErrClosed)
	case <-time.After(2 * time.Second):
		t.Fatalf("a Lock queued on a closed client has not returned 2s after Close")
	}
}

// A Lock queued on a session that ends by the SDK's count (Orphan, Close)
// returns at once with ErrSessionExpired, not when the cluster expires the
// session a TTL later, and its waiter leaves the queue: the next waiter is
// granted the lock at its release. The error is not ErrClosed: the acquire
// was applied (it queued).
func TestSDKQueuedLockEndsWithItsSession(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	for _, end := range []string{"orphan", "close"} {
		name := "se-" + end
		holder := concurrency.NewMutex(session(t, cl, 30*time.Second), name)
		require.NoError(t, holder.Lock(ctx))
		s, err := cl.NewSession(ctx, client.WithTTL(30*time.Second))
		require.NoError(t, err)
		w := concurrency.NewMutex(s, name)
		got := make(chan error, 1)
		go func() { got <- w.Lock(ctx) }()
		require.Eventually(t, waiters(ctx, cl, name, 1), 5*time.Second, 5*time.Millisecond)
		next := concurrency.NewMutex(session(t, cl, 30*time.Second), name)
		nextGot := make(chan error, 1)
		go func() { nextGot <- next.Lock(ctx) }()
		require.Eventually(t, waiters(ctx, cl, name, 2), 5*time.Second, 5*time.Millisecond)
		if end == "orphan" {
			s.Orphan()
		} else {
			require.NoError(t, s.Close(ctx))
		}
		select {
		case err := <-got:
			require.ErrorIs(t, err, client.ErrSessionExpired, end)
			require.NotErrorIs(t, err, client.ErrClosed, end)
		case <-time.After(3 * time.Second):
			t.Fatalf("%s: a Lock queued on an ended session has not returned 3s later (session TTL 30s)", end)
		}
		require.Eventually(t, waiters(ctx, cl, name, 1), 5*time.Second, 5*time.Millisecond,
			"%s: the ended session's waiter must leave the queue", end)
		require.NoError(t, holder.Unlock(ctx))
		select {
		case err := <-nextGot:
			require.NoError(t, err, end)
		case <-time.After(3 * time.Second):
			t.Fatalf("%s: the next waiter was not granted the lock 3s after its release", end)
		}
		require.Equal(t, []uint64{next.Token()}, holders(t, ctx, cl, name), end)
		require.NoError(t, next.Unlock(ctx))
	}
}

// An Unlock that fails (here, its ctx is already done: nothing is sent)
// leaves the grant to the handle, as the server still holds it: Token and
// Context are unchanged, and a later Unlock releases it.
func TestSDKFailedUnlockKeepsTheGrant(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	for _, batching := range []bool{true, false} {
		cl, err := client.New(ctx, client.Config{Endpoints: c.Endpoints(), DisableBatching: !batching})
		require.NoError(t, err)
		defer cl.Close()
		m := concurrency.NewMutex(session(t, cl, 10*time.Second), "fu")
		require.NoError(t, m.Lock(ctx))
		token, held := m.Token(), m.Context()
		gone, cancel := context.WithCancel(ctx)
		cancel()
		require.ErrorIs(t, m.Unlock(gone), context.Canceled)
		require.Equal(t, token, m.Token(), "batching %v", batching)
		require.NoError(t, m.Context().Err())
		require.True(t, held == m.Context(), "the same grant's Context")
		require.Equal(t, []uint64{token}, holders(t, ctx, cl, "fu"))

		require.NoError(t, m.Unlock(ctx))
		require.Empty(t, holders(t, ctx, cl, "fu"))
		require.ErrorIs(t, context.Cause(held), client.ErrNotHeld, "released, not lost")
		require.Zero(t, m.Token())
		require.ErrorIs(t, m.Unlock(ctx), client.ErrNotHeld)

		// A semaphore keeps permits whose release failed as its oldest.
		sem := concurrency.NewSemaphore(session(t, cl, 10*time.Second), "fs", 2)
		g, err := sem.Acquire(ctx, 1)
		require.NoError(t, err)
		require.ErrorIs(t, sem.Release(gone), context.Canceled)
		require.NoError(t, g.Err())
		require.Equal(t, []uint64{g.Token}, holders(t, ctx, cl, "fs"))
		require.NoError(t, sem.Release(ctx))
		require.Empty(t, holders(t, ctx, cl, "fs"))
		require.ErrorIs(t, g.Err(), client.ErrNotHeld)
	}
}
