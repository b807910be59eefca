package robustness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/faultnet"
	"github.com/concord-dev/concord/internal/fsm"
	"github.com/concord-dev/concord/tests/robustness/cluster"
)

// TestProcessControl drives one cluster through every process, network and
// membership operation the nemesis uses, checks that each takes effect (a
// killed member is gone and comes back with its log, a stopped leader
// hands its leadership on and exits 0, a paused one is
// silent and loses its leadership, a cut-off leader is replaced), and that
// the cluster converges.
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
	admin, err := c.NewClient(ctx)
	require.NoError(t, err)
	defer admin.Close()
	// answers reports whether member i's client API answers within a
	// second: a killed member refuses, a paused one stays silent.
	answers := func(i int) bool {
		hctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(hctx, http.MethodGet, "http://"+c.Member(i).ClientAddr+"/healthz", nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	lastLog := func(i int) uint64 {
		st, err := admin.StatusOf(ctx, c.Member(i).ClientAddr)
		require.NoError(t, err)
		return st.GetLastLogIndex()
	}
	// newLeader waits until a member other than old leads.
	newLeader := func(old int, why string) {
		t.Helper()
		require.NoError(t, cluster.Poll(ctx, 20*time.Second, 100*time.Millisecond, func() error {
			if l := c.Leader(ctx); l < 0 || l == old {
				return fmt.Errorf("no other leader than %d (%s)", old, why)
			}
			return nil
		}))
	}
	isolate := func(i int, l faultnet.Link) {
		for to := range 3 {
			if to != i {
				c.SetLink(i, to, l)
				c.SetLink(to, i, l)
			}
		}
	}
	put("a")

	leader := c.Leader(ctx)
	require.GreaterOrEqual(t, leader, 0)
	logged := lastLog(leader)
	require.Positive(t, logged)
	require.NoError(t, c.Kill(leader))
	require.False(t, answers(leader), "a killed member answers")
	put("b")
	// Restarted cut off from its peers, the member can only have its log
	// from its data dir.
	isolate(leader, faultnet.Link{Mode: faultnet.Reset})
	require.NoError(t, c.Restart(ctx, leader))
	require.True(t, answers(leader))
	require.GreaterOrEqual(t, lastLog(leader), logged, "a restarted member lost its log: not restarted on its data dir")
	c.HealNetwork()

	// A graceful stop of the leader hands its leadership over: another
	// member leads before the stopped one is back, and the stop exits 0.
	leader, err = c.WaitLeader(ctx, 20*time.Second)
	require.NoError(t, err)
	logged = lastLog(leader)
	took, exit, err := c.Stop(leader, 30*time.Second)
	require.NoError(t, err)
	require.NoError(t, exit, "the graceful stop of the leader failed")
	t.Logf("graceful stop of the leader took %s", took)
	require.False(t, answers(leader), "a stopped member answers")
	newLeader(leader, "the leader stopped")
	put("b2")
	require.NoError(t, c.Restart(ctx, leader))
	require.True(t, answers(leader))
	require.GreaterOrEqual(t, lastLog(leader), logged, "a restarted member lost its log after a graceful stop")

	leader, err = c.WaitLeader(ctx, 20*time.Second)
	require.NoError(t, err)
	require.NoError(t, c.Pause(leader))
	// SIGSTOP stops the threads of the process as they get scheduled: a
	// request may still be served right after the signal was sent.
	require.NoError(t, cluster.Poll(ctx, 10*time.Second, 50*time.Millisecond, func() error {
		if answers(leader) {
			return fmt.Errorf("paused %s still answers", c.Member(leader).Name)
		}
		return nil
	}), "a paused member answers")
	newLeader(leader, "the leader is paused")
	put("c")
	require.NoError(t, c.Resume(leader))
	require.True(t, answers(leader))

	leader, err = c.WaitLeader(ctx, 20*time.Second)
	require.NoError(t, err)
	isolate(leader, faultnet.Link{Mode: faultnet.Blackhole})
	newLeader(leader, "the leader is cut off")
	put("c2")
	c.HealNetwork()

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

// TestMoveMember moves a follower to a new peer address the way the
// nemesis's move fault does (kill -9, UpdateMember to a new proxy, restart
// on its data dir) and checks that the partitions set against the member
// still cut it at its new proxy, and that it votes there: with another
// member stopped, writes commit only with its vote.
func TestMoveMember(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
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
	rejoined := func(i int) {
		t.Helper()
		require.NoError(t, cluster.Poll(ctx, 30*time.Second, 200*time.Millisecond, func() error { return c.Rejoined(ctx, i) }))
	}
	put("a")
	leader, err := c.WaitLeader(ctx, 20*time.Second)
	require.NoError(t, err)
	v := (leader + 1) % 3
	before := c.Info(v)

	// Cut the member off before the move: the links it has must follow it
	// to its new proxy.
	for to := range 3 {
		if to != v {
			c.SetLink(v, to, faultnet.Link{Mode: faultnet.Blackhole})
			c.SetLink(to, v, faultnet.Link{Mode: faultnet.Blackhole})
		}
	}
	require.NoError(t, c.Kill(v))
	from, to, err := c.Move(ctx, v, 30*time.Second)
	require.NoError(t, err)
	require.Equal(t, before.ProxyAddr, from)
	require.NotEqual(t, from, to)
	require.Equal(t, to, c.Info(v).ProxyAddr)
	require.NoError(t, c.Restart(ctx, v))
	require.Equal(t, before.ID, c.Info(v).ID, "a moved member keeps its ID")

	// Still cut off at its new address: with one more member down, no
	// write can commit.
	other := (v + 1) % 3
	require.NoError(t, c.Kill(other))
	wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
	cl, err := c.NewClient(ctx)
	require.NoError(t, err)
	_, err = cl.Put(wctx, "cut", []byte("v"))
	wcancel()
	cl.Close()
	require.Error(t, err, "a write committed while the moved member was cut off: the partition does not apply to its new proxy")
	c.HealNetwork()
	require.NoError(t, c.Restart(ctx, other))
	rejoined(v)
	put("b")

	// It votes at its new address: stop another member, the leader if it
	// is not the moved one; writes still commit.
	leader, err = c.WaitLeader(ctx, 20*time.Second)
	require.NoError(t, err)
	stop := leader
	if stop == v {
		stop = (v + 1) % 3
	}
	require.NoError(t, c.Kill(stop))
	put("c")
	st, err := func() (*client.Status, error) {
		cl, err := c.NewClient(ctx)
		if err != nil {
			return nil, err
		}
		defer cl.Close()
		return cl.StatusOf(ctx, c.Member(v).ClientAddr)
	}()
	require.NoError(t, err)
	require.Equal(t, to, st.GetSelf().GetPeerAddr(), "the moved member advertises its new address")
	require.NoError(t, c.Restart(ctx, stop))
	rejoined(stop)
	rejoined(v)
	_, err = c.WaitConverged(ctx, 30*time.Second)
	require.NoError(t, err)
}

// TestWaitRulesVersion checks the wait Run makes before its workloads
// start: every member of a new cluster reaches the build's rules version
// (the leader raises it), and a version no member's build applies is never
// reached, which the wait reports with each member's version.
func TestWaitRulesVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{Binary: binary(t), Size: 3, Dir: t.TempDir(), Logf: t.Logf})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.WaitRulesVersion(ctx, fsm.RulesConversion, rulesVersionTimeout))
	for _, s := range c.Statuses(ctx) {
		require.NoError(t, s.Err)
		require.GreaterOrEqual(t, s.RulesVersion, uint32(fsm.RulesConversion), s.Name)
	}
	id, err := c.WaitClusterID(ctx, rulesVersionTimeout)
	require.NoError(t, err)
	require.True(t, fsm.ValidClusterID(id), id)
	for _, s := range c.Statuses(ctx) {
		require.Equal(t, id, s.ClusterID, s.Name)
	}
	err = c.WaitRulesVersion(ctx, fsm.MaxRulesVersion+1, time.Second)
	require.Error(t, err)
	require.ErrorContains(t, err, fmt.Sprintf("members below rules version %d: %s at %d", fsm.MaxRulesVersion+1, c.Member(0).Name, fsm.MaxRulesVersion))
}

