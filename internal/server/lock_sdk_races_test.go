package server_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/client/concurrency"
	"github.com/concord-dev/concord/internal/faultnet"
	"github.com/concord-dev/concord/internal/testcluster"
)

// RLock and Lock racing on one RWMutex handle: the pair shares one owner,
// whose acquire of the other mode the server takes for a conversion, so
// without a gate both succeeded and the handle believed it held the write
// lock while the server held a read lock that let other readers in. Now
// one of the two is refused (ErrWouldDeadlock), and what the handle holds
// is what the server holds.
func TestRWMutexRLockAndLockRacingOnOneHandle(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	for i := range 40 {
		name := fmt.Sprintf("rwrace%d", i)
		rw := concurrency.NewRWMutex(session(t, cl, 10*time.Second), name)
		var wg sync.WaitGroup
		var rErr, wErr error
		wg.Add(2)
		go func() { defer wg.Done(); wErr = rw.Lock(ctx) }()
		// Start RLock a little later each round, so that some rounds send
		// it while the write lock's acquire is in flight.
		time.Sleep(time.Duration(i%10) * 150 * time.Microsecond)
		go func() { defer wg.Done(); rErr = rw.RLock(ctx) }()
		wg.Wait()
		require.False(t, rErr == nil && wErr == nil, "round %d: RLock and Lock on one handle both succeeded", i)
		info, _, err := cl.InspectLock(ctx, name)
		require.NoError(t, err)
		require.Len(t, info.GetHolders(), 1, "round %d", i)
		h := info.GetHolders()[0]
		require.Equal(t, rw.Token(), h.GetToken(), "round %d: the handle's token is the server's", i)
		if wErr == nil {
			require.Equal(t, client.ModeExclusive, h.GetMode(), "round %d: Lock succeeded, the server must hold the write lock", i)
		} else {
			require.ErrorIs(t, wErr, client.ErrWouldDeadlock, "round %d", i)
			require.Equal(t, client.ModeShared, h.GetMode(), "round %d: RLock succeeded, the server must hold a read lock", i)
		}
	}
}

// An acquire or a conversion whose call the client's own RetryTimeout
// ended (the caller's ctx has no deadline) has an unknown outcome: it is
// taken back, and a conversion's grant is lost, as when the caller's ctx
// ends. It was a bare context.DeadlineExceeded, taken for the caller's and
// not taken back: the lock stayed held until the session ended, or the
// handle kept a write lock with a live Context while the server held a
// read lock.
func TestCallsEndedByTheRetryTimeoutAreTakenBack(t *testing.T) {
	slowClient := func(t *testing.T, c *testcluster.Cluster) (*client.Client, *faultnet.Proxy) {
		p, err := faultnet.Listen("127.0.0.1:0", c.Members[0].Cfg.ListenClient)
		require.NoError(t, err)
		t.Cleanup(func() { _ = p.Close() })
		cl, err := client.New(ctxT(t, 10*time.Second), client.Config{Endpoints: []string{p.Addr()}, RetryTimeout: 400 * time.Millisecond})
		require.NoError(t, err)
		t.Cleanup(func() { _ = cl.Close() })
		return cl, p
	}
	// The request reaches the member after 250 ms and is applied; its
	// answer would come back 250 ms later, after the 400 ms bound.
	slow := func(p *faultnet.Proxy) func() bool {
		p.Set("127.0.0.1", faultnet.Link{Delay: 250 * time.Millisecond})
		return time.AfterFunc(300*time.Millisecond, p.Heal).Stop // a take-back finds a healthy link
	}

	t.Run("lock", func(t *testing.T) {
		c := testcluster.Start(t, testcluster.Options{Size: 1})
		ctx := ctxT(t, 30*time.Second)
		cl, p := slowClient(t, c)
		m := concurrency.NewMutex(session(t, cl, 20*time.Second), "rt")
		require.NoError(t, m.Lock(ctx)) // the batch stream is up
		require.NoError(t, m.Unlock(ctx))
		defer slow(p)()
		err := m.Lock(context.Background())
		require.ErrorIs(t, err, client.ErrUnavailable, "the outcome is unknown")
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Zero(t, m.Token())
		other := concurrency.NewMutex(session(t, c.Client(), 10*time.Second), "rt")
		require.Eventually(t, func() bool {
			ok, err := other.TryLock(ctx)
			return err == nil && ok
		}, 5*time.Second, 50*time.Millisecond, "the lock was taken back")
	})
	t.Run("downgrade", func(t *testing.T) {
		c := testcluster.Start(t, testcluster.Options{Size: 1})
		ctx := ctxT(t, 30*time.Second)
		cl, p := slowClient(t, c)
		rw := concurrency.NewRWMutex(session(t, cl, 20*time.Second), "dgrt")
		require.NoError(t, rw.Lock(ctx))
		defer slow(p)()
		err := rw.Downgrade(context.Background())
		require.ErrorIs(t, err, client.ErrUnavailable)
		select {
		case <-rw.Context().Done():
		case <-time.After(5 * time.Second):
			t.Fatal("the handle still holds the write lock after a conversion of unknown outcome")
		}
		require.ErrorIs(t, context.Cause(rw.Context()), client.ErrLockLost)
	})
}

