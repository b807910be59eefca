package server_test

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/client/concurrency"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/daemon"
	"github.com/concord-dev/concord/internal/fsm"
	"github.com/concord-dev/concord/internal/testcluster"
)

// rulesOf returns each running member's rules version, as its Status
// reports it.
func rulesOf(t *testing.T, c *testcluster.Cluster, cl *client.Client) []uint32 {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	var out []uint32
	for _, m := range c.Members {
		if m.Daemon() == nil {
			continue
		}
		st, err := cl.StatusOf(ctx, m.Cfg.ListenClient)
		require.NoError(t, err)
		out = append(out, st.GetRulesVersion())
	}
	return out
}

// A conversion of a grant that had ended applied as a fresh acquire on
// members of a release before conversions and as LOST on newer ones, so a
// cluster mixing them diverged. The leader now raises the rules version
// only once every member reports that its build applies it: while one
// member applies only the baseline, every member grants such a conversion
// anew (as the older release does: the SDK catches a Downgrade granted
// anew, not an Upgrade) and the states agree; once that member is
// upgraded, the leader raises the version and the conversion answers LOST.
func TestRulesVersionWaitsForEveryMemberThenGatesConversions(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Configure: func(i int, cfg *config.Server) {
		if i == 2 {
			cfg.MaxRulesVersion = fsm.BaselineRulesVersion
		}
	}})
	ctx := ctxT(t, 90*time.Second)
	cl := c.Client()
	admin := c.Client()
	// The leader checks when it is ready and every second after.
	require.Never(t, func() bool {
		for _, m := range c.Members {
			if m.Daemon().Server().FSM().RulesVersion() != fsm.BaselineRulesVersion {
				return true
			}
		}
		return false
	}, 2500*time.Millisecond, 50*time.Millisecond, "the rules version was raised past what member 2 applies")
	require.Equal(t, []uint32{1, 1, 1}, rulesOf(t, c, cl))
	for _, m := range c.Members {
		require.EqualValues(t, 1, metric(t, m, "concord_fsm_rules_version"))
	}
	require.EqualValues(t, 1, metric(t, c.Members[2], "concord_fsm_max_rules_version"))
	require.EqualValues(t, fsm.MaxRulesVersion, metric(t, c.Members[0], "concord_fsm_max_rules_version"))

	s := session(t, cl, 30*time.Second)
	// A Downgrade of a write grant that had ended is granted anew: the
	// SDK sees the new token and ends the hold.
	down := concurrency.NewRWMutex(s, "rw-down")
	require.NoError(t, down.Lock(ctx))
	hold, token := down.Context(), down.Token()
	_, err := admin.ForceReleaseLock(ctx, "rw-down", token, "drill")
	require.NoError(t, err)
	require.NoError(t, down.Downgrade(ctx))
	require.NotEqual(t, token, down.Token(), "a conversion of an ended grant was not granted anew under rules version 1")
	require.ErrorIs(t, endsWithin(t, hold, 5*time.Second, "a downgrade granted anew"), client.ErrLockLost)
	// An Upgrade of a read grant that had ended is granted anew too.
	up := concurrency.NewRWMutex(s, "rw-up")
	require.NoError(t, up.RLock(ctx))
	token = up.Token()
	_, err = admin.ForceReleaseLock(ctx, "rw-up", token, "drill")
	require.NoError(t, err)
	require.NoError(t, up.Upgrade(ctx))
	require.NotEqual(t, token, up.Token())
	c.WaitConverged(20 * time.Second)

	// Member 2 is upgraded: the leader raises the version.
	c.Stop(2)
	c.Members[2].Cfg.MaxRulesVersion = 0
	c.Restart(2)
	c.WaitRules(20 * time.Second)
	require.Equal(t, []uint32{fsm.MaxRulesVersion, fsm.MaxRulesVersion, fsm.MaxRulesVersion}, rulesOf(t, c, cl))
	for _, m := range c.Members {
		require.EqualValues(t, fsm.MaxRulesVersion, metric(t, m, "concord_fsm_rules_version"))
	}

	rw := concurrency.NewRWMutex(s, "rw-v2")
	require.NoError(t, rw.Lock(ctx))
	token = rw.Token()
	_, err = admin.ForceReleaseLock(ctx, "rw-v2", token, "drill")
	require.NoError(t, err)
	err = rw.Downgrade(ctx)
	require.ErrorIs(t, err, client.ErrConversionLost)
	require.ErrorContains(t, err, "before its conversion reached it")
	c.WaitConverged(20 * time.Second)
}

