package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/client/concurrency"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/daemon"
	"github.com/concord-dev/concord/internal/fsm"
	"github.com/concord-dev/concord/internal/raftnode"
	"github.com/concord-dev/concord/internal/server"
	"github.com/concord-dev/concord/internal/testcluster"
)

// syncBuffer collects a member's log lines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// seededMember is a member of a restored cluster, seeded, not yet started.
type seededMember struct {
	cfg  config.Server
	logs *syncBuffer
	d    *daemon.Daemon
}

func (m *seededMember) start(t *testing.T) *server.Server {
	t.Helper()
	ctx := context.Background()
	d, err := daemon.Start(ctx, m.cfg, daemon.Options{Logger: slog.New(slog.NewTextHandler(m.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	require.NoError(t, err)
	m.d = d
	t.Cleanup(func() { _ = d.Stop(ctx) })
	return d.Server()
}

func (m *seededMember) stop(t *testing.T) {
	require.NoError(t, m.d.Stop(context.Background()))
	m.d = nil
}

// seedMembers does what `concord snapshot restore --bump-index bumps[i]`
// does for member i of a new cluster of len(bumps) members.
func seedMembers(t *testing.T, backup []byte, bumps []uint64) []*seededMember {
	opts := make([]fsm.NewClusterOptions, len(bumps))
	for i, b := range bumps {
		opts[i].IndexBump = b
	}
	return seedMembersWith(t, backup, opts)
}

// seedMembersWith seeds member i as `concord snapshot restore` with
// opts[i].
func seedMembersWith(t *testing.T, backup []byte, opts []fsm.NewClusterOptions) []*seededMember {
	base := t.TempDir()
	var (
		initial []config.Peer
		servers []raftnode.Server
		members []*seededMember
	)
	for i := range opts {
		ip := "127.0.0." + strconv.Itoa(41+i)
		name := fmt.Sprintf("n%d", i+1)
		peer := net.JoinHostPort(ip, strconv.Itoa(testcluster.FreePort(t, ip)))
		initial = append(initial, config.Peer{Name: name, Addr: peer})
		servers = append(servers, raftnode.Server{ID: name, Addr: peer, Voter: true})
		members = append(members, &seededMember{logs: &syncBuffer{}, cfg: config.Server{
			Name: name, DataDir: filepath.Join(base, name),
			ListenClient: net.JoinHostPort(ip, strconv.Itoa(testcluster.FreePort(t, ip))),
			ListenPeer:   peer, AdvertisePeer: peer,
			Raft:   config.Raft{HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond},
			Limits: config.Limits{MinSessionTTL: 100 * time.Millisecond}, ShutdownTimeout: 5 * time.Second,
		}})
	}
	for i, m := range members {
		m.cfg.InitialCluster = initial
		var fresh bytes.Buffer
		sum, err := fsm.ForNewCluster(bytes.NewReader(backup), &fresh, opts[i])
		require.NoError(t, err)
		require.NoError(t, server.SeedMember(m.cfg.DataDir, m.cfg.Name, server.NewSeed(sum.Index, fresh.Bytes()), func(raftDir string) error {
			return raftnode.SeedFromSnapshot(raftDir, "seglog", sum.Index, servers, &fresh, nil)
		}))
	}
	return members
}

// smallBackup is a backup of a one-member cluster holding a few keys.
func smallBackup(t *testing.T) []byte {
	ctx := ctxT(t, 30*time.Second)
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	old := c.Members[0].Daemon().Server()
	for i := range 5 {
		_, err := old.Put(ctx, &concordv1.PutRequest{Key: []byte(fmt.Sprint("backup/", i)), Value: []byte("v")})
		require.NoError(t, err)
	}
	var backup bytes.Buffer
	_, err := old.Snapshot(ctx, &backup)
	require.NoError(t, err)
	return backup.Bytes()
}

func putN(t *testing.T, ctx context.Context, srv *server.Server, prefix string, n int) {
	t.Helper()
	for i := range n {
		_, err := srv.Put(ctx, &concordv1.PutRequest{Key: []byte(fmt.Sprint(prefix, i)), Value: []byte("v")})
		require.NoError(t, err)
	}
}

func staleHas(ctx context.Context, srv *server.Server, key string) bool {
	r, err := srv.Range(ctx, &concordv1.RangeRequest{Key: []byte(key), Consistency: concordv1.Consistency_CONSISTENCY_STALE})
	return err == nil && len(r.GetKvs()) == 1
}

func waitLeaderAmong(t *testing.T, srvs ...*server.Server) *server.Server {
	t.Helper()
	var leader *server.Server
	require.Eventually(t, func() bool {
		for _, s := range srvs {
			if st, err := s.Status(context.Background()); err == nil && st.GetSelf().GetRole() == "leader" && s.Barrier(context.Background()) == nil {
				leader = s
				return true
			}
		}
		return false
	}, 20*time.Second, 50*time.Millisecond, "no leader")
	return leader
}

// Members restored with different --bump-index (an operator's mistake).
//
// A member seeded below the others cannot lead (its log is behind theirs)
// and catches up by installing the leader's snapshot: the cluster converges
// on one state.
//
// A member seeded above the leader took the leader's entries up to its own
// seed index for entries it had already applied (concord's patch to
// installSnapshot and appendEntries: "applied, so committed, so the same
// entry"), skipped them and acknowledged them. The leader then counted it
// in every quorum: with the third member down, a write was acknowledged
// while only the leader held it, and the member that acknowledged it
// served reads without it. Such a member now refuses those entries, loudly:
// an entry at or below its snapshot carries a later term than the snapshot,
// which no single history allows.
func TestRestoreMembersSeededWithDifferentBumps(t *testing.T) {
	backup := smallBackup(t)

	t.Run("one member below the others converges", func(t *testing.T) {
		ctx := ctxT(t, 90*time.Second)
		ms := seedMembers(t, backup, []uint64{1000, 1_000_000_000, 1_000_000_000})
		var srvs []*server.Server
		for _, m := range ms {
			srvs = append(srvs, m.start(t))
		}
		leader := waitLeaderAmong(t, srvs...)
		require.NotSame(t, srvs[0], leader, "the member seeded below the others led")
		putN(t, ctx, leader, "after/", 20)
		var last []string
		require.Eventually(t, func() bool {
			last = last[:0]
			idx0, h0, _ := srvs[0].Hash(ctx)
			same := true
			for i, s := range srvs {
				idx, h, err := s.Hash(ctx)
				last = append(last, fmt.Sprintf("n%d: %d %.12s %v", i+1, idx, h, err))
				same = same && err == nil && idx == idx0 && h == h0
			}
			return same
		}, 30*time.Second, 100*time.Millisecond, "members did not converge: %v", last)
		idx, _, _ := srvs[0].Hash(ctx)
		require.Greater(t, idx, uint64(1_000_000_000), "n1 converged on the leader's index")
		require.True(t, staleHas(ctx, srvs[0], "after/19"))
		// And stays there across a restart (its own seed, lower, is not
		// taken for its latest snapshot).
		ms[0].stop(t)
		putN(t, ctx, leader, "while-down/", 5)
		srvs[0] = ms[0].start(t)
		require.Eventually(t, func() bool { return staleHas(ctx, srvs[0], "while-down/4") }, 30*time.Second, 50*time.Millisecond)
		require.True(t, staleHas(ctx, srvs[0], "after/19"))
	})

	t.Run("one member above the leader is refused, not counted", func(t *testing.T) {
		ctx := ctxT(t, 90*time.Second)
		ms := seedMembers(t, backup, []uint64{1_000_000_000, 1000, 1000})
		n2, n3 := ms[1].start(t), ms[2].start(t)
		leader := waitLeaderAmong(t, n2, n3)
		putN(t, ctx, leader, "before-n1/", 5)
		n1 := ms[0].start(t)
		putN(t, ctx, leader, "with-n1/", 5)
		// Stop the other member of the leader's seed: n1 is the only
		// other voter.
		other := 2
		if leader == n3 {
			other = 1
		}
		ms[other].stop(t)
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := leader.Put(wctx, &concordv1.PutRequest{Key: []byte("two-of-three"), Value: []byte("v")})
		cancel()
		if err == nil {
			require.Eventually(t, func() bool { return staleHas(ctx, n1, "two-of-three") }, 10*time.Second, 50*time.Millisecond,
				"a write was acknowledged with n1 in its quorum, and n1 does not hold it")
		}
		require.Error(t, err, "a write was acknowledged by a quorum of members seeded at different indexes")
		require.False(t, staleHas(ctx, n1, "with-n1/4"), "n1 applied the leader's entries on top of a different seed")
		require.Eventually(t, func() bool { return strings.Contains(ms[0].logs.String(), "different history") }, 10*time.Second, 50*time.Millisecond,
			"n1 refused silently")
		// The leader backs off: it sent n1 its snapshot ~70 times a second
		// when n1 answered every one with success.
		logs := ms[0].logs.String()
		snaps := strings.Count(logs, "ignoring a snapshot") + strings.Count(logs, "refusing a snapshot")
		t.Logf("n1: %d refusals, %d snapshots sent to it", strings.Count(logs, "different history"), snaps)
		require.Less(t, snaps, 50, "the leader sends n1 its snapshot again and again")
	})
}

// A three-member cluster restored with the default bump goes on from the
// bumped index in everything that depends on it: a retry of a write made
// before the backup is answered from the remembered request IDs, a watch
// from the first new revision sees the new writes, a follower that missed
// writes catches up to the same state (Hash), and a backup of the restored
// cluster restores again, its bump added to the first; a backup whose index
// is already past MaxIndexBump cannot be bumped again, and sessions and lock tokens
// near that bound still work.
func TestRestoredClusterGoesOnAfterTheBump(t *testing.T) {
	ctx := ctxT(t, 120*time.Second)
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	old := c.Members[0].Daemon().Server()
	add := func() *concordv1.AddRequest {
		return &concordv1.AddRequest{Key: []byte("n"), Delta: 1, Meta: &concordv1.WriteMeta{ClientId: "c", RequestId: 1}}
	}
	first, err := old.Add(ctx, add())
	require.NoError(t, err)
	var backup bytes.Buffer
	backupIdx, err := old.Snapshot(ctx, &backup)
	require.NoError(t, err)

	const bump = 1_000_000_000
	ms := seedMembers(t, backup.Bytes(), []uint64{bump, bump, bump})
	var srvs []*server.Server
	for _, m := range ms {
		m.cfg.Raft.TrailingLogs = 5 // a follower that misses writes needs the snapshot
		srvs = append(srvs, m.start(t))
	}
	leader := waitLeaderAmong(t, srvs...)
	again, err := leader.Add(ctx, add())
	require.NoError(t, err)
	require.Equal(t, first.GetValue(), again.GetValue(), "a retry of a write made before the backup applied again")

	// A watch from the first revision of the restored cluster sees its writes.
	cl, err := client.New(ctx, client.Config{Endpoints: []string{leader.Config().ListenClient}})
	require.NoError(t, err)
	defer cl.Close()
	seed := backupIdx + bump
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	wch := cl.Watch(wctx, "w", client.WithRevision(seed+1))
	wseed := cl.Watch(wctx, "w", client.WithRevision(seed))
	put, err := cl.Put(ctx, "w", []byte("new"))
	require.NoError(t, err)
	require.Greater(t, put.Revision, seed)
	for got := false; !got; {
		select {
		case r, ok := <-wch:
			require.True(t, ok, "the watch ended")
			require.NoError(t, r.Err, "a watch from the first revision of the restored cluster")
			for _, ev := range r.Events {
				got = got || ev.Kv.ModRevision == put.Revision
			}
		case <-wctx.Done():
			t.Fatal("a watch from the first revision of the restored cluster saw nothing")
		}
	}

	// The restored index itself is below the first revision kept, as every
	// revision of the gap (etcd's restore marks its bumped revision
	// compacted too).
	select {
	case r := <-wseed:
		require.ErrorIs(t, r.Err, client.ErrCompacted, "a watch from the restored index")
	case <-wctx.Done():
		t.Fatal("a watch from the restored index got nothing")
	}

	// A follower that misses writes, and a log compacted meanwhile.
	f := 0
	for i, s := range srvs {
		if s != leader {
			f = i
		}
	}
	ms[f].stop(t)
	putN(t, ctx, leader, "missed/", 30)
	require.NoError(t, leader.CompactLog(ctx))
	srvs[f] = ms[f].start(t)
	var last []string
	require.Eventually(t, func() bool {
		last = last[:0]
		idx0, h0, _ := leader.Hash(ctx)
		same := true
		for i, s := range srvs {
			idx, h, err := s.Hash(ctx)
			last = append(last, fmt.Sprintf("n%d: %d %.12s %v", i+1, idx, h, err))
			same = same && err == nil && idx == idx0 && h == h0
		}
		return same
	}, 30*time.Second, 100*time.Millisecond, "members did not converge: %v", last)
	require.Contains(t, ms[f].logs.String(), "copied to local snapshot", "the follower caught up from the log, not by a snapshot")

	// A backup of the restored cluster restores again: the bumps add up.
	var second bytes.Buffer
	secondIdx, err := leader.Snapshot(ctx, &second)
	require.NoError(t, err)
	require.Greater(t, secondIdx, seed)
	sum, err := fsm.ForNewCluster(bytes.NewReader(second.Bytes()), io.Discard, fsm.NewClusterOptions{IndexBump: bump})
	require.NoError(t, err)
	require.Equal(t, secondIdx+bump, sum.Index)

	// At the bound: a cluster restored MaxIndexBump past the backup still
	// hands out sessions and tokens; a backup of it cannot be bumped again.
	top := restoreInto(t, second.Bytes(), fsm.NewClusterOptions{IndexBump: fsm.MaxIndexBump}, c.Members[0].Cfg.Raft, 0)
	tcl, err := client.New(ctx, client.Config{Endpoints: []string{top.Config().ListenClient}})
	require.NoError(t, err)
	defer tcl.Close()
	m := concurrency.NewMutex(session(t, tcl, 30*time.Second), "top")
	require.NoError(t, m.Lock(ctx))
	require.Greater(t, m.Token(), uint64(fsm.MaxIndexBump))
	var third bytes.Buffer
	_, err = top.Snapshot(ctx, &third)
	require.NoError(t, err)
	_, err = fsm.ForNewCluster(bytes.NewReader(third.Bytes()), io.Discard, fsm.NewClusterOptions{IndexBump: bump})
	require.ErrorIs(t, err, fsm.ErrIndexBump)
	_, err = fsm.ForNewCluster(bytes.NewReader(third.Bytes()), io.Discard, fsm.NewClusterOptions{})
	require.NoError(t, err, "a bump of 0 keeps the backup's index")
}

// Every Raft log store takes a log that starts a billion entries up, and a
// member restored there restarts with its writes.
func TestRestoreBumpOnEveryLogStore(t *testing.T) {
	backup := smallBackup(t)
	for _, store := range []string{"seglog", "bolt", "wal"} {
		t.Run(store, func(t *testing.T) {
			ctx := ctxT(t, 60*time.Second)
			base := t.TempDir()
			ip := "127.0.0.44"
			peer := net.JoinHostPort(ip, strconv.Itoa(testcluster.FreePort(t, ip)))
			m := &seededMember{logs: &syncBuffer{}, cfg: config.Server{
				Name: "r1", DataDir: filepath.Join(base, "r1"),
				ListenClient: net.JoinHostPort(ip, strconv.Itoa(testcluster.FreePort(t, ip))),
				ListenPeer:   peer, AdvertisePeer: peer, InitialCluster: []config.Peer{{Name: "r1", Addr: peer}},
				Raft:            config.Raft{HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond, LogStore: store, TrailingLogs: 5, SnapshotThreshold: 20},
				ShutdownTimeout: 5 * time.Second,
			}}
			var fresh bytes.Buffer
			sum, err := fsm.ForNewCluster(bytes.NewReader(backup), &fresh, fsm.NewClusterOptions{IndexBump: 1_000_000_000})
			require.NoError(t, err)
			require.NoError(t, server.SeedMember(m.cfg.DataDir, "r1", server.NewSeed(sum.Index, fresh.Bytes()), func(raftDir string) error {
				return raftnode.SeedFromSnapshot(raftDir, store, sum.Index, []raftnode.Server{{ID: "r1", Addr: peer, Voter: true}}, &fresh, nil)
			}))
			srv := waitLeaderAmong(t, m.start(t))
			putN(t, ctx, srv, "after/", 50)
			idx, h, err := srv.Hash(ctx)
			require.NoError(t, err)
			require.Greater(t, idx, sum.Index)
			m.stop(t)
			srv = waitLeaderAmong(t, m.start(t))
			require.Eventually(t, func() bool {
				i2, h2, err := srv.Hash(ctx)
				return err == nil && i2 >= idx && (i2 > idx || h2 == h)
			}, 20*time.Second, 50*time.Millisecond)
			require.True(t, staleHas(ctx, srv, "after/49"))
			require.True(t, staleHas(ctx, srv, "backup/4"))
		})
	}
}
