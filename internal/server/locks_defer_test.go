package server_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/testcluster"
)

// An acquire that will queue is held back by the leader
// (--lock-queue-defer) to share the next write; one that is granted at
// once is not. With nothing else to write it is still queued, once its
// time is up, and the release that follows grants it in FIFO order. With
// --disable-lock-queue-defer nothing is held back.
func TestQueuedAcquireIsDeferred(t *testing.T) {
	for _, disabled := range []bool{false, true} {
		t.Run(map[bool]string{false: "deferred", true: "disabled"}[disabled], func(t *testing.T) {
			c := testcluster.Start(t, testcluster.Options{Size: 1, Configure: func(_ int, cfg *config.Server) {
				cfg.LockQueueDefer = 50 * time.Millisecond
				cfg.DisableLockQueueDefer = disabled
			}})
			ctx := ctxT(t, 30*time.Second)
			cl := c.Client()
			m := c.Members[0]
			const deferred = "concord_raft_proposals_deferred_total"
			mutex := []*client.LockClaim{{Name: "m", Kind: client.KindMutex}}

			holder, err := cl.AcquireLocks(ctx, session(t, cl, 20*time.Second), cl.NewOwner(), mutex, client.AcquireOptions{Wait: true})
			require.NoError(t, err)
			require.Zero(t, metric(t, m, deferred), "an acquire granted at once was held back")

			queued := make(chan int64, 2)
			granted := make(chan *client.Grant, 2)
			for i := range 2 {
				sess := session(t, cl, 20*time.Second)
				go func() {
					g, err := cl.AcquireLocks(ctx, sess, cl.NewOwner(), mutex, client.AcquireOptions{Wait: true, OnQueued: func(pos int64) { queued <- pos }})
					if err != nil {
						t.Errorf("waiter %d: %v", i, err)
					}
					granted <- g
				}()
				// Queued with nothing else written: the deferral ends.
				select {
				case pos := <-queued:
					require.Equal(t, int64(i), pos, "waiter %d", i)
				case <-time.After(10 * time.Second):
					t.Fatalf("waiter %d was never queued", i)
				}
			}
			if disabled {
				require.Zero(t, metric(t, m, deferred))
			} else {
				require.Equal(t, 2.0, metric(t, m, deferred), "both waiters' acquires would queue")
			}

			require.NoError(t, holder.Release(ctx))
			first := <-granted
			require.Greater(t, first.Token, holder.Token)
			require.NoError(t, first.Release(ctx))
			second := <-granted
			require.Greater(t, second.Token, first.Token)
			require.NoError(t, second.Release(ctx))
		})
	}
}
