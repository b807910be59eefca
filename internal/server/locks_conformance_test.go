package server_test

// Tests that walk the lock feature's promises (issue 3, docs/locks.md)
// against real members, where no other test pinned them.

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/client/concurrency"
	"github.com/concord-dev/concord/internal/testcluster"
)

// inspect returns the holders' owners and the waiters' owners of a lock, in
// the member's order.
func inspect(t *testing.T, cl *client.Client, name string) (holders, waiters []string) {
	t.Helper()
	info, _, err := cl.InspectLock(context.Background(), name)
	require.NoError(t, err)
	for _, h := range info.GetHolders() {
		holders = append(holders, h.GetOwner())
	}
	for _, w := range info.GetWaiters() {
		waiters = append(waiters, w.GetOwner())
	}
	return holders, waiters
}

// A LockAll that cannot get every lock before its ctx ends leaves nothing
// behind: no lock of the set held, no place in any queue, so the free lock
// of the set is free to others at once and the busy one passes to nobody
// when its holder lets go.
func TestLockAllGivenUpLeavesNothingHeldOrQueued(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	holder := concurrency.NewMutex(session(t, cl, 5*time.Second), "giveup-b")
	require.NoError(t, holder.Lock(ctx))

	s := session(t, cl, 5*time.Second)
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	all, err := concurrency.LockAll(short, s, []string{"giveup-a", "giveup-b"})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Nil(t, all)

	require.Eventually(t, func() bool {
		ha, wa := inspect(t, cl, "giveup-a")
		hb, wb := inspect(t, cl, "giveup-b")
		return len(ha) == 0 && len(wa) == 0 && len(hb) == 1 && len(wb) == 0
	}, 10*time.Second, 20*time.Millisecond, "the given-up LockAll still holds or queues")
	_, wb := inspect(t, cl, "giveup-b")
	require.Empty(t, wb)

	other := concurrency.NewMutex(session(t, cl, 5*time.Second), "giveup-a")
	ok, err := other.TryLock(ctx)
	require.NoError(t, err)
	require.True(t, ok, "the free lock of the set is free to others")
	require.NoError(t, other.Unlock(ctx))

	require.NoError(t, holder.Unlock(ctx))
	hb, wb := inspect(t, cl, "giveup-b")
	require.Empty(t, hb, "the busy lock passed to the given-up LockAll")
	require.Empty(t, wb)
}

// queueUp starts acquire in the background and returns once the lock shows
// one more waiter than before, so that the waiters' order is known.
func queueUp(t *testing.T, cl *client.Client, name string, acquire func() (*client.Grant, error)) <-chan *client.Grant {
	t.Helper()
	_, before := inspect(t, cl, name)
	got := make(chan *client.Grant, 1)
	go func() {
		g, err := acquire()
		if err != nil {
			t.Errorf("acquire of %q: %v", name, err)
		}
		got <- g
	}()
	require.Eventually(t, func() bool {
		_, ws := inspect(t, cl, name)
		return len(ws) == len(before)+1
	}, 10*time.Second, 10*time.Millisecond, "the acquire did not queue")
	return got
}

func granted(t *testing.T, ch <-chan *client.Grant) *client.Grant {
	t.Helper()
	select {
	case g := <-ch:
		require.NotNil(t, g)
		return g
	case <-time.After(20 * time.Second):
		t.Fatal("not granted")
		return nil
	}
}

func notGranted(t *testing.T, ch <-chan *client.Grant) {
	t.Helper()
	select {
	case g := <-ch:
		t.Fatalf("granted out of turn (token %d)", g.Token)
	default:
	}
}

