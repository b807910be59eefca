package server_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/client/concurrency"
	"github.com/concord-dev/concord/internal/lock"
	"github.com/concord-dev/concord/internal/testcluster"
)

// An RWMutex's Lost and Context are the hold's, not the grant object's: a
// successful Upgrade or Downgrade does not end them (the lock is held
// throughout); they end only when the hold does, with its reason as the
// cause, as a Mutex's do. They closed at every conversion (the converted
// grant's context ended with "ErrNotHeld: converted"), so a caller that
// aborts on <-rw.Lost() around a Downgrade aborted for nothing.

// open fails the test if ctx has ended.
func open(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	require.NoError(t, ctx.Err(), "%s: the lock is held, yet the context taken before ended (cause: %v)", what, context.Cause(ctx))
}

// endsWithin waits up to d for ctx to end and returns its cause.
func endsWithin(t *testing.T, ctx context.Context, d time.Duration, what string) error {
	t.Helper()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-time.After(d):
		t.Fatalf("%s: the context has not ended after %s", what, d)
		return nil
	}
}

// convertTwice converts rw, which holds the lock in mode first, into the
// other mode and back.
func convertTwice(t *testing.T, ctx context.Context, rw *concurrency.RWMutex, write bool) {
	t.Helper()
	if write {
		require.NoError(t, rw.Downgrade(ctx))
		require.NoError(t, rw.Upgrade(ctx))
		return
	}
	require.NoError(t, rw.Upgrade(ctx))
	require.NoError(t, rw.Downgrade(ctx))
}

// A channel and a context taken before a Downgrade, or an Upgrade, stay
// open after it, and close when another client revokes the session, with
// ErrLockLost.
func TestSDKRWMutexLostSpansConversionsUntilTheSessionIsRevoked(t *testing.T) {
	for _, tc := range []struct {
		name    string
		take    func(*concurrency.RWMutex, context.Context) error
		convert func(*concurrency.RWMutex, context.Context) error
	}{
		{"downgrade", (*concurrency.RWMutex).Lock, (*concurrency.RWMutex).Downgrade},
		{"upgrade", (*concurrency.RWMutex).RLock, (*concurrency.RWMutex).Upgrade},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testcluster.Start(t, testcluster.Options{Size: 1})
			ctx := ctxT(t, 30*time.Second)
			cl := c.Client()
			s := session(t, cl, 3*time.Second)
			rw := concurrency.NewRWMutex(s, "rws")
			require.NoError(t, tc.take(rw, ctx))
			lost, hold := rw.Lost(), rw.Context()
			require.NoError(t, tc.convert(rw, ctx))
			select {
			case <-lost:
				t.Fatalf("Lost taken before the %s closed at it, though the lock is held (cause: %v)", tc.name, context.Cause(hold))
			default:
			}
			open(t, hold, tc.name)
			require.Equal(t, rw.Context(), hold, "the handle's Context after the %s is the one taken before", tc.name)

			_, err := c.Client().RevokeSession(ctx, s.ID())
			require.NoError(t, err)
			select {
			case <-lost:
			case <-time.After(10 * time.Second):
				t.Fatal("Lost has not closed after the session was revoked")
			}
			cause := context.Cause(hold)
			require.ErrorIs(t, cause, client.ErrLockLost)
			require.ErrorIs(t, cause, client.ErrSessionExpired, "the cause says why: %v", cause)
		})
	}
}

// A force-release after conversions ends the hold with the force-release's
// reason.
func TestSDKRWMutexForceReleaseAfterConversionsEndsTheHold(t *testing.T) {
	for _, write := range []bool{false, true} {
		name := map[bool]string{false: "read", true: "write"}[write]
		t.Run(name, func(t *testing.T) {
			c := testcluster.Start(t, testcluster.Options{Size: 1})
			ctx := ctxT(t, 30*time.Second)
			cl := c.Client()
			rw := concurrency.NewRWMutex(session(t, cl, 3*time.Second), "rwf")
			if write {
				require.NoError(t, rw.Lock(ctx))
			} else {
				require.NoError(t, rw.RLock(ctx))
			}
			hold := rw.Context()
			convertTwice(t, ctx, rw, write)
			open(t, hold, "after two conversions")

			n, err := cl.ForceReleaseLock(ctx, "rwf", rw.Token(), "operator drill 7")
			require.NoError(t, err)
			require.EqualValues(t, 1, n)
			cause := endsWithin(t, hold, 10*time.Second, "force-released")
			require.ErrorIs(t, cause, client.ErrLockLost)
			require.ErrorContains(t, cause, "operator drill 7")
			require.Equal(t, cause, context.Cause(rw.Context()), "the handle's Context is the ended hold until the unlock")
			require.ErrorIs(t, rw.Unlock(ctx), map[bool]error{true: client.ErrLockLost, false: client.ErrNotHeld}[write])
			if !write {
				require.ErrorIs(t, rw.RUnlock(ctx), client.ErrLockLost)
			}
			require.ErrorIs(t, context.Cause(rw.Context()), client.ErrNotHeld, "nothing is held")
		})
	}
}