// A conversion keeps the handle's reentrancy count: two nested read holds,
// upgraded and downgraded, are still two, so the inner RUnlock leaves the
// lock held for the outer one.
func TestConversionKeepsTheReentrancyCount(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	rw := concurrency.NewRWMutex(session(t, cl, 10*time.Second), "reent")
	require.NoError(t, rw.RLock(ctx)) // outer
	require.NoError(t, rw.RLock(ctx)) // inner (reentrant)
	require.NoError(t, rw.Upgrade(ctx))
	require.NoError(t, rw.Downgrade(ctx))
	require.NoError(t, rw.RUnlock(ctx)) // inner done
	require.NotEmpty(t, holders(t, ctx, cl, "reent"), "the outer read hold still holds the lock")
	require.NoError(t, rw.RUnlock(ctx), "outer RUnlock")
	require.Eventually(t, released(ctx, cl, "reent"), 5*time.Second, 20*time.Millisecond)
}

// Semaphore.Release releases the oldest grant still held: one released
// through its Grant is skipped, not answered with ErrNotHeld while other
// permits stay held.
func TestSemaphoreReleaseSkipsGrantsReleasedDirectly(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	sem := concurrency.NewSemaphore(session(t, cl, 10*time.Second), "sst", 2)
	g1, err := sem.Acquire(ctx, 1)
	require.NoError(t, err)
	g2, err := sem.Acquire(ctx, 1)
	require.NoError(t, err)
	require.NoError(t, g1.Release(ctx), "release the first grant directly")
	require.NoError(t, sem.Release(ctx), "the oldest grant still held (token %d)", g2.Token)
	require.Error(t, g2.Err())
	require.ErrorIs(t, sem.Release(ctx), client.ErrNotHeld, "nothing left")
}

// One Mutex handle and one Session shared by many goroutines, with Token,
// Context and Lost readers, then the session closed under them: no race
// (make test runs -race), the handle ends empty and the lock is released.
func TestSharedMutexHandleUnderConcurrentUse(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	sess, err := cl.NewSession(ctx, client.WithTTL(5*time.Second))
	require.NoError(t, err)
	m := concurrency.NewMutex(sess, "stress", concurrency.WithHoldTime(2*time.Second))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				lctx, cancel := context.WithTimeout(ctx, time.Duration(1+g)*time.Millisecond)
				if m.Lock(lctx) == nil {
					_ = m.Token()
					_ = m.Context().Err()
					_ = m.Unlock(ctx)
				}
				cancel()
			}
		})
	}
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-m.Lost():
			case <-time.After(time.Millisecond):
			}
			_ = m.Token()
		}
	})
	time.Sleep(1500 * time.Millisecond)
	lost := m.Context()
	require.NoError(t, sess.Close(ctx))
	close(stop)
	wg.Wait()
	require.Error(t, lost.Err())
	require.Error(t, m.Context().Err())
	for i := 0; i < 10 && m.Token() != 0; i++ {
		_ = m.Unlock(ctx)
	}
	require.Zero(t, m.Token())
	require.Eventually(t, released(ctx, c.Client(), "stress"), 5*time.Second, 20*time.Millisecond)
}

