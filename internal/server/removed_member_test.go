package server_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/daemon"
	"github.com/concord-dev/concord/internal/server"
	"github.com/concord-dev/concord/internal/testcluster"
)

// startFourth adds n4 on 127.0.0.4 to c and starts it with --join; it
// returns the member's configuration (its data dir kept) and daemon once
// n4 is a voter.
func startFourth(t *testing.T, c *testcluster.Cluster) (config.Server, *daemon.Daemon) {
	return startFourthAs(t, c, "follower")
}

// startFourthAs is startFourth, returning once n4 has role in the
// cluster's status and in its own (its log holds its membership).
func startFourthAs(t *testing.T, c *testcluster.Cluster, role string) (config.Server, *daemon.Daemon) {
	t.Helper()
	ctx := ctxT(t, 60*time.Second)
	ip := "127.0.0.4"
	peer := fmt.Sprintf("%s:%d", ip, testcluster.FreePort(t, ip))
	_, err := c.Client().AddMember(ctx, "n4", peer)
	require.NoError(t, err)
	cfg := config.Server{
		Name: "n4", DataDir: filepath.Join(t.TempDir(), "n4"),
		ListenClient: fmt.Sprintf("%s:%d", ip, testcluster.FreePort(t, ip)), ListenPeer: peer,
		Join: c.Endpoints(), Raft: c.Members[0].Cfg.Raft, ShutdownTimeout: 5 * time.Second,
	}
	d, err := daemon.Start(ctx, cfg, daemon.Options{})
	require.NoError(t, err)
	t.Cleanup(d.Kill)
	waitRole(t, c, "n4", role)
	require.Eventually(t, func() bool {
		st, err := d.Server().Status(ctx)
		return err == nil && st.GetSelf().GetRole() == role
	}, 20*time.Second, 50*time.Millisecond, "n4 does not see itself as a %s", role)
	return cfg, d
}

func waitRole(t *testing.T, c *testcluster.Cluster, name, role string) {
	t.Helper()
	cl := c.Client()
	require.Eventually(t, func() bool {
		st, err := cl.Status(context.Background())
		if err != nil {
			return false
		}
		for _, m := range st.GetMembers() {
			if m.GetName() == name {
				return m.GetRole() == role
			}
		}
		return false
	}, 20*time.Second, 50*time.Millisecond, "%s is not a %s", name, role)
}

func waitFailed(t *testing.T, d *daemon.Daemon, within time.Duration) error {
	t.Helper()
	select {
	case err := <-d.Failed():
		return err
	case <-time.After(within):
		t.Fatalf("the member did not stop within %s", within)
		return nil
	}
}

// A member that sees its own removal stops (as etcd's does): it used to run
// on as a member of nothing.
func TestRemovedMemberStops(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	_, d4 := startFourth(t, c)
	require.NoError(t, c.Client().RemoveMember(ctxT(t, 30*time.Second), "n4"))
	err := waitFailed(t, d4, 20*time.Second)
	require.ErrorIs(t, err, server.ErrRemoved)
	require.NotErrorIs(t, err, server.ErrAddedBack)
}

// A leader that removes itself stops too (its Raft shuts itself down).
func TestLeaderThatRemovedItselfStops(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	l := c.WaitLeader(10 * time.Second)
	require.NoError(t, c.Client().RemoveMember(ctxT(t, 30*time.Second), c.Members[l].Name))
	err := waitFailed(t, c.Members[l].Daemon(), 20*time.Second)
	require.ErrorIs(t, err, server.ErrRemoved)
}

// A process started on the data dir of a member that was removed and then
// added back (a machine that was down while it was replaced, restarted by
// its supervisor) ran under its retired ID, unnoticed: the leader
// replicated to the new ID at its address, and waited forever for the
// process to report that ID before promoting it. It now stops with
// ErrAddedBack, naming the new ID.
func TestMemberAddedBackRefusesItsOldDataDir(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	cfg, d4 := startFourth(t, c)
	oldID := d4.Server().ID()
	require.NoError(t, d4.Stop(ctxT(t, 10*time.Second)))

	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	require.NoError(t, cl.RemoveMember(ctx, "n4"))
	added, err := cl.AddMember(ctx, "n4", cfg.ListenPeer)
	require.NoError(t, err)
	require.NotEqual(t, oldID, added.GetId())

	cfg.Join = nil // restarted as a joined member is
	d, err := daemon.Start(ctx, cfg, daemon.Options{})
	require.NoError(t, err)
	t.Cleanup(d.Kill)
	require.Equal(t, oldID, d.Server().ID())
	err = waitFailed(t, d, 30*time.Second)
	require.ErrorIs(t, err, server.ErrAddedBack)
	require.ErrorContains(t, err, added.GetId())
}