// A semaphore's queue is strict FIFO on a real member: a large waiter at
// the head is not overtaken by a small one behind it even when the small
// one would fit, and one release grants every waiter that then fits, in
// queue order, in the same applied command (they share its token).
func TestSemaphoreQueueIsFIFOAndOneReleaseGrantsSeveral(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	sem := func() *concurrency.Semaphore {
		return concurrency.NewSemaphore(session(t, cl, 10*time.Second), "fifo-sem", 3)
	}
	first := sem()
	_, err := first.Acquire(ctx, 2)
	require.NoError(t, err)

	big, small := sem(), sem()
	bigCh := queueUp(t, cl, "fifo-sem", func() (*client.Grant, error) { return big.Acquire(ctx, 3) })
	smallCh := queueUp(t, cl, "fifo-sem", func() (*client.Grant, error) { return small.Acquire(ctx, 1) })
	_, ok, err := sem().TryAcquire(ctx, 1)
	require.NoError(t, err)
	require.False(t, ok, "a try-acquire barged past the queue")
	notGranted(t, smallCh)
	hs, ws := inspect(t, cl, "fifo-sem")
	require.Len(t, hs, 1, "one permit is free, yet only the first holder holds")
	require.Len(t, ws, 2)

	require.NoError(t, first.Release(ctx))
	bigGrant := granted(t, bigCh)
	hs, ws = inspect(t, cl, "fifo-sem")
	require.Len(t, hs, 1)
	require.Len(t, ws, 1)
	notGranted(t, smallCh)
	require.NoError(t, bigGrant.Release(ctx))
	require.NoError(t, granted(t, smallCh).Release(ctx))

	// Three small waiters behind a full semaphore: one release lets them
	// all in, in their order, with one token.
	full := sem()
	fullGrant, err := full.Acquire(ctx, 3)
	require.NoError(t, err)
	var chans []<-chan *client.Grant
	var owners []string
	for range 3 {
		w := sem()
		chans = append(chans, queueUp(t, cl, "fifo-sem", func() (*client.Grant, error) { return w.Acquire(ctx, 1) }))
	}
	_, owners = inspect(t, cl, "fifo-sem")
	require.NoError(t, fullGrant.Release(ctx))
	var tokens []uint64
	for _, ch := range chans {
		tokens = append(tokens, granted(t, ch).Token)
	}
	require.Greater(t, tokens[0], fullGrant.Token)
	require.Equal(t, []uint64{tokens[0], tokens[0], tokens[0]}, tokens, "granted by one applied command")
	hs, ws = inspect(t, cl, "fifo-sem")
	require.Equal(t, owners, hs, "granted in queue order")
	require.Empty(t, ws)
}

// A queued writer blocks readers that arrive after it, on a real member:
// they queue behind it, and are let in when the writer is done.
func TestQueuedWriterBlocksLaterReaders(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	rw := func() *concurrency.RWMutex { return concurrency.NewRWMutex(session(t, cl, 10*time.Second), "starve") }
	r1 := rw()
	require.NoError(t, r1.RLock(ctx))
	w, r2 := rw(), rw()
	wCh := queueUp(t, cl, "starve", func() (*client.Grant, error) { return nil, w.Lock(ctx) })
	r2Ch := queueUp(t, cl, "starve", func() (*client.Grant, error) { return nil, r2.RLock(ctx) })
	// queueUp saw r2 join the queue: it was not let in beside r1.
	hs, ws := inspect(t, cl, "starve")
	require.Len(t, hs, 1)
	require.Len(t, ws, 2)
	ok, err := rw().TryLock(ctx)
	require.NoError(t, err)
	require.False(t, ok)

	require.NoError(t, r1.RUnlock(ctx))
	<-wCh
	require.NotZero(t, w.Token())
	select {
	case <-r2Ch:
		t.Fatal("a reader was let in while the writer holds")
	default:
	}
	require.NoError(t, w.Unlock(ctx))
	<-r2Ch
	require.Greater(t, r2.Token(), w.Token())
	require.NoError(t, r2.RUnlock(ctx))
}