// The last Unlock (or RUnlock) after conversions ends the hold, before it
// returns, with ErrNotHeld as a Mutex's does; an inner one does not.
func TestSDKRWMutexUnlockAfterConversionsEndsTheHold(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	rw := concurrency.NewRWMutex(session(t, cl, 30*time.Second), "rwu")
	require.NoError(t, rw.RLock(ctx))
	require.NoError(t, rw.RLock(ctx))
	hold := rw.Context()
	require.NoError(t, rw.Upgrade(ctx))
	open(t, hold, "after the upgrade")
	require.NoError(t, rw.Unlock(ctx))
	open(t, hold, "after the inner Unlock")
	require.NoError(t, rw.Downgrade(ctx))
	open(t, hold, "after the downgrade")
	require.NoError(t, rw.RUnlock(ctx))
	require.Error(t, hold.Err(), "the hold ended when the last RUnlock returned")
	cause := context.Cause(hold)
	require.ErrorIs(t, cause, client.ErrNotHeld)
	require.NotErrorIs(t, cause, client.ErrLockLost)
	require.ErrorIs(t, rw.Context().Err(), context.Canceled, "nothing is held")

	// A new hold has a context of its own.
	require.NoError(t, rw.Lock(ctx))
	again := rw.Context()
	require.NoError(t, again.Err())
	require.NoError(t, rw.Downgrade(ctx))
	open(t, again, "the next hold, after its downgrade")
	require.NoError(t, rw.RUnlock(ctx))
	require.ErrorIs(t, context.Cause(again), client.ErrNotHeld)
}

// Client.Close after a conversion ends the hold before it returns, with
// ErrLockLost and ErrClosed, as it does a Mutex's.
func TestSDKRWMutexClientCloseAfterAConversionEndsTheHold(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl, err := client.New(ctx, client.Config{Endpoints: c.Endpoints()})
	require.NoError(t, err)
	sess, err := cl.NewSession(ctx, client.WithTTL(time.Second))
	require.NoError(t, err)
	rw := concurrency.NewRWMutex(sess, "rwc")
	require.NoError(t, rw.Lock(ctx))
	hold := rw.Context()
	require.NoError(t, rw.Downgrade(ctx))
	open(t, hold, "after the downgrade")
	require.NoError(t, cl.Close())
	require.Error(t, hold.Err(), "the hold ended when Close returned")
	cause := context.Cause(hold)
	require.ErrorIs(t, cause, client.ErrLockLost)
	require.ErrorIs(t, cause, client.ErrClosed)
}

// A conversion whose outcome is unknown (its ctx ended in flight) ends the
// hold with ErrLockLost; one that succeeds, or is given up before anything
// was sent, leaves it open.
func TestSDKRWMutexUnknownConversionEndsTheHold(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	rw := concurrency.NewRWMutex(session(t, cl, 30*time.Second), "rwx")
	abandoned, converted := 0, 0
	for i := 0; i < 60 && (abandoned < 3 || converted < 1); i++ {
		require.NoError(t, rw.Lock(ctx))
		hold := rw.Context()
		short, cancel := context.WithTimeout(ctx, time.Duration(1+i%8)*150*time.Microsecond)
		err := rw.Downgrade(short)
		cancel()
		if err == nil {
			converted++
			open(t, hold, "after a downgrade that succeeded")
			require.NoError(t, rw.RUnlock(ctx))
			continue
		}
		require.ErrorIs(t, err, context.DeadlineExceeded)
		if hold.Err() == nil {
			// Given up before anything was sent: the write lock is held.
			require.NoError(t, rw.Unlock(ctx))
			continue
		}
		abandoned++
		require.ErrorIs(t, context.Cause(hold), client.ErrLockLost)
		require.Equal(t, context.Cause(hold), context.Cause(rw.Context()))
		require.Eventually(t, released(ctx, cl, "rwx"), 5*time.Second, 5*time.Millisecond, "taken back")
		err = rw.Unlock(ctx)
		require.True(t, err == nil || errors.Is(err, client.ErrLockLost), "%v", err)
	}
	require.NotZero(t, abandoned, "no downgrade was abandoned in flight")
	require.NotZero(t, converted, "no downgrade succeeded")
}