// An Unlock that finds its grant gone before the SDK heard of it (a
// force-release is reported by the next keep-alive) is a lost lock, not a
// mistake of the caller: ErrLockLost (still ErrNotHeld), and the handle's
// Context ends with it.
func TestUnlockOfAGrantForceReleasedUnseenIsLost(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	m := concurrency.NewMutex(session(t, cl, 30*time.Second), "unseen") // keep-alives every 10 s
	require.NoError(t, m.Lock(ctx))
	held := m.Context()
	n, err := c.Client().ForceReleaseLock(ctx, "unseen", 0, "test")
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	err = m.Unlock(ctx)
	require.ErrorIs(t, err, client.ErrLockLost)
	require.ErrorIs(t, err, client.ErrNotHeld)
	require.ErrorContains(t, err, "had ended before its release")
	require.ErrorIs(t, context.Cause(held), client.ErrLockLost)
	require.Zero(t, m.Token())
}

// Semaphore.Release of a lost oldest grant reports the loss; it does not
// release a younger grant, perhaps another caller's in its critical
// section, in its place.
func TestSemaphoreReleaseOfALostGrantKeepsTheLiveOne(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	sem := concurrency.NewSemaphore(session(t, cl, 3*time.Second), "revsem", 2)
	g1, err := sem.Acquire(ctx, 1)
	require.NoError(t, err)
	g2, err := sem.Acquire(ctx, 1)
	require.NoError(t, err)
	_, err = c.Client().ForceReleaseLock(ctx, "revsem", g1.Token, "test")
	require.NoError(t, err)
	select {
	case <-g1.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("g1 not seen lost")
	}
	require.ErrorIs(t, sem.Release(ctx), client.ErrLockLost, "the oldest grant was lost")
	require.NoError(t, g2.Err(), "the live grant g2 was released in place of the lost g1")
	require.NoError(t, sem.Release(ctx), "g2 is next")
	require.Error(t, g2.Err())
}

// The RWMutex's modes never wait on each other inside the SDK: a TryLock
// while another goroutine's RLock of the same handle queues fails at once,
// as TryLock promises.
func TestRWMutexTryLockDoesNotWaitForAQueuedRLock(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	writer := concurrency.NewRWMutex(session(t, cl, 10*time.Second), "revrw")
	require.NoError(t, writer.Lock(ctx))
	rw := concurrency.NewRWMutex(session(t, cl, 10*time.Second), "revrw")
	queued := make(chan error, 1)
	go func() { queued <- rw.RLock(ctx) }() // queues behind the writer
	require.Eventually(t, func() bool {
		info, _, err := cl.InspectLock(ctx, "revrw")
		return err == nil && len(info.GetWaiters()) == 1
	}, 5*time.Second, 10*time.Millisecond)
	tctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	start := time.Now()
	ok, err := rw.TryLock(tctx)
	require.False(t, ok)
	require.ErrorIs(t, err, client.ErrWouldDeadlock)
	require.Less(t, time.Since(start), time.Second, "TryLock waited for another goroutine's queued RLock")
	require.NoError(t, writer.Unlock(ctx))
	require.NoError(t, <-queued, "the queued RLock is granted")
	require.NoError(t, rw.RUnlock(ctx))
}
