package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/daemon"
	"github.com/concord-dev/concord/internal/testcluster"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestEveryMemberServesReadsAndWrites(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 30*time.Second)
	for i := range c.Members {
		cl := c.Client(i)
		key := fmt.Sprintf("from/%d", i)
		res, err := cl.Put(ctx, key, []byte("v"))
		require.NoError(t, err, "member %d", i)
		// Every member sees every acknowledged write on a linearizable read.
		for j := range c.Members {
			kv, err := c.Client(j).Get(ctx, key)
			require.NoError(t, err, "read on member %d", j)
			require.Equal(t, res.Revision, kv.GetModRevision())
		}
	}
	c.WaitConverged(10 * time.Second)
}

func TestLeaderLossKeepsAcknowledgedWrites(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	for i := 0; i < 50; i++ {
		_, err := cl.Put(ctx, fmt.Sprintf("k/%02d", i), []byte("before"))
		require.NoError(t, err)
	}
	old := c.WaitLeader(5 * time.Second)
	c.Kill(old)
	c.WaitNewLeader(old, 10*time.Second)
	for i := 50; i < 100; i++ {
		_, err := cl.Put(ctx, fmt.Sprintf("k/%02d", i), []byte("after"))
		require.NoError(t, err)
	}
	res, err := cl.Range(ctx, "k/", client.WithPrefix(), client.WithCountOnly())
	require.NoError(t, err)
	require.EqualValues(t, 100, res.Count)
	c.Restart(old)
	c.WaitConverged(15 * time.Second)
}

func TestFollowerLossAndCatchUp(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	leader := c.WaitLeader(5 * time.Second)
	follower := (leader + 1) % 3
	c.Kill(follower)
	cl := c.Client()
	for i := 0; i < 100; i++ {
		_, err := cl.Put(ctx, fmt.Sprintf("f/%03d", i), []byte("x"))
		require.NoError(t, err)
	}
	c.Restart(follower)
	c.WaitConverged(15 * time.Second)
	kv, err := c.Client(follower).Get(ctx, "f/099", client.WithConsistency(client.Stale))
	require.NoError(t, err)
	require.Equal(t, "x", string(kv.GetValue()))
}

func TestPartitionedLeaderNeverAcknowledgesItsWrites(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	old := c.WaitLeader(5 * time.Second)
	oldClient := c.Client(old)
	c.Isolate(old)

	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err := oldClient.Put(wctx, "minority-write", []byte("must not be acknowledged"))
	cancel()
	require.Error(t, err, "an isolated leader acknowledged a write")

	// The majority elects a new leader and goes on.
	var others []int
	for i := range c.Members {
		if i != old {
			others = append(others, i)
		}
	}
	majority := c.Client(others...)
	_, err = majority.Put(ctx, "majority-write", []byte("ok"))
	require.NoError(t, err)

	// A linearizable read on the isolated member cannot be served; a stale
	// one can.
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	_, err = oldClient.Get(rctx, "majority-write")
	cancel()
	require.Error(t, err)
	_, err = oldClient.Get(ctx, "majority-write", client.WithConsistency(client.Stale))
	require.ErrorIs(t, err, client.ErrNotFound, "the isolated member has not seen the majority's write")

	c.Heal()
	c.WaitConverged(15 * time.Second)
	_, err = majority.Get(ctx, "minority-write")
	require.ErrorIs(t, err, client.ErrNotFound, "the minority's uncommitted write survived")
	kv, err := oldClient.Get(ctx, "majority-write")
	require.NoError(t, err)
	require.Equal(t, "ok", string(kv.GetValue()))
}

func TestSessionSurvivesLeaderChangeAndExpiresAfterIt(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	sess, err := cl.NewSession(ctx, client.WithTTL(2*time.Second))
	require.NoError(t, err)
	_, err = cl.Put(ctx, "eph", []byte("held"), client.WithSession(sess))
	require.NoError(t, err)

	old := c.WaitLeader(5 * time.Second)
	c.Kill(old)
	c.WaitNewLeader(old, 10*time.Second)
	// Kept alive across the change, the session and its key live on
	// beyond several TTLs.
	time.Sleep(5 * time.Second)
	select {
	case <-sess.Done():
		t.Fatalf("session lost across a leader change: %v", sess.Err())
	default:
	}
	_, err = cl.Get(ctx, "eph")
	require.NoError(t, err)

	// Stop keeping it alive: the new leader expires it and deletes the key,
	// but not before a full TTL after the last keep-alive it confirmed
	// (whose sending time the SDK's Deadline reflects).
	sess.Orphan()
	confirmedUntil := sess.Deadline()
	require.Eventually(t, func() bool {
		_, err := cl.Get(ctx, "eph")
		return errors.Is(err, client.ErrNotFound)
	}, 10*time.Second, 50*time.Millisecond)
	require.False(t, time.Now().Before(confirmedUntil), "expired before a full TTL after its last confirmed keep-alive")
	_, err = cl.GetSession(ctx, sess.ID())
	require.ErrorIs(t, err, client.ErrSessionExpired)
}

