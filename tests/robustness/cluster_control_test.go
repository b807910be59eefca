package robustness

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/faultnet"
	"github.com/concord-dev/concord/tests/robustness/cluster"
)

// TestProcessControl drives one cluster through every process, network and
// membership operation the nemesis uses, and checks it converges.
func TestProcessControl(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{Binary: binary(t), Size: 3, Dir: t.TempDir(), Logf: t.Logf})
	require.NoError(t, err)
	defer c.Close()

	put := func(key string) {
		t.Helper()
		require.NoError(t, c.Do(ctx, 30*time.Second, 3*time.Second, func(ctx context.Context, cl *client.Client) error {
			_, err := cl.Put(ctx, key, []byte("v"))
			return err
		}))
	}
	put("a")

	leader := c.Leader(ctx)
	require.GreaterOrEqual(t, leader, 0)
	require.NoError(t, c.Kill(leader))
	put("b")
	require.NoError(t, c.Restart(ctx, leader))

	leader, err = c.WaitLeader(ctx, 20*time.Second)
	require.NoError(t, err)
	require.NoError(t, c.Pause(leader))
	put("c")
	require.NoError(t, c.Resume(leader))

	follower := (leader + 1) % 3
	for to := range 3 {
		if to != follower {
			c.SetLink(follower, to, faultnet.Link{Mode: faultnet.Blackhole})
			c.SetLink(to, follower, faultnet.Link{Mode: faultnet.Blackhole})
		}
	}
	put("d")
	c.HealNetwork()

	leader, err = c.WaitLeader(ctx, 20*time.Second)
	require.NoError(t, err)
	victim := (leader + 2) % 3
	require.NoError(t, c.Remove(ctx, victim, 30*time.Second))
	put("e")
	require.NoError(t, c.Readd(ctx, victim, 30*time.Second))
	require.NoError(t, cluster.Poll(ctx, 30*time.Second, 200*time.Millisecond, func() error {
		ok, err := c.Promoted(ctx, victim)
		if err == nil && !ok {
			return context.DeadlineExceeded
		}
		return err
	}))
	require.NotEqual(t, c.Info(victim).Name, c.Info(victim).ID, "a re-added member gets a new ID")
	put("f")
	_, err = c.WaitConverged(ctx, 30*time.Second)
	require.NoError(t, err)
}