// A member that was down while it was removed restarted on its data dir
// with a configuration that still listed it, and ran on for good as a
// stranger: no leader talks to it any more, its elections are ignored, and
// a client that asked it got no leader. It now asks the cluster's leader
// and stops with ErrRemoved, while the others keep serving.
func TestMemberRemovedWhileDownStopsOnRestart(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	cfg, d4 := startFourth(t, c)
	oldID := d4.Server().ID()
	require.NoError(t, d4.Stop(ctxT(t, 10*time.Second)))

	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	require.NoError(t, cl.RemoveMember(ctx, "n4"))
	// Raft's leader makes one last attempt to send the removal to n4,
	// after a back-off: n4 restarted within it learns of its removal from
	// the log, as a member that was up does. A leader stopped gracefully
	// has ended that attempt, and its successor never sends n4 anything.
	l := c.WaitLeader(10 * time.Second)
	c.Stop(l)
	c.WaitNewLeader(l, 10*time.Second)
	c.Restart(l)

	restartRemoved(t, ctx, cfg, oldID, cl)
}

// A member stopped and restarted on its data dir without being removed
// asks nobody anything it could misread: it rejoins as a follower and
// keeps running past several removal checks.
func TestMemberRestartedWithoutRemovalKeepsRunning(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	cfg, d4 := startFourth(t, c)
	require.NoError(t, d4.Stop(ctxT(t, 10*time.Second)))
	ctx := ctxT(t, 60*time.Second)
	// The cluster moves on while n4 is down.
	for i := range 20 {
		_, err := c.Client().Put(ctx, fmt.Sprintf("k%d", i), []byte("v"))
		require.NoError(t, err)
	}
	cfg.Join = nil
	d, err := daemon.Start(ctx, cfg, daemon.Options{})
	require.NoError(t, err)
	t.Cleanup(d.Kill)
	waitRole(t, c, "n4", "follower")
	select {
	case err := <-d.Failed():
		t.Fatalf("a member that was not removed stopped: %v", err)
	case <-time.After(3 * server.RemovedCheckInterval):
	}
}

// The removal check finds nothing against a member that was not removed:
// reachable, the leader lists it; cut off, nobody answers.
func TestRemovalCheckSparesMembers(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	l := c.WaitLeader(10 * time.Second)
	f := (l + 1) % len(c.Members)
	ctx := ctxT(t, 30*time.Second)
	require.False(t, c.Members[f].Daemon().Server().AskRemoved(ctx), "a follower")
	require.False(t, c.Members[l].Daemon().Server().AskRemoved(ctx), "the leader")

	c.Isolate(f)
	require.False(t, c.Members[f].Daemon().Server().AskRemoved(ctx), "a follower cut off")
	c.Heal()
	select {
	case err := <-c.Members[f].Daemon().Failed():
		t.Fatalf("a member that was not removed stopped: %v", err)
	case err := <-c.Members[l].Daemon().Failed():
		t.Fatalf("a member that was not removed stopped: %v", err)
	default:
	}
}

// A member that was down while it was removed and added back at another
// address (a machine replaced by one with another address), restarted on
// its old data dir at its old address, hears from no leader: the removal
// check stops it with ErrAddedBack, naming the new ID.
func TestMemberAddedBackElsewhereRefusesItsOldDataDir(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	cfg, d4 := startFourth(t, c)
	oldID := d4.Server().ID()
	require.NoError(t, d4.Stop(ctxT(t, 10*time.Second)))

	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	require.NoError(t, cl.RemoveMember(ctx, "n4"))
	ip := "127.0.0.5"
	added, err := cl.AddMember(ctx, "n4", fmt.Sprintf("%s:%d", ip, testcluster.FreePort(t, ip)))
	require.NoError(t, err)
	require.NotEqual(t, oldID, added.GetId())
	// As in TestMemberRemovedWhileDownStopsOnRestart: no leader's last
	// attempt reaches n4's old address.
	l := c.WaitLeader(10 * time.Second)
	c.Stop(l)
	c.WaitNewLeader(l, 10*time.Second)
	c.Restart(l)

	cfg.Join = nil
	d, err := daemon.Start(ctx, cfg, daemon.Options{})
	require.NoError(t, err)
	t.Cleanup(d.Kill)
	err = waitFailed(t, d, 30*time.Second)
	require.ErrorIs(t, err, server.ErrAddedBack)
	require.ErrorContains(t, err, added.GetId())
	require.ErrorContains(t, err, "removed while it was down")
}

