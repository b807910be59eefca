package server_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/fsm"
	"github.com/concord-dev/concord/internal/testcluster"
)

// A leader change lengthens a hold time by about the time without a
// leader, not by a whole hold time: the old leader checkpointed what it
// had counted (--lock-hold-checkpoint), and the new one counts the rest.
// Before checkpoints, a grant of 6 s whose leader was killed 4 s in ended
// 6 s after the new leader took over; here it must end within 1.5 s of
// the hold time plus the time without a leader, and never before the hold
// time since the acquire was sent.
func TestHoldTimeOutlivesALeaderChangeByTheCheckpointOnly(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Configure: func(_ int, cfg *config.Server) {
		cfg.LockHoldCheckpoint = 200 * time.Millisecond
	}})
	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	sess := session(t, cl, 20*time.Second)
	const hold = 6 * time.Second
	sent := time.Now()
	g, err := cl.AcquireLocks(ctx, sess, cl.NewOwner(), []*client.LockClaim{{Name: "lease", Kind: client.KindMutex}}, client.AcquireOptions{Hold: hold})
	require.NoError(t, err)
	defer g.Detach()

	time.Sleep(4*time.Second - time.Since(sent))
	old := c.WaitLeader(5 * time.Second)
	require.Positive(t, metric(t, c.Members[old], "concord_server_lock_hold_checkpoints_total"), "the leader checkpointed nothing")
	killed := time.Now()
	c.Kill(old)
	c.WaitNewLeader(old, 20*time.Second)
	leaderless := time.Since(killed)

	var ended time.Time
	require.Eventually(t, func() bool {
		info, _, err := cl.InspectLock(ctx, "lease")
		if err != nil || len(info.GetHolders()) > 0 {
			return false
		}
		ended = time.Now()
		return true
	}, 30*time.Second, 20*time.Millisecond, "the grant never ended")
	took := ended.Sub(sent)
	t.Logf("the grant of %s ended %s after the acquire was sent; %s without a leader", hold, took, leaderless)
	require.GreaterOrEqual(t, took, hold, "the grant ended before its hold time")
	require.Less(t, took, hold+leaderless+1500*time.Millisecond,
		"a leader change lengthened the hold by more than the time without a leader and the checkpoint interval")
}

// Below rules version 5 the leader proposes no checkpoint (members of a
// release before it could not decode one), and hold times end as before.
func TestNoHoldCheckpointsBelowTheirRulesVersion(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1, Configure: func(_ int, cfg *config.Server) {
		cfg.LockHoldCheckpoint = 50 * time.Millisecond
		cfg.MaxRulesVersion = fsm.RulesHoldCheckpoint - 1
	}})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	sess := session(t, cl, 20*time.Second)
	const hold = 1500 * time.Millisecond
	sent := time.Now()
	g, err := cl.AcquireLocks(ctx, sess, cl.NewOwner(), []*client.LockClaim{{Name: "old", Kind: client.KindMutex}}, client.AcquireOptions{Hold: hold})
	require.NoError(t, err)
	defer g.Detach()
	require.Less(t, c.Members[0].Daemon().Server().FSM().RulesVersion(), uint32(fsm.RulesHoldCheckpoint))
	require.Eventually(t, func() bool {
		info, _, err := cl.InspectLock(ctx, "old")
		return err == nil && len(info.GetHolders()) == 0
	}, 10*time.Second, 20*time.Millisecond, "the grant never ended")
	require.GreaterOrEqual(t, time.Since(sent), hold)
	require.Zero(t, metric(t, c.Members[0], "concord_server_lock_hold_checkpoints_total"))
}