func TestNewLeaderRestartsTTLs(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	sess, err := cl.NewSession(ctx, client.WithTTL(3*time.Second))
	require.NoError(t, err)
	sess.Orphan()
	// Let most of the TTL pass under the first leader, then change leader.
	time.Sleep(2 * time.Second)
	old := c.WaitLeader(5 * time.Second)
	c.Kill(old)
	leader := c.WaitNewLeader(old, 10*time.Second)
	elected := time.Now()
	// Only the leader measures TTLs: ask it for the time left.
	info, err := c.Client(leader).GetSession(ctx, sess.ID())
	require.NoError(t, err, "the session expired although the new leader must restart its TTL")
	require.Greater(t, info.GetRemainingMs(), int64(1500))
	require.Eventually(t, func() bool {
		_, err := cl.GetSession(ctx, sess.ID())
		return errors.Is(err, client.ErrSessionExpired)
	}, 10*time.Second, 50*time.Millisecond)
	require.GreaterOrEqual(t, time.Since(elected), 2500*time.Millisecond)
}

func TestLaggingMemberCatchesUpFromSnapshot(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Configure: func(i int, cfg *config.Server) {
		cfg.Raft.SnapshotThreshold = 64
		cfg.Raft.SnapshotInterval = 100 * time.Millisecond
		cfg.Raft.TrailingLogs = 16
	}})
	ctx := ctxT(t, 60*time.Second)
	leader := c.WaitLeader(5 * time.Second)
	lagging := (leader + 1) % 3
	c.Kill(lagging)
	cl := c.Client()
	for i := 0; i < 400; i++ {
		_, err := cl.Put(ctx, fmt.Sprintf("s/%03d", i), []byte("v"))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		st, err := cl.StatusOf(ctx, c.Members[leader].Cfg.ListenClient)
		return err == nil && st.GetLastSnapshotIndex() > 200
	}, 10*time.Second, 50*time.Millisecond, "the leader never compacted its log")
	c.Restart(lagging)
	c.WaitConverged(20 * time.Second)
	st, err := cl.StatusOf(ctx, c.Members[lagging].Cfg.ListenClient)
	require.NoError(t, err)
	require.Greater(t, st.GetLastSnapshotIndex(), uint64(0), "the lagging member should have installed a snapshot")
	res, err := c.Client(lagging).Range(ctx, "s/", client.WithPrefix(), client.WithCountOnly(), client.WithConsistency(client.Stale))
	require.NoError(t, err)
	require.EqualValues(t, 400, res.Count)
}

func TestWatchResumesWithoutGapsAcrossMemberLoss(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	first, err := cl.Put(ctx, "w/0", []byte("0"))
	require.NoError(t, err)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watch := cl.Watch(wctx, "w/", client.WithPrefix(), client.WithRevision(first.Revision))

	const n = 60
	go func() {
		for i := 1; i < n; i++ {
			if i == n/2 {
				c.Kill(c.WaitLeader(5 * time.Second))
			}
			_, _ = cl.Put(ctx, fmt.Sprintf("w/%d", i), []byte(fmt.Sprint(i)))
		}
	}()
	var last uint64
	seen := map[string]bool{}
	for len(seen) < n {
		select {
		case resp, ok := <-watch:
			require.True(t, ok, "watch closed early")
			require.NoError(t, resp.Err)
			for _, ev := range resp.Events {
				rev := ev.GetKv().GetModRevision()
				require.Greater(t, rev, last, "events out of order or repeated")
				last = rev
				seen[string(ev.GetKv().GetKey())] = true
			}
		case <-ctx.Done():
			t.Fatalf("watch saw %d of %d keys", len(seen), n)
		}
	}
}