// A member whose build applies rules up to 1 stops with ErrRulesTooNew
// when it meets a raise to 2 in its log, and applies nothing from it on.
func TestMemberOfAnOlderBuildStopsAtARaiseInTheLog(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	require.Equal(t, []uint32{fsm.MaxRulesVersion, fsm.MaxRulesVersion, fsm.MaxRulesVersion}, rulesOf(t, c, cl))
	old := (c.WaitLeader(5*time.Second) + 1) % 3
	c.Stop(old)
	c.Members[old].Cfg.MaxRulesVersion = fsm.BaselineRulesVersion
	c.Restart(old)
	d := c.Members[old].Daemon()
	select {
	case err := <-d.Failed():
		require.ErrorIs(t, err, fsm.ErrRulesTooNew)
		require.ErrorContains(t, err, fmt.Sprintf("raises the rules version to %d, and this build applies up to 1", fsm.MaxRulesVersion))
	case <-time.After(20 * time.Second):
		t.Fatal("the member of an older build did not stop at the raise")
	}
	require.ErrorIs(t, d.Server().FSM().Halted(), fsm.ErrRulesTooNew)
	applied := d.Server().FSM().AppliedIndex()
	require.EqualValues(t, fsm.BaselineRulesVersion, d.Server().FSM().RulesVersion())
	// The others go on; it applies nothing more.
	for i := range 5 {
		_, err := c.Client((old+1)%3, (old+2)%3).Put(ctx, fmt.Sprint("k", i), []byte("v"))
		require.NoError(t, err)
	}
	require.Equal(t, applied, d.Server().FSM().AppliedIndex())
}

// A member of an older build added to a cluster at rules version 2, which
// catches up from a snapshot, stops with ErrRulesTooNew rather than
// restore it.
func TestMemberOfAnOlderBuildStopsAtASnapshotOfNewerRules(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Configure: func(i int, cfg *config.Server) {
		cfg.Raft.SnapshotThreshold = 64
		cfg.Raft.SnapshotInterval = 100 * time.Millisecond
		cfg.Raft.TrailingLogs = 16
	}})
	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	for i := range 200 {
		_, err := cl.Put(ctx, fmt.Sprintf("s/%03d", i), []byte("v"))
		require.NoError(t, err)
	}
	leader := c.WaitLeader(5 * time.Second)
	require.Eventually(t, func() bool {
		st, err := cl.StatusOf(ctx, c.Members[leader].Cfg.ListenClient)
		return err == nil && st.GetLastSnapshotIndex() > 100
	}, 10*time.Second, 50*time.Millisecond, "the leader never compacted its log")

	ip := "127.0.0.4"
	peer := fmt.Sprintf("%s:%d", ip, testcluster.FreePort(t, ip))
	_, err := cl.AddMember(ctx, "n4", peer)
	require.NoError(t, err)
	d4 := c.StartExtra(t, config.Server{
		Name: "n4", ListenPeer: peer, ListenClient: fmt.Sprintf("%s:%d", ip, testcluster.FreePort(t, ip)),
		Join: c.Endpoints(), MaxRulesVersion: fsm.BaselineRulesVersion,
	})
	select {
	case err := <-d4.Failed():
		require.ErrorIs(t, err, fsm.ErrRulesTooNew)
		require.ErrorContains(t, err, fmt.Sprintf("is at rules version %d, and this build applies up to 1", fsm.MaxRulesVersion))
	case <-time.After(20 * time.Second):
		t.Fatal("the member of an older build did not stop at the snapshot")
	}
	require.Zero(t, d4.Server().FSM().AppliedIndex(), "it restored nothing")
}

// A member of an older build started on a data dir whose snapshot is at
// rules version 2 refuses to start, with ErrRulesTooNew.
func TestMemberOfAnOlderBuildRefusesToStartFromASnapshotOfNewerRules(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	_, err := c.Client().Put(ctx, "k", []byte("v"))
	require.NoError(t, err)
	require.NoError(t, c.Members[0].Daemon().Server().CompactLog(ctx))
	c.Stop(0)
	cfg := c.Members[0].Cfg
	cfg.MaxRulesVersion = fsm.BaselineRulesVersion
	d, err := daemon.Start(ctx, cfg, daemon.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if d != nil {
		d.Kill()
	}
	require.ErrorIs(t, err, fsm.ErrRulesTooNew)
	require.ErrorContains(t, err, fmt.Sprintf("is at rules version %d, and this build applies up to 1", fsm.MaxRulesVersion))
}