// TestImpostor runs the impostor fault's steps by hand: a one-member
// cluster of its own, under a follower's ID, at the follower's address,
// while the cluster writes. The impostor refuses the cluster's Raft
// streams (its counter says so), its own cluster is unchanged (Check), the
// cluster commits with its two other members, and the follower, restarted
// at its address, catches up with the others.
func TestImpostor(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{Binary: binary(t), Size: 3, Dir: t.TempDir(), Logf: t.Logf})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.WaitClusterID(ctx, rulesVersionTimeout)
	require.NoError(t, err)
	leader, err := c.WaitLeader(ctx, 30*time.Second)
	require.NoError(t, err)
	victim := (leader + 1) % 3

	imp, err := c.StartImpostor(ctx, victim)
	require.NoError(t, err)
	defer imp.Stop()
	require.Equal(t, c.Info(victim).ID, imp.Name, "the impostor takes the member's Raft ID")
	require.NoError(t, c.Kill(victim))
	c.Impersonate(victim, imp)
	for i := 0; i < 20; i++ {
		require.NoError(t, c.Do(ctx, 10*time.Second, 3*time.Second, func(ctx context.Context, cl *client.Client) error {
			_, err := cl.Put(ctx, fmt.Sprintf("k%d", i), []byte("v"))
			return err
		}))
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(t, imp.Check(ctx), "the impostor's cluster is unchanged")
	require.NoError(t, cluster.Poll(ctx, 10*time.Second, 100*time.Millisecond, func() error {
		n, err := imp.Refused(ctx)
		if err == nil && n == 0 {
			err = fmt.Errorf("no Raft connection refused yet")
		}
		return err
	}), "the leader reaches the impostor at the member's address, and is refused")

	c.Unimpersonate(victim)
	imp.Stop()
	require.NoError(t, c.Restart(ctx, victim))
	_, err = c.WaitConverged(ctx, 30*time.Second)
	require.NoError(t, err, "the member, back at its address, catches up")
}