func TestMembershipAddPromoteRemove(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	for i := 0; i < 20; i++ {
		_, err := cl.Put(ctx, fmt.Sprintf("m/%d", i), []byte("v"))
		require.NoError(t, err)
	}
	// A fourth member on 127.0.0.4.
	ip := "127.0.0.4"
	peer := fmt.Sprintf("%s:%d", ip, testcluster.FreePort(t, ip))
	m, err := cl.AddMember(ctx, "n4", peer)
	require.NoError(t, err)
	require.Equal(t, "learner", m.GetRole())
	_, err = cl.AddMember(ctx, "n4", peer)
	require.ErrorIs(t, err, client.ErrMemberExists)

	d4 := c.StartExtra(t, config.Server{
		Name: "n4", ListenPeer: peer, ListenClient: fmt.Sprintf("%s:%d", ip, testcluster.FreePort(t, ip)),
		Join: c.Endpoints(),
	})
	require.Eventually(t, func() bool {
		st, err := cl.Status(ctx)
		if err != nil {
			return false
		}
		for _, mb := range st.GetMembers() {
			if mb.GetName() == "n4" {
				return mb.GetRole() == "follower" && mb.GetClientAddr() != ""
			}
		}
		return false
	}, 20*time.Second, 100*time.Millisecond, "n4 was not promoted")
	kv, err := client4(t, d4).Get(ctx, "m/19")
	require.NoError(t, err)
	require.Equal(t, "v", string(kv.GetValue()))

	// Remove n4; its ID is retired and a new n4 gets another.
	require.NoError(t, cl.RemoveMember(ctx, "n4"))
	// Status reports the configuration of the member that answers, which
	// may be a follower that has not yet received the removal.
	require.Eventually(t, func() bool {
		st, err := cl.Status(ctx)
		return err == nil && len(st.GetMembers()) == 3
	}, 10*time.Second, 20*time.Millisecond, "n4 still listed after its removal")
	m2, err := cl.AddMember(ctx, "n4", fmt.Sprintf("%s:%d", ip, testcluster.FreePort(t, ip)))
	require.NoError(t, err)
	require.NotEqual(t, m.GetId(), m2.GetId(), "a removed member's ID was reused")
	require.ErrorIs(t, cl.RemoveMember(ctx, "nobody"), client.ErrNotFound)
}

func TestGracefulShutdownHandsLeadershipOver(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	old := c.WaitLeader(5 * time.Second)
	start := time.Now()
	c.Stop(old)
	c.WaitNewLeader(old, 5*time.Second)
	// A transfer is faster than waiting out an election timeout after the
	// leader vanished (300 ms heartbeat timeout plus the election itself).
	t.Logf("new leader ready %s after the graceful stop began", time.Since(start))
}

func TestLogStoresCatchUpAndNoSilentSwitch(t *testing.T) {
	for _, store := range []string{"seglog", "bolt", "wal"} {
		t.Run(store, func(t *testing.T) {
			c := testcluster.Start(t, testcluster.Options{Configure: func(i int, cfg *config.Server) {
				cfg.Raft.LogStore = store
				cfg.Raft.SnapshotThreshold = 64
				cfg.Raft.SnapshotInterval = 100 * time.Millisecond
				cfg.Raft.TrailingLogs = 16
			}})
			ctx := ctxT(t, 60*time.Second)
			leader := c.WaitLeader(5 * time.Second)
			lagging := (leader + 1) % 3
			c.Kill(lagging)
			cl := c.Client()
			for i := 0; i < 300; i++ {
				_, err := cl.Put(ctx, fmt.Sprintf("w/%03d", i), []byte("v"))
				require.NoError(t, err)
			}
			// The lagging member is behind the leader's compacted log:
			// it catches up from a snapshot, then from the log.
			c.Restart(lagging)
			c.WaitConverged(20 * time.Second)
			for i := 300; i < 320; i++ {
				_, err := cl.Put(ctx, fmt.Sprintf("w/%03d", i), []byte("v"))
				require.NoError(t, err)
			}
			c.WaitConverged(20 * time.Second)

			// A data dir keeps its log store: starting it with another
			// fails clearly, starting it with none picks the one it holds.
			c.Kill(lagging)
			m := c.Members[lagging]
			other := m.Cfg
			other.Raft.LogStore = "bolt"
			if store == "bolt" {
				other.Raft.LogStore = "seglog"
			}
			_, err := daemon.Start(ctx, other, daemon.Options{})
			require.ErrorContains(t, err, fmt.Sprintf(`holds a %q Raft log`, store))
			m.Cfg.Raft.LogStore = ""
			c.Restart(lagging)
			c.WaitConverged(20 * time.Second)
		})
	}
}

func TestSecondMemberOnADataDirInUseFailsAtOnce(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	cfg := c.Members[0].Cfg
	cfg.ListenClient = fmt.Sprintf("127.0.0.1:%d", testcluster.FreePort(t, "127.0.0.1"))
	cfg.ListenPeer = fmt.Sprintf("127.0.0.1:%d", testcluster.FreePort(t, "127.0.0.1"))
	start := time.Now()
	_, err := daemon.Start(context.Background(), cfg, daemon.Options{})
	require.ErrorContains(t, err, "in use by another concord member")
	require.Less(t, time.Since(start), 2*time.Second)
}

// metric returns the value of one sample (name with its labels, as
// /metrics prints it) on a member, 0 when absent.
func metric(t *testing.T, m *testcluster.Member, sample string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + m.Cfg.ListenClient + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f
		}
	}
	return 0
}

