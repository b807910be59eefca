package workload

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/testcluster"
)

// TestConversionLostIsTheServersLostAnswer checks conversionLost against
// the SDK's real answers: a conversion of a force-released grant (answered
// LOST), whether or not the SDK had learned of the loss first, is taken
// for it; a conversion granted, an upgrade refused because others read,
// and transport errors and other ErrLockLost errors are not.
func TestConversionLostIsTheServersLostAnswer(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.Client()
	sess, err := cl.NewSession(ctx, client.WithTTL(30*time.Second))
	require.NoError(t, err)
	t.Cleanup(func() { _ = sess.Close(context.Background()) })
	rw := semTarget{name: "rw", kind: client.KindRWLock}
	read, write := rw.claim(1), rw.claim(2)
	convert := func(owner string, g *client.Grant, claim *client.LockClaim) (*client.Grant, error) {
		return cl.AcquireLocks(ctx, sess, owner, []*client.LockClaim{claim}, client.AcquireOptions{Wait: true, Converts: g})
	}

	// Granted: an upgrade of the only reader.
	g, err := cl.AcquireLocks(ctx, sess, "a", []*client.LockClaim{read}, client.AcquireOptions{Wait: true})
	require.NoError(t, err)
	up, err := convert("a", g, write)
	require.NoError(t, err)
	require.False(t, conversionLost(err, g))

	// LOST: the write grant force-released, unseen by the SDK.
	_, err = cl.ForceReleaseLock(ctx, "rw", up.Token, "test")
	require.NoError(t, err)
	require.NoError(t, up.Err(), "the SDK learns of the force-release at the next keep-alive")
	_, err = convert("a", up, read)
	require.ErrorIs(t, err, client.ErrLockLost)
	require.True(t, conversionLost(err, up), "%v", err)

	// LOST, the SDK having ended the grant before (its Release saw it
	// gone): known by the answer's text.
	g, err = cl.AcquireLocks(ctx, sess, "b", []*client.LockClaim{read}, client.AcquireOptions{Wait: true})
	require.NoError(t, err)
	_, err = cl.ForceReleaseLock(ctx, "rw", g.Token, "test")
	require.NoError(t, err)
	require.ErrorIs(t, g.Release(ctx), client.ErrLockLost)
	require.Error(t, g.Err())
	_, err = convert("b", g, write)
	require.ErrorIs(t, err, client.ErrLockLost)
	require.False(t, errors.Is(g.Err(), err), "the grant ended before the conversion")
	require.True(t, conversionLost(err, g), "%v", err)

	// Refused: others read.
	g1, err := cl.AcquireLocks(ctx, sess, "c", []*client.LockClaim{read}, client.AcquireOptions{Wait: true})
	require.NoError(t, err)
	g2, err := cl.AcquireLocks(ctx, sess, "d", []*client.LockClaim{read}, client.AcquireOptions{Wait: true})
	require.NoError(t, err)
	_, err = convert("c", g1, write)
	require.ErrorIs(t, err, client.ErrWouldDeadlock)
	require.False(t, conversionLost(err, g1))

	// Other errors, with a grant still held.
	for _, other := range []error{
		context.DeadlineExceeded,
		fmt.Errorf("%w: timeout", client.ErrUnknownOutcome),
		client.ErrUnavailable,
		client.ErrLockLost,
		fmt.Errorf("%w: rw: granted 2s after the acquire was sent, past its hold time of 1s", client.ErrLockLost),
		fmt.Errorf("%w: %s", client.ErrUnavailable, conversionLostText),
	} {
		require.False(t, conversionLost(other, g2), "%v", other)
	}
}