// Every lock metric docs/locks.md lists moves on a real member's /metrics
// when what it counts happens: grants, holders and waiters, the wait, hold
// and handoff histograms, and releases by each reason (expiries included).
func TestLockMetricsMoveOnARealMember(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	m := c.Members[0]
	get := func(sample string) float64 { return metric(t, m, sample) }
	released := func(reason string) float64 {
		return get(`concord_lock_releases_total{reason="` + reason + `"}`)
	}
	before := map[string]float64{}
	for _, s := range []string{"concord_lock_grants_total", "concord_lock_wait_seconds_count", "concord_lock_wait_seconds_sum",
		"concord_lock_hold_seconds_count", "concord_lock_handoff_seconds_count", "concord_lock_force_releases_total"} {
		before[s] = get(s)
	}
	for _, r := range []string{"released", "session ended", "hold time ended", "force-released"} {
		before[r] = released(r)
	}

	// A hold and a queued waiter: the gauges show them.
	holder := concurrency.NewMutex(session(t, cl, 10*time.Second), "metrics")
	require.NoError(t, holder.Lock(ctx))
	waiter := concurrency.NewMutex(session(t, cl, 10*time.Second), "metrics")
	got := queueUp(t, cl, "metrics", func() (*client.Grant, error) { return nil, waiter.Lock(ctx) })
	require.Equal(t, 1.0, get("concord_lock_holders"))
	require.Equal(t, 1.0, get("concord_lock_waiters"))
	require.Equal(t, 1.0, get("concord_lock_locks"))
	time.Sleep(100 * time.Millisecond) // a wait long enough to show in the sum
	require.NoError(t, holder.Unlock(ctx))
	<-got
	require.NoError(t, waiter.Unlock(ctx))
	require.Equal(t, 0.0, get("concord_lock_holders"))
	require.Equal(t, 0.0, get("concord_lock_waiters"))
	require.Equal(t, 0.0, get("concord_lock_locks"))
	require.Equal(t, before["concord_lock_grants_total"]+2, get("concord_lock_grants_total"))
	require.Equal(t, before["concord_lock_wait_seconds_count"]+1, get("concord_lock_wait_seconds_count"), "one granted waiter")
	require.GreaterOrEqual(t, get("concord_lock_wait_seconds_sum")-before["concord_lock_wait_seconds_sum"], 0.1)
	require.Eventually(t, func() bool {
		return get("concord_lock_handoff_seconds_count") == before["concord_lock_handoff_seconds_count"]+1
	}, 10*time.Second, 10*time.Millisecond, "the handoff to the waiter is timed")
	require.Equal(t, before["concord_lock_hold_seconds_count"]+2, get("concord_lock_hold_seconds_count"))
	require.Equal(t, before["released"]+2, released("released"))

	// Expiries: a hold time that ends, a session that ends, a force-release.
	held := concurrency.NewMutex(session(t, cl, 10*time.Second), "metrics-hold", concurrency.WithHoldTime(300*time.Millisecond))
	require.NoError(t, held.Lock(ctx))
	require.Eventually(t, func() bool { return released("hold time ended") == before["hold time ended"]+1 },
		10*time.Second, 20*time.Millisecond, "hold time expiry")

	lostSess := session(t, cl, time.Second)
	require.NoError(t, concurrency.NewMutex(lostSess, "metrics-sess").Lock(ctx))
	lostSess.Orphan()
	require.Eventually(t, func() bool { return released("session ended") == before["session ended"]+1 },
		15*time.Second, 20*time.Millisecond, "session expiry")

	forced := concurrency.NewMutex(session(t, cl, 10*time.Second), "metrics-force")
	require.NoError(t, forced.Lock(ctx))
	_, err := cl.ForceReleaseLock(ctx, "metrics-force", 0, "metrics test")
	require.NoError(t, err)
	require.Equal(t, before["force-released"]+1, released("force-released"))
	require.Equal(t, before["concord_lock_force_releases_total"]+1, get("concord_lock_force_releases_total"))
	require.Equal(t, before["concord_lock_hold_seconds_count"]+5, get("concord_lock_hold_seconds_count"), "every ended grant's hold is timed")
}