// forwardedProposals sums concord_server_forwarded_total{kind="propose"}
// over the running members.
func forwardedProposals(t *testing.T, c *testcluster.Cluster) float64 {
	t.Helper()
	var sum float64
	for _, m := range c.Members {
		if m.Daemon() != nil {
			sum += metric(t, m, `concord_server_forwarded_total{kind="propose"}`)
		}
	}
	return sum
}

func TestLogAppendMetrics(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	m := c.Members[0]
	before := metric(t, m, "concord_raft_log_append_entries_sum")
	for i := 0; i < 10; i++ {
		_, err := cl.Put(ctx, fmt.Sprintf("m/%d", i), []byte("v"))
		require.NoError(t, err)
	}
	require.GreaterOrEqual(t, metric(t, m, "concord_raft_log_append_entries_sum")-before, 10.0, "every put is an appended entry")
	require.Positive(t, metric(t, m, "concord_raft_log_append_duration_seconds_count"))
}

// After a leader change the SDK keeps its batch stream to the old leader,
// which forwards every write; the responses say so and the SDK moves to the
// new leader.
func TestClientMovesToTheNewLeader(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	old := c.WaitLeader(5 * time.Second)
	cl := c.Client()
	_, err := cl.Put(ctx, "k", []byte("v"))
	require.NoError(t, err)

	// Another client moves the leadership, so that cl learns nothing.
	_, err = c.Client().TransferLeader(ctx, "")
	require.NoError(t, err)
	c.WaitNewLeader(old, 5*time.Second)
	start := forwardedProposals(t, c)
	_, err = cl.Put(ctx, "k", []byte("v"))
	require.NoError(t, err)
	// Usually the old leader forwarded that put (when it did not yet know
	// the new leader, it refused it and the client looked the leader up).
	t.Logf("forwarded after the change: %v", forwardedProposals(t, c)-start)

	require.Eventually(t, func() bool {
		before := forwardedProposals(t, c)
		for i := 0; i < 20; i++ {
			if _, err := cl.Put(ctx, "k", []byte("v")); err != nil {
				return false
			}
		}
		return forwardedProposals(t, c) == before
	}, 15*time.Second, 50*time.Millisecond, "the client still writes through a member that forwards")
}

// Membership changes that would break the cluster are refused with a typed
// error before anything is proposed: a learner at another spelling of an
// existing member's peer address (the leader replicated to itself as to
// the learner and lost its leadership for good), peer addresses no member
// could listen on, removing the only voter or handing leadership to no one.
func TestMembershipChangesThatWouldBreakTheClusterAreRefused(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	peer := c.Members[0].Cfg.AdvertisePeer // what the configuration holds
	host, port, err := net.SplitHostPort(peer)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", host, "localhost below names this member")
	probe := func() uint64 {
		res, err := cl.Put(ctx, "probe", []byte("x"))
		require.NoError(t, err)
		return res.Revision
	}
	refuseAll := func() {
		for _, addr := range []string{
			"localhost:" + port, // the leader's own socket, by another name
			"LOCALHOST:" + port,
			"127.0.0.1:abc", ":47999", "127.0.0.1:0", "127.0.0.1:-5", "127.0.0.1:70000", "0.0.0.0:7999", "[::]:7999",
			"127.0.0.1:" + strings.Repeat("9", 2_000_000),
		} {
			_, err := cl.AddMember(ctx, "x", addr)
			require.Error(t, err, "%.40q", addr)
			require.True(t, errors.Is(err, client.ErrMemberExists) || errors.Is(err, client.ErrInvalidArgument), "%.40q: %v", addr, err)
			require.Less(t, len(err.Error()), 1024, "the error echoes the input")
		}
		err = cl.RemoveMember(ctx, "nobody-"+strings.Repeat("n", 100_000))
		require.ErrorIs(t, err, client.ErrNotFound)
		require.Less(t, len(err.Error()), 1024, "the error echoes the input")
		err = cl.RemoveMember(ctx, c.Members[0].Cfg.Name)
		require.ErrorIs(t, err, client.ErrInvalidArgument, "the only voter")
		_, err = cl.TransferLeader(ctx, "")
		require.ErrorIs(t, err, client.ErrInvalidArgument, "no other voter")
	}
	// The member proposes on its own too (its no-op and address when it
	// starts leading): a window with another entry in it is measured again.
	// A refused change that was proposed moves the revision in every one.
	var moved []uint64
	for range 3 {
		before := probe()
		refuseAll()
		after := probe()
		if after == before+1 {
			return // nothing was proposed, and the cluster still leads
		}
		moved = append(moved, after-before-1)
	}
	t.Fatalf("a refused change was proposed: entries besides the probe in each of 3 windows: %v", moved)
}
