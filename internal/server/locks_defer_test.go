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
			const deferred, parked = "concord_raft_proposals_deferred_total", "concord_raft_proposals_parked_total"
			mutex := []*client.LockClaim{{Name: "m", Kind: client.KindMutex}}

			holder, err := cl.AcquireLocks(ctx, session(t, cl, 20*time.Second), cl.NewOwner(), mutex, client.AcquireOptions{Wait: true})
			require.NoError(t, err)
			require.Zero(t, metric(t, m, deferred), "an acquire granted at once was held back")

			type grant struct {
				waiter int
				g      *client.Grant
			}
			queued := make(chan int64, 2)
			granted := make(chan grant, 2)
			for i := range 2 {
				sess := session(t, cl, 20*time.Second)
				go func() {
					g, err := cl.AcquireLocks(ctx, sess, cl.NewOwner(), mutex, client.AcquireOptions{Wait: true, OnQueued: func(pos int64) { queued <- pos }})
					if err != nil {
						t.Errorf("waiter %d: %v", i, err)
					}
					granted <- grant{i, g}
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
				require.Zero(t, metric(t, m, parked))
			} else {
				require.Equal(t, 2.0, metric(t, m, deferred), "both waiters' acquires would queue")
				// Each came alone, so the leader held each back until
				// its time was up.
				require.Equal(t, 2.0, metric(t, m, parked), "the leader parked them")
			}

			require.NoError(t, holder.Release(ctx))
			first := <-granted
			require.Equal(t, 0, first.waiter, "the first waiter is granted first")
			require.Greater(t, first.g.Token, holder.Token)
			require.NoError(t, first.g.Release(ctx))
			second := <-granted
			require.Equal(t, 1, second.waiter)
			require.Greater(t, second.g.Token, first.g.Token)
			require.NoError(t, second.g.Release(ctx))
		})
	}
}
