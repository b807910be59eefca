package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/client/concurrency"
	"github.com/concord-dev/concord/internal/testcluster"
)

func session(t *testing.T, cl *client.Client, ttl time.Duration) *client.Session {
	s, err := cl.NewSession(context.Background(), client.WithTTL(ttl))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func TestMutexBasicsTokensAndReentrancy(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	cl := c.Client()
	ctx := ctxT(t, 30*time.Second)
	s1, s2 := session(t, cl, 5*time.Second), session(t, cl, 5*time.Second)
	m1, m2 := concurrency.NewMutex(s1, "m"), concurrency.NewMutex(s2, "m")

	require.NoError(t, m1.Lock(ctx))
	first := m1.Token()
	require.NotZero(t, first)
	require.NoError(t, m1.Lock(ctx), "reentrant")
	ok, err := m2.TryLock(ctx)
	require.NoError(t, err)
	require.False(t, ok)
	require.NoError(t, m1.Unlock(ctx))
	ok, err = m2.TryLock(ctx)
	require.NoError(t, err)
	require.False(t, ok, "still held once after two locks and one unlock")
	require.NoError(t, m1.Unlock(ctx))
	require.ErrorIs(t, m1.Context().Err(), context.Canceled)
	require.ErrorIs(t, m1.Unlock(ctx), client.ErrNotHeld)

	ok, err = m2.TryLock(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.Greater(t, m2.Token(), first)
	info, _, err := cl.InspectLock(ctx, "m")
	require.NoError(t, err)
	require.Len(t, info.GetHolders(), 1)
	require.Equal(t, m2.Token(), info.GetHolders()[0].GetToken())
	require.NoError(t, m2.Unlock(ctx))
}

func TestContendedMutexIsExclusiveFIFOAndFenced(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	const workers, rounds = 8, 6
	var inside atomic.Int32
	var mu sync.Mutex
	var tokens []uint64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := session(t, cl, 5*time.Second)
			m := concurrency.NewMutex(s, "hot")
			for r := 0; r < rounds; r++ {
				if err := m.Lock(ctx); err != nil {
					t.Errorf("lock: %v", err)
					return
				}
				if inside.Add(1) != 1 {
					t.Errorf("two holders inside")
				}
				// A fenced write succeeds while held.
				res, err := m.Txn().Then(client.OpAdd("hot/count", 1)).Commit(ctx)
				if err != nil || !res.Succeeded {
					t.Errorf("fenced write: %v %v", res, err)
				}
				mu.Lock()
				tokens = append(tokens, m.Token())
				mu.Unlock()
				inside.Add(-1)
				if err := m.Unlock(ctx); err != nil {
					t.Errorf("unlock: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	require.Len(t, tokens, workers*rounds)
	for i := 1; i < len(tokens); i++ {
		require.Greater(t, tokens[i], tokens[i-1], "tokens of successive holders must increase")
	}
	kv, err := cl.Get(ctx, "hot/count")
	require.NoError(t, err)
	require.Equal(t, fmt.Sprint(workers*rounds), string(kv.GetValue()))
}

func TestLostSessionCancelsLockAndGrantsNextWaiter(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	holderSess := session(t, cl, time.Second)
	holder := concurrency.NewMutex(holderSess, "job")
	require.NoError(t, holder.Lock(ctx))
	token := holder.Token()

	waiter := concurrency.NewMutex(session(t, cl, 5*time.Second), "job")
	got := make(chan error, 1)
	go func() { got <- waiter.Lock(ctx) }()

	// The holder's process "pauses": its keep-alives stop.
	holderSess.Orphan()
	select {
	case <-holder.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the lock's context was not cancelled when its session was lost")
	}
	require.ErrorIs(t, context.Cause(holder.Context()), client.ErrLockLost)
	require.NoError(t, <-got)
	require.Greater(t, waiter.Token(), token)

	// The paused holder's fenced write is refused.
	res, err := cl.Txn().If(client.LockHeld("job", token)).Then(client.OpPut("job/out", []byte("stale"))).Commit(ctx)
	require.NoError(t, err)
	require.False(t, res.Succeeded)
	_, err = cl.Get(ctx, "job/out")
	require.ErrorIs(t, err, client.ErrNotFound)
	require.NoError(t, waiter.Unlock(ctx))
}

func TestHoldTimeEndsTheGrant(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	m := concurrency.NewMutex(session(t, cl, 10*time.Second), "lease", concurrency.WithHoldTime(700*time.Millisecond))
	start := time.Now()
	require.NoError(t, m.Lock(ctx))
	<-m.Lost()
	require.ErrorIs(t, context.Cause(m.Context()), client.ErrLockLost)
	require.Less(t, time.Since(start), 700*time.Millisecond+200*time.Millisecond, "the SDK cancels by its own timer")
	other := concurrency.NewMutex(session(t, cl, 10*time.Second), "lease")
	require.NoError(t, other.Lock(ctx), "the leader released the grant when its hold time ended")
	require.GreaterOrEqual(t, time.Since(start), 700*time.Millisecond)
	require.NoError(t, other.Unlock(ctx))
}

func TestWaiterSurvivesLeaderChange(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	holder := concurrency.NewMutex(session(t, cl, 5*time.Second), "ha")
	require.NoError(t, holder.Lock(ctx))
	waiter := concurrency.NewMutex(session(t, cl, 5*time.Second), "ha")
	got := make(chan error, 1)
	go func() { got <- waiter.Lock(ctx) }()
	require.Eventually(t, func() bool {
		info, _, err := cl.InspectLock(ctx, "ha")
		return err == nil && len(info.GetWaiters()) == 1
	}, 10*time.Second, 20*time.Millisecond)
	old := c.WaitLeader(5 * time.Second)
	c.Kill(old)
	c.WaitNewLeader(old, 10*time.Second)
	require.NoError(t, holder.Unlock(ctx))
	select {
	case err := <-got:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("the waiter was not granted after the leader changed")
	}
	require.Greater(t, waiter.Token(), holder.Token())
}

func TestRWMutexAndSemaphore(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	r1 := concurrency.NewRWMutex(session(t, cl, 5*time.Second), "rw")
	r2 := concurrency.NewRWMutex(session(t, cl, 5*time.Second), "rw")
	w := concurrency.NewRWMutex(session(t, cl, 5*time.Second), "rw")
	require.NoError(t, r1.RLock(ctx))
	require.NoError(t, r2.RLock(ctx))
	ok, err := w.TryLock(ctx)
	require.NoError(t, err)
	require.False(t, ok)
	require.NoError(t, r1.RUnlock(ctx))
	require.NoError(t, r2.RUnlock(ctx))
	require.NoError(t, w.Lock(ctx))
	require.NoError(t, w.Unlock(ctx))

	s := session(t, cl, 5*time.Second)
	sem := concurrency.NewSemaphore(s, "pool", 3)
	_, err = sem.Acquire(ctx, 2)
	require.NoError(t, err)
	_, ok, err = sem.TryAcquire(ctx, 2)
	require.NoError(t, err)
	require.False(t, ok)
	_, ok, err = sem.TryAcquire(ctx, 1)
	require.NoError(t, err)
	require.True(t, ok)
	// A waiter behind the full semaphore shows in the gauges.
	waiter := concurrency.NewSemaphore(session(t, cl, 5*time.Second), "pool", 3)
	waitCtx, stopWaiting := context.WithCancel(ctx)
	waited := make(chan error, 1)
	go func() { _, err := waiter.Acquire(waitCtx, 1); waited <- err }()
	m := c.Members[0]
	require.Eventually(t, func() bool { return metric(t, m, "concord_lock_waiters") == 1 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, 1.0, metric(t, m, "concord_lock_locks"))
	require.Equal(t, 2.0, metric(t, m, "concord_lock_holders"), "two grants (2 and 1 permits) of one semaphore")
	stopWaiting()
	require.ErrorIs(t, <-waited, context.Canceled)
	require.Eventually(t, func() bool { return metric(t, m, "concord_lock_waiters") == 0 }, 10*time.Second, 10*time.Millisecond)
	_, err = sem.Acquire(ctx, 4)
	require.ErrorIs(t, err, client.ErrTooManyPermits)
	require.NoError(t, sem.Release(ctx))
	require.NoError(t, sem.Release(ctx))
	require.ErrorIs(t, sem.Release(ctx), client.ErrNotHeld)
	require.Equal(t, 0.0, metric(t, m, "concord_lock_holders"))
	require.Equal(t, 0.0, metric(t, m, "concord_lock_locks"))
}

func TestLockAllCannotDeadlock(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	var wg sync.WaitGroup
	inside := map[string]*atomic.Int32{"a": {}, "b": {}}
	for i, names := range [][]string{{"a", "b"}, {"b", "a"}, {"a"}, {"b"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := session(t, cl, 5*time.Second)
			for r := 0; r < 10; r++ {
				m, err := concurrency.LockAll(ctx, s, names)
				if err != nil {
					t.Errorf("worker %d: %v", i, err)
					return
				}
				for _, n := range names {
					if inside[n].Add(1) != 1 {
						t.Errorf("worker %d: two holders of %s at once", i, n)
					}
				}
				for _, n := range names {
					inside[n].Add(-1)
				}
				if err := m.Unlock(ctx); err != nil {
					t.Errorf("worker %d: unlock: %v", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestForceReleaseIsRecordedAndTellsTheHolder(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	m := concurrency.NewMutex(session(t, cl, 5*time.Second), "stuck")
	require.NoError(t, m.Lock(ctx))
	n, err := cl.ForceReleaseLock(ctx, "stuck", 0, "operator: job hung")
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	select {
	case <-m.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("the holder was not told of the force-release")
	}
	require.ErrorContains(t, context.Cause(m.Context()), "force-released")
	_, recs, err := cl.InspectLock(ctx, "stuck")
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Equal(t, "operator: job hung", recs[0].GetReason())
	require.Equal(t, m.Token(), recs[0].GetToken())
	require.Equal(t, cl.ClientID(), recs[0].GetByClient(), "the record names the caller")
	require.Positive(t, recs[0].GetHeldSinceUnixMs())
	require.LessOrEqual(t, recs[0].GetHeldSinceUnixMs(), recs[0].GetAtUnixMs())
	require.ErrorIs(t, m.Unlock(ctx), client.ErrLockLost)
}

// A force-release from a caller that sends no client ID (curl, another
// language) is recorded without one, not under the member's.
func TestForceReleaseRecordWithoutClientID(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	m := concurrency.NewMutex(session(t, cl, 5*time.Second), "anon")
	require.NoError(t, m.Lock(ctx))
	lc := concordv1connect.NewLockClient(http.DefaultClient, "http://"+c.Endpoints()[0])
	resp, err := lc.ForceRelease(ctx, connect.NewRequest(&concordv1.ForceReleaseRequest{Name: "anon", Reason: "curl"}))
	require.NoError(t, err)
	require.EqualValues(t, 1, resp.Msg.GetReleased())
	_, recs, err := cl.InspectLock(ctx, "anon")
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Empty(t, recs[0].GetByClient())
	require.Equal(t, "curl", recs[0].GetReason())
}

func TestLockBadInput(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	s := session(t, cl, 5*time.Second)
	owner := cl.NewOwner()
	err := cl.ReleaseLocks(ctx, s, owner, []string{"nobody-holds"}, 0)
	require.ErrorIs(t, err, client.ErrNotHeld)
	_, err = cl.AcquireLocks(ctx, s, owner, []*client.LockClaim{{Name: "", Kind: client.KindMutex}}, client.AcquireOptions{})
	require.ErrorIs(t, err, client.ErrInvalidArgument)

	a := concurrency.NewRWMutex(s, "up")
	b := concurrency.NewRWMutex(session(t, cl, 5*time.Second), "up")
	require.NoError(t, a.RLock(ctx))
	require.NoError(t, b.RLock(ctx))
	_, err = cl.AcquireLocks(ctx, s, owner, []*client.LockClaim{{Name: "up", Kind: client.KindMutex}}, client.AcquireOptions{})
	require.ErrorIs(t, err, client.ErrLockKindMismatch)

	expired := session(t, cl, time.Second)
	require.NoError(t, expired.Close(ctx))
	err = concurrency.NewMutex(expired, "m").Lock(ctx)
	require.True(t, errors.Is(err, client.ErrSessionExpired), "got %v", err)

	// Releasing under another token changes nothing.
	m := concurrency.NewMutex(s, "tok")
	require.NoError(t, m.Lock(ctx))
	err = cl.ReleaseLocks(ctx, s, owner, []string{"tok"}, m.Token()+1)
	require.ErrorIs(t, err, client.ErrNotHeld)
	info, _, err := cl.InspectLock(ctx, "tok")
	require.NoError(t, err)
	require.Len(t, info.GetHolders(), 1)
}

func TestRWUpgradeDowngrade(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	a := concurrency.NewRWMutex(session(t, cl, 5*time.Second), "ud")
	b := concurrency.NewRWMutex(session(t, cl, 5*time.Second), "ud")
	require.NoError(t, a.RLock(ctx))
	require.ErrorIs(t, a.Lock(ctx), client.ErrWouldDeadlock, "a write lock while holding a read lock would wait for itself")
	require.NoError(t, b.RLock(ctx))
	require.ErrorIs(t, a.Upgrade(ctx), client.ErrWouldDeadlock, "another reader holds")
	require.NoError(t, b.RUnlock(ctx))
	readToken := a.Token()
	require.NoError(t, a.Upgrade(ctx))
	require.Greater(t, a.Token(), readToken, "an upgrade is a new exclusive grant")
	ok, err := b.TryLock(ctx)
	require.NoError(t, err)
	require.False(t, ok)
	writeToken := a.Token()
	require.NoError(t, a.Downgrade(ctx))
	require.Equal(t, writeToken, a.Token())
	require.NoError(t, b.RLock(ctx), "readers share after the downgrade")
	require.NoError(t, a.RUnlock(ctx))
	require.NoError(t, b.RUnlock(ctx))
	info, _, err := cl.InspectLock(ctx, "ud")
	require.NoError(t, err)
	require.Empty(t, info.GetHolders())
}

// TestLocksOverUnaryCalls runs the lock path a client without KV.Batch
// takes (Lock.Acquire streams and unary releases), as other languages do:
// a contended handoff with increasing tokens, and a force-release told to
// the holder through its session's keep-alives.
func TestLocksOverUnaryCalls(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl, err := client.New(ctx, client.Config{Endpoints: c.Endpoints(), DisableBatching: true})
	require.NoError(t, err)
	defer cl.Close()

	first := concurrency.NewMutex(session(t, cl, 3*time.Second), "unary")
	require.NoError(t, first.Lock(ctx))
	second := concurrency.NewMutex(session(t, cl, 3*time.Second), "unary")
	got := make(chan error, 1)
	go func() { got <- second.Lock(ctx) }()
	require.Eventually(t, func() bool {
		info, _, err := cl.InspectLock(ctx, "unary")
		return err == nil && len(info.GetWaiters()) == 1
	}, 5*time.Second, 10*time.Millisecond, "the second locker queues")
	require.NoError(t, first.Unlock(ctx))
	require.NoError(t, <-got)
	require.Greater(t, second.Token(), first.Token())

	_, err = cl.ForceReleaseLock(ctx, "unary", second.Token(), "test")
	require.NoError(t, err)
	select {
	case <-second.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("the holder was not told of the force-release")
	}
	require.ErrorContains(t, context.Cause(second.Context()), "force-released: test")
}

// TestResumeWaiterAppliesNothing follows a queued waiter with
// resume_waiter, as a client whose stream broke does: the stream reports
// the grant, nothing is applied for the resume, and a waiter ID that is not
// queued is refused.
func TestResumeWaiterAppliesNothing(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	holder := concurrency.NewMutex(session(t, cl, 5*time.Second), "resume")
	require.NoError(t, holder.Lock(ctx))
	s := session(t, cl, 5*time.Second)
	lc := concordv1connect.NewLockClient(http.DefaultClient, "http://"+c.Endpoints()[0])
	req := &concordv1.AcquireRequest{Claims: []*client.LockClaim{{Name: "resume", Kind: client.KindMutex}},
		Session: s.ID(), Owner: "w", Wait: true}

	first, cancel := context.WithCancel(ctx)
	stream, err := lc.Acquire(first, connect.NewRequest(req))
	require.NoError(t, err)
	require.True(t, stream.Receive(), "%v", stream.Err())
	queued := stream.Msg()
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_QUEUED, queued.GetState())
	cancel() // the stream breaks; the wait stays queued

	req.ResumeWaiter = queued.GetWaiter()
	stream, err = lc.Acquire(ctx, connect.NewRequest(req))
	require.NoError(t, err)
	require.True(t, stream.Receive(), "%v", stream.Err())
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_QUEUED, stream.Msg().GetState())
	require.Equal(t, queued.GetWaiter(), stream.Msg().GetWaiter())
	require.Equal(t, queued.GetHeader().GetRevision(), stream.Msg().GetHeader().GetRevision(), "a resume applies nothing")
	require.NoError(t, holder.Unlock(ctx))
	require.True(t, stream.Receive(), "%v", stream.Err())
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, stream.Msg().GetState())
	require.Greater(t, stream.Msg().GetToken(), holder.Token())
	require.NoError(t, stream.Close())

	req.ResumeWaiter, req.Owner = 1, "nobody" // an applied index that queued nobody
	stream, err = lc.Acquire(ctx, connect.NewRequest(req))
	require.NoError(t, err)
	for stream.Receive() {
		require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_QUEUED, stream.Msg().GetState())
	}
	require.Equal(t, connect.CodeFailedPrecondition, connect.CodeOf(stream.Err()), "%v", stream.Err())
	require.ErrorContains(t, stream.Err(), "no such waiter")
}

// The locks a LockAll took are one grant: force-releasing one of them ends
// it on all, and the holder's context learns it from its keep-alive.
func TestForceReleasingOneLockOfALockAllEndsItWhole(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	all, err := concurrency.LockAll(ctx, session(t, cl, 3*time.Second), []string{"fa", "fb"})
	require.NoError(t, err)
	n, err := cl.ForceReleaseLock(ctx, "fa", 0, "operator")
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	info, _, err := cl.InspectLock(ctx, "fb")
	require.NoError(t, err)
	require.Empty(t, info.GetHolders(), "fb was taken with fa and ends with it")

	other := concurrency.NewMutex(session(t, cl, 3*time.Second), "fa")
	ok, err := other.TryLock(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	select {
	case <-all.Context().Done():
		require.ErrorIs(t, context.Cause(all.Context()), client.ErrLockLost)
		require.Contains(t, context.Cause(all.Context()).Error(), "operator")
	case <-time.After(3 * time.Second): // three keep-alive intervals
		t.Fatalf("fa is held by another session (token %d), yet the LockAll's context (token %d) is live", other.Token(), all.Token())
	}
}

// Semaphore holders granted by one command share its token; each keeps its
// own hold time.
func TestHoldTimesOfGrantsSharingATokenAreTheirOwn(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	h := concurrency.NewSemaphore(session(t, cl, 30*time.Second), "sh", 2)
	_, err := h.Acquire(ctx, 2)
	require.NoError(t, err)
	long := concurrency.NewSemaphore(session(t, cl, 30*time.Second), "sh", 2, concurrency.WithHoldTime(20*time.Second))
	short := concurrency.NewSemaphore(session(t, cl, 30*time.Second), "sh", 2, concurrency.WithHoldTime(time.Second))
	type res struct {
		g   *client.Grant
		err error
	}
	lg, sg := make(chan res, 1), make(chan res, 1)
	waiters := func(n int) func() bool {
		return func() bool {
			info, _, err := cl.InspectLock(ctx, "sh")
			return err == nil && len(info.GetWaiters()) == n
		}
	}
	go func() { g, err := long.Acquire(ctx, 1); lg <- res{g, err} }()
	require.Eventually(t, waiters(1), 5*time.Second, 10*time.Millisecond)
	go func() { g, err := short.Acquire(ctx, 1); sg <- res{g, err} }()
	require.Eventually(t, waiters(2), 5*time.Second, 10*time.Millisecond)
	require.NoError(t, h.Release(ctx))
	l, s := <-lg, <-sg
	require.NoError(t, l.err)
	require.NoError(t, s.err)
	require.Equal(t, l.g.Token, s.g.Token, "granted by one command")

	<-s.g.Context().Done() // the short hold ends
	require.Eventually(t, func() bool {
		info, _, err := cl.InspectLock(ctx, "sh")
		return err == nil && len(info.GetHolders()) == 1
	}, 5*time.Second, 10*time.Millisecond)
	time.Sleep(500 * time.Millisecond) // the short grant's expiry has applied; nothing else follows
	info, _, err := cl.InspectLock(ctx, "sh")
	require.NoError(t, err)
	require.Len(t, info.GetHolders(), 1, "the 20 s grant must outlive the 1 s one")
	require.NoError(t, l.g.Context().Err())
}

// A lock asked for on a session its owner closed fails as a closed session:
// ErrSessionExpired and ErrClosed both, naming the session, not the client.
func TestLockOnAClosedSession(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	s := session(t, cl, 5*time.Second)
	require.NoError(t, s.Close(ctx))
	err := concurrency.NewMutex(s, "closed").Lock(ctx)
	require.ErrorIs(t, err, client.ErrSessionExpired)
	require.ErrorIs(t, err, client.ErrClosed)
	require.ErrorContains(t, err, fmt.Sprintf("session %d closed", s.ID()))
	require.NotContains(t, err.Error(), "client closed")
	_, err = cl.Put(ctx, "still-open", []byte("x"))
	require.NoError(t, err, "the client itself is open")
}