// The hold time ends the hold after a downgrade (which keeps the grant and
// its clock) with ErrLockLost and the hold time as its cause.
func TestSDKRWMutexHoldTimeEndsTheHoldAfterADowngrade(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	rw := concurrency.NewRWMutex(session(t, cl, 30*time.Second), "rwh", concurrency.WithHoldTime(time.Second))
	require.NoError(t, rw.Lock(ctx))
	hold := rw.Context()
	require.NoError(t, rw.Downgrade(ctx))
	open(t, hold, "after the downgrade")
	cause := endsWithin(t, hold, 10*time.Second, "hold time")
	require.ErrorIs(t, cause, client.ErrLockLost)
	require.ErrorContains(t, cause, "hold time")
}

// A conversion of a grant force-released before the SDK learned it (a
// keep-alive tells it within a third of the TTL) reached the server as a
// plain acquire and was granted anew. An Upgrade's new grant got a token
// like an in-place upgrade's, so the read lock's loss stayed silent: the
// caller believed it held the lock from the RLock through the write lock.
// A Downgrade's got another token, which the SDK caught, but only after the
// read lock was granted. The SDK sends a conversion as one (conversion in
// the request): the server takes nothing, and the conversion fails with
// ErrLockLost, ends the hold with that cause, and leaves the handle holding
// nothing on the server. On the batch stream and on Lock.Acquire streams.
func TestSDKRWMutexConversionOfAnUnseenForceReleaseFails(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 60*time.Second)
	admin := c.Client()
	for _, batching := range []bool{true, false} {
		cl, err := client.New(ctx, client.Config{Endpoints: c.Endpoints(), DisableBatching: !batching})
		require.NoError(t, err)
		t.Cleanup(func() { _ = cl.Close() })
		for _, tc := range []struct {
			name    string
			take    func(*concurrency.RWMutex, context.Context) error
			convert func(*concurrency.RWMutex, context.Context) error
			release func(*concurrency.RWMutex, context.Context) error
			other   func(*concurrency.RWMutex, context.Context) error
		}{
			{"upgrade", (*concurrency.RWMutex).RLock, (*concurrency.RWMutex).Upgrade, (*concurrency.RWMutex).RUnlock, (*concurrency.RWMutex).Unlock},
			{"downgrade", (*concurrency.RWMutex).Lock, (*concurrency.RWMutex).Downgrade, (*concurrency.RWMutex).Unlock, (*concurrency.RWMutex).RUnlock},
		} {
			name := fmt.Sprintf("rw-%s-batching-%v", tc.name, batching)
			t.Run(name, func(t *testing.T) {
				rw := concurrency.NewRWMutex(session(t, cl, 30*time.Second), name)
				require.NoError(t, tc.take(rw, ctx))
				hold, lost, token := rw.Context(), rw.Lost(), rw.Token()
				_, err := admin.ForceReleaseLock(ctx, name, token, "drill")
				require.NoError(t, err)
				require.NoError(t, hold.Err(), "the SDK learns of the force-release at the next keep-alive, 10s away")
				err = tc.convert(rw, ctx)
				require.ErrorIs(t, err, client.ErrLockLost, "the lock was lost before the conversion, yet the conversion succeeded")
				require.ErrorIs(t, err, client.ErrConversionLost, "the server's LOST answer is not told by its error value")
				require.ErrorContains(t, err, "before its conversion")
				require.ErrorContains(t, err, lock.ReasonConvertedEnded)
				select {
				case <-lost:
				default:
					t.Fatal("Lost taken before the conversion is still open")
				}
				cause := context.Cause(hold)
				require.ErrorIs(t, cause, client.ErrConversionLost)
				require.Equal(t, cause, context.Cause(rw.Context()))
				require.True(t, released(ctx, admin, name)(), "the server holds a grant the failed conversion took")
				require.ErrorIs(t, tc.release(rw, ctx), client.ErrLockLost)
				require.ErrorIs(t, tc.other(rw, ctx), client.ErrNotHeld, "the handle holds nothing in the other mode")
				// The handle is usable again.
				require.NoError(t, rw.Lock(ctx))
				require.NoError(t, rw.Unlock(ctx))
			})
		}
	}
}