// The same with three members, as an operator meets it: one is down, it is
// removed, and it comes back on its data dir; the other two go on serving.
func TestOneOfThreeRemovedWhileDownStopsOnRestart(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	l := c.WaitLeader(10 * time.Second)
	down := (l + 1) % len(c.Members)
	name := c.Members[down].Name
	c.Stop(down)

	ctx := ctxT(t, 60*time.Second)
	cl := c.Client(l)
	require.NoError(t, cl.RemoveMember(ctx, name))
	// No last attempt of the leader reaches the member (see
	// TestMemberRemovedWhileDownStopsOnRestart); with two voters left, the
	// cluster has no leader until the stopped one is back.
	c.Stop(l)
	c.Restart(l)
	c.WaitLeader(20 * time.Second)

	c.Restart(down)
	err := waitFailed(t, c.Members[down].Daemon(), 30*time.Second)
	require.ErrorIs(t, err, server.ErrRemoved)
	require.NotErrorIs(t, err, server.ErrAddedBack)
	require.ErrorContains(t, err, "removed while it was down")

	for i := range c.Members {
		if i == down {
			continue
		}
		cl := c.Client(i)
		_, err := cl.Put(ctx, "after", []byte(c.Members[i].Name))
		require.NoError(t, err)
		st, err := cl.Status(ctx)
		require.NoError(t, err)
		require.Len(t, st.GetMembers(), 2)
	}
}

// A learner stopped before its promotion and removed while it was down
// restarted on a log whose newest configuration is its own addition, which
// the removal check took for an addition in progress (its membership was
// never committed in its eyes): it ran on for good as a stranger. The
// leader now tells it that its ID is retired, which no addition in
// progress is, and it stops with ErrRemoved; a learner that was not
// removed is spared.
func TestLearnerRemovedBeforePromotionStopsOnRestart(t *testing.T) {
	server.HoldLearners(t)
	c := testcluster.Start(t, testcluster.Options{})
	cfg, d4 := startFourthAs(t, c, "learner")
	oldID := d4.Server().ID()
	ctx := ctxT(t, 60*time.Second)
	require.False(t, d4.Server().AskRemoved(ctx), "a learner that was not removed")
	require.NoError(t, d4.Stop(ctxT(t, 10*time.Second)))

	cl := c.Client()
	require.NoError(t, cl.RemoveMember(ctx, "n4"))
	// As in TestMemberRemovedWhileDownStopsOnRestart: no leader's last
	// attempt reaches n4.
	l := c.WaitLeader(10 * time.Second)
	c.Stop(l)
	c.WaitNewLeader(l, 10*time.Second)
	c.Restart(l)

	restartRemoved(t, ctx, cfg, oldID, cl)
}

// The removal check asked the others' client API, as a joiner does: in a
// cluster that serves it over TLS with a private CA, a member without
// --join-cacert never got an answer (nor one without the cluster's
// --auth-token), and ran on as a stranger. It now asks at the peer port,
// which it reaches for Raft already, and stops.
func TestMemberRemovedWhileDownStopsOnRestartInATLSCluster(t *testing.T) {
	certFile, keyFile, _ := testcluster.SelfSigned(t, t.TempDir())
	c := testcluster.Start(t, testcluster.Options{Configure: func(_ int, cfg *config.Server) {
		cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
		cfg.AuthToken = "secret"
	}})
	l := c.WaitLeader(10 * time.Second)
	down := (l + 1) % len(c.Members)
	name := c.Members[down].Name
	c.Stop(down)

	ctx := ctxT(t, 60*time.Second)
	_, err := c.Members[l].Daemon().Server().RemoveMember(ctx, &concordv1.RemoveMemberRequest{Name: name})
	require.NoError(t, err)
	// As in TestOneOfThreeRemovedWhileDownStopsOnRestart.
	c.Stop(l)
	c.Restart(l)
	c.WaitLeader(20 * time.Second)

	c.Members[down].Cfg.AuthToken = "another" // its own token proves nothing to the others
	c.Restart(down)
	err = waitFailed(t, c.Members[down].Daemon(), 30*time.Second)
	require.ErrorIs(t, err, server.ErrRemoved)
	require.NotErrorIs(t, err, server.ErrAddedBack)
	require.ErrorContains(t, err, "removed while it was down")
	for i, m := range c.Members {
		if i == down {
			continue
		}
		st, err := m.Daemon().Server().Status(ctx)
		require.NoError(t, err)
		require.Len(t, st.GetMembers(), 2)
	}
}

// restartRemoved restarts the member of cfg (ID oldID) on its data dir, as
// a member removed while it was down is restarted, and requires it to stop
// with ErrRemoved; the cluster of cl then serves on with its three members.
func restartRemoved(t *testing.T, ctx context.Context, cfg config.Server, oldID string, cl *client.Client) {
	t.Helper()
	cfg.Join = nil // restarted as a joined member is
	d, err := daemon.Start(ctx, cfg, daemon.Options{})
	require.NoError(t, err)
	t.Cleanup(d.Kill)
	require.Equal(t, oldID, d.Server().ID())
	err = waitFailed(t, d, 30*time.Second)
	require.ErrorIs(t, err, server.ErrRemoved)
	require.NotErrorIs(t, err, server.ErrAddedBack)
	require.ErrorContains(t, err, oldID)
	require.ErrorContains(t, err, "removed while it was down")

	_, err = cl.Put(ctx, "after", []byte("removal"))
	require.NoError(t, err)
	st, err := cl.Status(ctx)
	require.NoError(t, err)
	require.Len(t, st.GetMembers(), 3)
}