// The harness's members checkpoint hold times as every profile asks
// (Config.LockHoldCheckpoint, passed as --lock-hold-checkpoint), so that
// the campaigns' leaders elected after a fault count on from checkpoints;
// and they hold back the write of an acquire that will queue (the default
// --lock-queue-defer), so that the campaigns' waits run through it.
func TestMembersCheckpointHoldTimes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	for _, p := range []string{ProfileShort, ProfileLong, ProfileLockLimit} {
		cfg, err := ConfigFor(p, 1, 0)
		require.NoError(t, err)
		require.Equal(t, 100*time.Millisecond, cfg.LockHoldCheckpoint, "profile %s", p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{Binary: binary(t), Size: 3, Dir: t.TempDir(), Logf: t.Logf, LockHoldCheckpoint: 100 * time.Millisecond})
	require.NoError(t, err)
	defer c.Close()
	cl, err := c.NewClient(ctx)
	require.NoError(t, err)
	defer cl.Close()
	sess, err := cl.NewSession(ctx, client.WithTTL(10*time.Second))
	require.NoError(t, err)
	defer sess.Close(context.Background())
	g, err := cl.AcquireLocks(ctx, sess, cl.NewOwner(), []*client.LockClaim{{Name: "held", Kind: client.KindMutex}}, client.AcquireOptions{Hold: 3 * time.Second})
	require.NoError(t, err)
	defer g.Detach()
	require.Eventually(t, func() bool {
		for i := range 3 {
			if counterOf(t, c.Member(i).ClientAddr, "concord_server_lock_hold_checkpoints_total") > 0 {
				return true
			}
		}
		return false
	}, 2*time.Second, 50*time.Millisecond, "no member checkpointed the grant's hold time")

	waiter, err := cl.NewSession(ctx, client.WithTTL(10*time.Second))
	require.NoError(t, err)
	defer waiter.Close(context.Background())
	queued := make(chan struct{}, 1)
	go func() {
		w, err := cl.AcquireLocks(ctx, waiter, cl.NewOwner(), []*client.LockClaim{{Name: "held", Kind: client.KindMutex}},
			client.AcquireOptions{Wait: true, OnQueued: func(int64) { queued <- struct{}{} }})
		if err == nil {
			w.Detach()
		}
	}()
	select {
	case <-queued:
	case <-ctx.Done():
		t.Fatal("the waiter was never queued")
	}
	parked := 0.0
	for i := range 3 {
		parked += counterOf(t, c.Member(i).ClientAddr, "concord_raft_proposals_parked_total")
	}
	require.GreaterOrEqual(t, parked, 1.0, "the acquire that queued was not held back for company")
}

// counterOf reads one unlabelled sample from a member's /metrics (0 when
// absent or unreachable).
func counterOf(t *testing.T, addr, name string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f
		}
	}
	return 0
}