// RWMutex and the set LockAll returns offer what Mutex does (issue 3:
// "RWMutex and Semaphore in the same style"): Lost, closed when the grant
// ends, and Txn, a transaction fenced by the grant.
func TestRWMutexAndLockAllTellLossLikeMutex(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	s := session(t, cl, 3*time.Second) // a keep-alive a second tells a force-release

	rw := concurrency.NewRWMutex(s, "style-rw")
	require.NoError(t, rw.Lock(ctx))
	res, err := rw.Txn().Then(client.OpPut("style/rw", []byte("w"))).Commit(ctx)
	require.NoError(t, err)
	require.True(t, res.Succeeded, "a write fenced by the held write lock applies")
	select {
	case <-rw.Lost():
		t.Fatal("Lost is closed while the write lock is held")
	default:
	}
	_, err = cl.ForceReleaseLock(ctx, "style-rw", 0, "style test")
	require.NoError(t, err)
	select {
	case <-rw.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("RWMutex.Lost was not closed when the write lock was force-released")
	}
	require.ErrorIs(t, context.Cause(rw.Context()), client.ErrLockLost)
	res, err = rw.Txn().Then(client.OpPut("style/rw", []byte("late"))).Commit(ctx)
	require.NoError(t, err)
	require.False(t, res.Succeeded, "a write fenced by a lost grant is refused")
	require.ErrorIs(t, rw.Unlock(ctx), client.ErrLockLost)

	require.NoError(t, rw.RLock(ctx))
	res, err = rw.Txn().Then(client.OpPut("style/rw", []byte("r"))).Commit(ctx)
	require.NoError(t, err)
	require.True(t, res.Succeeded, "a write fenced by the held read lock applies")
	require.NoError(t, rw.RUnlock(ctx))
	<-rw.Lost() // not held: closed, as Mutex.Lost is

	all, err := concurrency.LockAll(ctx, s, []string{"style-a", "style-b"})
	require.NoError(t, err)
	res, err = all.Txn().Then(client.OpPut("style/all", []byte("x"))).Commit(ctx)
	require.NoError(t, err)
	require.True(t, res.Succeeded)
	_, err = cl.ForceReleaseLock(ctx, "style-b", 0, "style test")
	require.NoError(t, err)
	select {
	case <-all.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("Multi.Lost was not closed when one of its locks was force-released")
	}
	res, err = all.Txn().Then(client.OpPut("style/all", []byte("late"))).Commit(ctx)
	require.NoError(t, err)
	require.False(t, res.Succeeded)
	kv, err := cl.Get(ctx, "style/all")
	require.NoError(t, err)
	require.Equal(t, "x", string(kv.GetValue()))
}

// Each bad input of issue 3 gets its typed error from a real member and
// changes nothing: every lock looks the same to Inspect and List
// afterwards, holders, tokens, times and queues alike.
func TestLockBadInputChangesNothing(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	s1, s2 := session(t, cl, 30*time.Second), session(t, cl, 30*time.Second)

	m := concurrency.NewMutex(s1, "bad-m")
	require.NoError(t, m.Lock(ctx))
	a, b := concurrency.NewRWMutex(s1, "bad-rw"), concurrency.NewRWMutex(s2, "bad-rw")
	require.NoError(t, a.RLock(ctx))
	require.NoError(t, b.RLock(ctx))
	sem := concurrency.NewSemaphore(s2, "bad-s", 2)
	_, err := sem.Acquire(ctx, 1)
	require.NoError(t, err)
	waiting := concurrency.NewMutex(s2, "bad-m")
	queued := queueUp(t, cl, "bad-m", func() (*client.Grant, error) { return nil, waiting.Lock(ctx) })

	state := func() []string {
		locks, err := cl.ListLocks(ctx, "")
		require.NoError(t, err)
		var out []string
		for _, l := range locks {
			out = append(out, l.String())
		}
		return out
	}
	before := state()
	require.Len(t, before, 3)
	info, _, err := cl.InspectLock(ctx, "bad-m")
	require.NoError(t, err)
	owner := info.GetHolders()[0].GetOwner()

	revoked := session(t, cl, 30*time.Second)
	_, err = c.Client().RevokeSession(ctx, revoked.ID()) // another client: this one's SDK does not know yet
	require.NoError(t, err)

	for _, tc := range []struct {
		name string
		call func() error
		want error
	}{
		{"release of a lock nobody holds", func() error { return cl.ReleaseLocks(ctx, s1, owner, []string{"bad-none"}, 0) }, client.ErrNotHeld},
		{"release of a lock another session holds", func() error { return cl.ReleaseLocks(ctx, s2, owner, []string{"bad-m"}, 0) }, client.ErrNotHeld},
		{"release by another owner", func() error { return cl.ReleaseLocks(ctx, s1, cl.NewOwner(), []string{"bad-m"}, 0) }, client.ErrNotHeld},
		{"release under another token", func() error { return cl.ReleaseLocks(ctx, s1, owner, []string{"bad-m"}, m.Token()+1) }, client.ErrNotHeld},
		{"unlock of a handle that holds nothing", func() error { return concurrency.NewMutex(s1, "bad-m").Unlock(ctx) }, client.ErrNotHeld},
		{"semaphore request above its permits", func() error { _, err := sem.Acquire(ctx, 3); return err }, client.ErrTooManyPermits},
		{"upgrade while another reader holds", func() error { return a.Upgrade(ctx) }, client.ErrWouldDeadlock},
		{"write lock on a handle holding a read lock", func() error { return a.Lock(ctx) }, client.ErrWouldDeadlock},
		{"read lock on a handle holding the write lock", func() error { return waitingRLockOnWriter(ctx, s1) }, client.ErrWouldDeadlock},
		{"acquire on a session the cluster ended", func() error { return concurrency.NewMutex(revoked, "bad-new").Lock(ctx) }, client.ErrSessionExpired},
		{"acquire on a session the cluster ended, of a held lock", func() error { return concurrency.NewMutex(revoked, "bad-m").Lock(ctx) }, client.ErrSessionExpired},
		{"empty name", func() error { return concurrency.NewMutex(s1, "").Lock(ctx) }, client.ErrInvalidArgument},
		{"empty name in a LockAll", func() error { _, err := concurrency.LockAll(ctx, s1, []string{"bad-x", ""}); return err }, client.ErrInvalidArgument},
	} {
		err := tc.call()
		require.ErrorIs(t, err, tc.want, "%s: %v", tc.name, err)
		require.Equal(t, before, state(), "%s changed the locks", tc.name)
	}
	notGranted(t, queued)
	require.NoError(t, m.Unlock(ctx))
	<-queued
	require.NoError(t, waiting.Unlock(ctx))
}

