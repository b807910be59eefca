package server_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/faultnet"
	"github.com/concord-dev/concord/internal/fsm"
	"github.com/concord-dev/concord/internal/server"
	"github.com/concord-dev/concord/internal/testcluster"
)

// A member whose state lags behind a release that made room under
// --max-locks does not refuse an acquire from that state: it confirms
// with a read-index round first, and the acquire is granted. Refusing at
// once answered QUOTA_EXCEEDED after the release that made room had been
// acknowledged (the lock table's campaign, tests/robustness
// ProfileLockLimit, seed 1: a member restarted on its data dir refused
// try-locks while it replayed its log).
func TestLockLimitRefusalIsConfirmedAgainstTheLeader(t *testing.T) {
	// Long timeouts: cut off from the leader's heartbeats, the follower
	// must still know it as the leader.
	c := testcluster.Start(t, testcluster.Options{Configure: func(_ int, cfg *config.Server) {
		cfg.Raft.HeartbeatTimeout, cfg.Raft.ElectionTimeout = 3*time.Second, 3*time.Second
		cfg.Limits.MaxLocks = 2
	}})
	ctx := ctxT(t, 30*time.Second)
	leader := c.WaitLeader(10 * time.Second)
	f := (leader + 1) % len(c.Members)
	srvL, srvF := c.Members[leader].Daemon().Server(), c.Members[f].Daemon().Server()
	sess := session(t, c.Client(leader), 30*time.Second)
	mutex := func(name string) []*client.LockClaim {
		return []*client.LockClaim{{Name: name, Kind: client.KindMutex}}
	}

	held, err := srvL.AcquireNow(ctx, &concordv1.AcquireRequest{Claims: mutex("a"), Session: sess.ID(), Owner: "holder"})
	require.NoError(t, err)
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, held.GetState())
	c.WaitConverged(10 * time.Second)

	c.Members[f].Proxy.Set(c.Members[leader].IP, faultnet.Link{Mode: faultnet.Blackhole})
	defer c.Heal()
	_, err = srvL.ReleaseLock(ctx, &concordv1.ReleaseRequest{Names: []string{"a"}, Session: sess.ID(), Owner: "holder", Token: held.GetToken()})
	require.NoError(t, err, "the release that makes room, acknowledged by the leader")
	require.Less(t, srvF.FSM().AppliedIndex(), srvL.FSM().AppliedIndex(), "the follower has not applied the release")

	type answer struct {
		resp *concordv1.AcquireResponse
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := srvF.AcquireNow(ctx, &concordv1.AcquireRequest{Claims: mutex("b"), Session: sess.ID(), Owner: "next"})
		got <- answer{resp, err}
	}()
	select {
	case a := <-got:
		t.Fatalf("the lagging follower answered from its own state: %v, %v", a.resp, a.err)
	case <-time.After(500 * time.Millisecond):
	}
	c.Heal()
	a := <-got
	require.NoError(t, a.err)
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, a.resp.GetState())
}

// Below rules version 4 the state machine does not check --max-locks, and
// the member's check is the only one: it counts a try-lock of a lock that
// exists (a shared grant of a held read lock adds one), and refuses itself,
// with or without a request ID. Leaving such try-locks to the state
// machine, as from version 4, let every new reader through.
func TestLockLimitBelowRulesVersion4IsTheMembersCheck(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1, Configure: func(_ int, cfg *config.Server) {
		cfg.MaxRulesVersion = fsm.RulesLockLimit - 1
		cfg.Limits.MaxLocks = 3
	}})
	c.WaitRules(10 * time.Second)
	ctx := ctxT(t, 30*time.Second)
	srv := c.Members[0].Daemon().Server()
	require.Less(t, srv.FSM().RulesVersion(), uint32(fsm.RulesLockLimit))
	sess := session(t, c.Client(0), 30*time.Second)
	shared := []*client.LockClaim{{Name: "rw", Kind: client.KindRWLock, Mode: client.ModeShared}}
	for i, owner := range []string{"r1", "r2"} {
		resp, err := srv.AcquireNow(ctx, &concordv1.AcquireRequest{Claims: shared, Session: sess.ID(), Owner: owner})
		require.NoError(t, err, "reader %d: the lock and two grants fit --max-locks 3", i)
		require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, resp.GetState())
	}
	_, err := srv.AcquireNow(ctx, &concordv1.AcquireRequest{Claims: shared, Session: sess.ID(), Owner: "r3"})
	require.ErrorIs(t, err, server.ErrQuotaExceeded, "a third reader's grant")
	_, err = srv.AcquireNow(ctx, &concordv1.AcquireRequest{Claims: shared, Session: sess.ID(), Owner: "r4",
		Meta: &concordv1.WriteMeta{ClientId: "c", RequestId: 1}})
	require.ErrorIs(t, err, server.ErrQuotaExceeded, "with a request ID too")
}