// An Upgrade of a read lock that had ended, while another handle holds the
// write lock, queued behind it (Upgrade's doc said "at once"), and was
// granted the write lock anew once the other released it, the loss never
// told. It fails with ErrLockLost at once, queues nothing, and the other
// handle's release leaves the lock free.
func TestSDKRWMutexUpgradeOfAnEndedReadLockNeverQueues(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	rw := concurrency.NewRWMutex(session(t, cl, 30*time.Second), "rwq")
	require.NoError(t, rw.RLock(ctx))
	_, err := cl.ForceReleaseLock(ctx, "rwq", rw.Token(), "drill")
	require.NoError(t, err)
	other := concurrency.NewRWMutex(session(t, cl, 30*time.Second), "rwq")
	require.NoError(t, other.Lock(ctx))
	// Bounded so that a regression fails rather than hangs: the upgrade
	// must not wait for other's Unlock, which never comes before it ends.
	uctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = rw.Upgrade(uctx)
	require.ErrorIs(t, err, client.ErrLockLost, "the upgrade of an ended read lock waited in the queue")
	require.True(t, waiters(ctx, cl, "rwq", 0)(), "the upgrade queued")
	require.NoError(t, other.Unlock(ctx))
	require.True(t, released(ctx, cl, "rwq")(), "the lock was granted to the failed upgrade")
	require.ErrorIs(t, rw.RUnlock(ctx), client.ErrLockLost)
}

// ErrConversionLost is the server's LOST answer to a conversion, and
// nothing else: the workloads and callers tell it by value (errors.Is),
// not by the error's text. A conversion through AcquireLocks of a
// force-released grant is answered LOST whether or not the SDK had learned
// of the loss first; a granted conversion, an upgrade refused because
// others read, an RWMutex conversion of a grant the SDK knows lost (it
// sends nothing) and the SDK's other ErrLockLost errors are not it.
func TestSDKConversionLostIsTypedAndOnlyTheServersLostAnswer(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	sess := session(t, cl, 30*time.Second)
	read := &client.LockClaim{Name: "rwc", Kind: client.KindRWLock, Mode: client.ModeShared}
	write := &client.LockClaim{Name: "rwc", Kind: client.KindRWLock, Mode: client.ModeExclusive}
	acquire := func(owner string, claim *client.LockClaim, converts *client.Grant) (*client.Grant, error) {
		return cl.AcquireLocks(ctx, sess, owner, []*client.LockClaim{claim}, client.AcquireOptions{Wait: true, Converts: converts})
	}

	// Granted: an upgrade of the only reader.
	g, err := acquire("a", read, nil)
	require.NoError(t, err)
	up, err := acquire("a", write, g)
	require.NoError(t, err)

	// LOST: the write grant force-released, unseen by the SDK.
	_, err = cl.ForceReleaseLock(ctx, "rwc", up.Token, "test")
	require.NoError(t, err)
	require.NoError(t, up.Err(), "the SDK learns of the force-release at the next keep-alive")
	_, err = acquire("a", read, up)
	require.ErrorIs(t, err, client.ErrConversionLost)
	require.ErrorIs(t, err, client.ErrLockLost)
	require.ErrorIs(t, up.Err(), client.ErrConversionLost, "the converted grant ends with the answer as its cause")
	require.True(t, released(ctx, cl, "rwc")(), "the LOST conversion took the lock")

	// LOST, the SDK having ended the grant before (its Release saw it
	// gone): the grant keeps its first cause, the answer is still typed.
	g, err = acquire("b", read, nil)
	require.NoError(t, err)
	_, err = cl.ForceReleaseLock(ctx, "rwc", g.Token, "test")
	require.NoError(t, err)
	relErr := g.Release(ctx)
	require.ErrorIs(t, relErr, client.ErrLockLost)
	require.NotErrorIs(t, relErr, client.ErrConversionLost, "a release of a lost grant is no conversion")
	_, err = acquire("b", write, g)
	require.ErrorIs(t, err, client.ErrConversionLost)
	require.NotErrorIs(t, g.Err(), client.ErrConversionLost, "the grant ended before the conversion")

	// Refused: others read.
	g1, err := acquire("c", read, nil)
	require.NoError(t, err)
	_, err = acquire("d", read, nil)
	require.NoError(t, err)
	_, err = acquire("c", write, g1)
	require.ErrorIs(t, err, client.ErrWouldDeadlock)
	require.NotErrorIs(t, err, client.ErrConversionLost)

	// An RWMutex whose SDK learned of the loss first sends nothing: its
	// Upgrade returns the loss, an ErrLockLost that is no LOST answer.
	rw := concurrency.NewRWMutex(session(t, cl, 3*time.Second), "rwk")
	require.NoError(t, rw.RLock(ctx))
	_, err = cl.ForceReleaseLock(ctx, "rwk", rw.Token(), "test")
	require.NoError(t, err)
	require.ErrorIs(t, endsWithin(t, rw.Context(), 10*time.Second, "the read hold after a force-release"), client.ErrLockLost)
	err = rw.Upgrade(ctx)
	require.ErrorIs(t, err, client.ErrLockLost)
	require.NotErrorIs(t, err, client.ErrConversionLost, "the SDK sent nothing: no server answered LOST")
}