// waitingRLockOnWriter takes the write lock of a fresh read-write lock on a
// handle, tries RLock on the same handle, and gives the write lock back.
func waitingRLockOnWriter(ctx context.Context, s *client.Session) error {
	rw := concurrency.NewRWMutex(s, "bad-w")
	if err := rw.Lock(ctx); err != nil {
		return err
	}
	err := rw.RLock(ctx)
	if uerr := rw.Unlock(ctx); uerr != nil {
		return uerr
	}
	return err
}

// A session ended by the cluster rather than by the holder's own count (an
// operator revoked it from another client) still loses the holder's lock
// loudly: its context ends with ErrLockLost, by the next keep-alive, and
// the lock passes on.
func TestHeldLockIsLostWhenAnotherClientRevokesItsSession(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	s := session(t, cl, 3*time.Second) // a keep-alive a second
	m := concurrency.NewMutex(s, "revoked")
	require.NoError(t, m.Lock(ctx))
	next := concurrency.NewMutex(session(t, cl, 10*time.Second), "revoked")
	got := queueUp(t, cl, "revoked", func() (*client.Grant, error) { return nil, next.Lock(ctx) })

	_, err := c.Client().RevokeSession(ctx, s.ID())
	require.NoError(t, err)
	<-got
	require.Greater(t, next.Token(), m.Token())
	select {
	case <-m.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("the holder was not told its session was revoked")
	}
	require.ErrorIs(t, context.Cause(m.Context()), client.ErrLockLost)
	require.ErrorIs(t, context.Cause(m.Context()), client.ErrSessionExpired)
	require.ErrorIs(t, m.Unlock(ctx), client.ErrLockLost)
	require.NoError(t, next.Unlock(ctx))
}

// RWMutex.TryRLock, which docs/errors.md names beside TryLock: a read lock
// taken at once while only readers hold and nobody queues, false while a
// writer holds or queues (a queued writer is not starved by try-readers
// either), and ErrWouldDeadlock on a handle holding the write lock.
func TestRWMutexTryRLock(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	rw := func() *concurrency.RWMutex { return concurrency.NewRWMutex(session(t, cl, 10*time.Second), "try-r") }
	r1, r2, w := rw(), rw(), rw()
	ok, err := r1.TryRLock(ctx)
	require.NoError(t, err)
	require.True(t, ok, "a free lock")
	ok, err = r2.TryRLock(ctx)
	require.NoError(t, err)
	require.True(t, ok, "readers share")
	require.NoError(t, r2.RUnlock(ctx))

	queued := queueUp(t, cl, "try-r", func() (*client.Grant, error) { return nil, w.Lock(ctx) })
	ok, err = r2.TryRLock(ctx)
	require.NoError(t, err)
	require.False(t, ok, "a try-reader barged past the queued writer")
	require.NoError(t, r1.RUnlock(ctx))
	<-queued
	ok, err = r2.TryRLock(ctx)
	require.NoError(t, err)
	require.False(t, ok, "the writer holds")
	_, err = w.TryRLock(ctx)
	require.ErrorIs(t, err, client.ErrWouldDeadlock, "the handle holds the write lock: Downgrade instead")
	require.NoError(t, w.Unlock(ctx))
	hs, ws := inspect(t, cl, "try-r")
	require.Empty(t, hs)
	require.Empty(t, ws)
}

// Read-write locks and semaphores are bound to their session as mutexes
// are: when a session expires (its client paused: no keep-alives), its
// read grant and its permits vanish, each holder's context ends with
// ErrLockLost, and the waiters they blocked are granted.
func TestReadersAndPermitsVanishWithTheirSession(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	paused := session(t, cl, time.Second)
	reader := concurrency.NewRWMutex(paused, "vanish-rw")
	require.NoError(t, reader.RLock(ctx))
	sem := concurrency.NewSemaphore(paused, "vanish-sem", 2)
	permits, err := sem.Acquire(ctx, 2)
	require.NoError(t, err)

	live := session(t, cl, 10*time.Second)
	writer := concurrency.NewRWMutex(live, "vanish-rw")
	wrote := queueUp(t, cl, "vanish-rw", func() (*client.Grant, error) { return nil, writer.Lock(ctx) })
	other := concurrency.NewSemaphore(live, "vanish-sem", 2)
	got := queueUp(t, cl, "vanish-sem", func() (*client.Grant, error) { return other.Acquire(ctx, 2) })

	paused.Orphan()
	for name, lost := range map[string]<-chan struct{}{"read lock": reader.Lost(), "permits": permits.Lost()} {
		select {
		case <-lost:
		case <-time.After(15 * time.Second):
			t.Fatalf("the %s of the lost session were not lost", name)
		}
	}
	require.ErrorIs(t, context.Cause(reader.Context()), client.ErrLockLost)
	require.ErrorIs(t, permits.Err(), client.ErrLockLost)
	<-wrote
	g := granted(t, got)
	require.NotZero(t, writer.Token())
	require.NotZero(t, g.Token)
	hs, _ := inspect(t, cl, "vanish-rw")
	require.Len(t, hs, 1, "the expired session's reader is gone: only the writer holds")
	hs, _ = inspect(t, cl, "vanish-sem")
	require.Len(t, hs, 1, "the expired session's permits are back")
	require.NoError(t, writer.Unlock(ctx))
	require.NoError(t, g.Release(ctx))
}

// An owner that holds a lock and acquires it again with another hold time
// got its grant back with the new hold time ignored: through the SDK, an
// acquire without a hold time was handed a Grant whose Context had no
// deadline while the server would end the grant when the first hold time
// ran out. It is now refused with ErrAlreadyHeld and changes nothing; the
// same request again is still answered with the grant.
func TestReacquireWithAnotherHoldTimeIsRefused(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	sess, err := cl.NewSession(ctx, client.WithTTL(10*time.Second))
	require.NoError(t, err)
	for _, claim := range []*client.LockClaim{
		{Name: "hm", Kind: client.KindMutex},
		{Name: "hs", Kind: client.KindSemaphore, Permits: 2, Capacity: 3},
	} {
		g, err := cl.AcquireLocks(ctx, sess, "o", []*client.LockClaim{claim}, client.AcquireOptions{Wait: true, Hold: 20 * time.Second})
		require.NoError(t, err)
		for _, hold := range []time.Duration{0, 40 * time.Second} {
			again, err := cl.AcquireLocks(ctx, sess, "o", []*client.LockClaim{claim}, client.AcquireOptions{Wait: true, Hold: hold})
			require.ErrorIs(t, err, client.ErrAlreadyHeld, "%s again with a hold time of %s (got a grant: %v)", claim.GetName(), hold, again != nil)
		}
		info, _, err := cl.InspectLock(ctx, claim.GetName())
		require.NoError(t, err)
		require.Len(t, info.GetHolders(), 1)
		require.Equal(t, g.Token, info.GetHolders()[0].GetToken())
		require.Equal(t, int64(20_000), info.GetHolders()[0].GetHoldMs())
		require.NoError(t, g.Err(), "the grant is still held")
		require.NoError(t, g.Release(ctx))
	}
}
