package server_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
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

// A backup restored into a new cluster (the calls of `concord snapshot
// restore`), started an hour later (ClockOffset), past a sweep of remembered
// request IDs: a retry of a write made before the backup is answered, not
// applied again. The new cluster's first term equalled the old one's last,
// the elapsed clock jumped by the hour, and the add applied twice.
func TestRetryAfterSnapshotRestoreAppliesOnce(t *testing.T) {
	ctx := context.Background()
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	old := c.Members[0].Daemon().Server()
	// A fresh request each time: the server takes the meta off the one it
	// is given.
	add := func() *concordv1.AddRequest {
		return &concordv1.AddRequest{Key: []byte("n"), Delta: 1, Meta: &concordv1.WriteMeta{ClientId: "c", RequestId: 1}}
	}
	first, err := old.Add(ctx, add())
	require.NoError(t, err)
	st, _ := old.Status(ctx)
	var backup bytes.Buffer
	_, err = old.Snapshot(ctx, &backup)
	require.NoError(t, err)

	// Without a bump, and with the default of `concord snapshot restore`.
	for _, bump := range []uint64{0, 1_000_000_000} {
		t.Run(fmt.Sprint("bump-", bump), func(t *testing.T) {
			srv := restoreInto(t, backup.Bytes(), fsm.NewClusterOptions{IndexBump: bump}, c.Members[0].Cfg.Raft, time.Hour)
			nst, _ := srv.Status(ctx)
			t.Logf("old cluster term %d, restored cluster term %d", st.GetTerm(), nst.GetTerm())
			// A new cluster: named anew, not with the backup's ID.
			require.True(t, fsm.ValidClusterID(st.GetClusterId()), "the old cluster is named")
			require.Eventually(t, func() bool { return fsm.ValidClusterID(srv.FSM().ClusterID()) }, 10*time.Second, 20*time.Millisecond)
			require.NotEqual(t, st.GetClusterId(), srv.FSM().ClusterID())
			// Ordinary traffic carries the index past a sweep (every 4096).
			var wg sync.WaitGroup
			for g := 0; g < 16; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 4200/16; i++ {
						_, err := srv.Put(ctx, &concordv1.PutRequest{Key: []byte("k"), Value: []byte("v")})
						require.NoError(t, err)
					}
				}()
			}
			wg.Wait()
			again, err := srv.Add(ctx, add())
			require.NoError(t, err)
			require.Equal(t, first.GetValue(), again.GetValue(), "the retried add was applied a second time")
		})
	}
}

// restoreInto does what `concord snapshot restore --bump-index bump` and
// `concord server` do with a backup: a new single-member cluster, started
// offset later on its clock, is ready when it returns.
func restoreInto(t *testing.T, backup []byte, opts fsm.NewClusterOptions, rc config.Raft, offset time.Duration) *server.Server {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "r1")
	ip := "127.0.0.9"
	peer := net.JoinHostPort(ip, strconv.Itoa(testcluster.FreePort(t, ip)))
	var fresh bytes.Buffer
	sum, err := fsm.ForNewCluster(bytes.NewReader(backup), &fresh, opts)
	idx := sum.Index
	require.NoError(t, err)
	require.NoError(t, server.SeedMember(dir, "r1", server.NewSeed(idx, fresh.Bytes()), func(raftDir string) error {
		return raftnode.SeedFromSnapshot(raftDir, "seglog", idx, []raftnode.Server{{ID: "r1", Addr: peer, Voter: true}}, &fresh, nil)
	}))
	cfg := config.Server{Name: "r1", DataDir: dir, ListenClient: net.JoinHostPort(ip, strconv.Itoa(testcluster.FreePort(t, ip))),
		ListenPeer: peer, AdvertisePeer: peer, InitialCluster: []config.Peer{{Name: "r1", Addr: peer}},
		Raft: rc, ShutdownTimeout: 5 * time.Second, ClockOffset: offset, ClockRate: 1}
	d, err := daemon.Start(ctx, cfg, daemon.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Stop(ctx) })
	srv := d.Server()
	require.Eventually(t, func() bool { return srv.Barrier(ctx) == nil }, 10*time.Second, 50*time.Millisecond)
	return srv
}

// The old cluster goes on after a backup: it grants locks, writes keys and
// hands out segments and sequence values past the backup. A cluster
// restored from that backup used to start from the backup's index and
// values and hand the same tokens, segments and sequence values out again:
// a holder of the old cluster, still running, could write past a new
// holder's fence, a watch resuming from a revision of the gap read the new
// cluster's different events as if they followed, and IDs repeated.
// --bump-index and --bump-ids start the new cluster above all of them;
// 0 shows the holes they close.
func TestRestoreBumpsTheIndexPastTheOldCluster(t *testing.T) {
	ctx := ctxT(t, 60*time.Second)
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	cl := c.Client()
	s := session(t, cl, 30*time.Second)
	kept := concurrency.NewMutex(s, "kept")
	require.NoError(t, kept.Lock(ctx))
	_, err := cl.CreateTag(ctx, "orders", 1, 1)
	require.NoError(t, err)
	_, _, err = cl.AllocSegment(ctx, "orders", 10)
	require.NoError(t, err)
	_, _, err = cl.NextSequence(ctx, "invoices", 5)
	require.NoError(t, err)
	var backup bytes.Buffer
	_, err = c.Members[0].Daemon().Server().Snapshot(ctx, &backup)
	require.NoError(t, err)

	_, oldSegEnd, err := cl.AllocSegment(ctx, "orders", 100)
	require.NoError(t, err)
	_, oldSeq, err := cl.NextSequence(ctx, "invoices", 50)
	require.NoError(t, err)
	for i := range 50 { // the old cluster's traffic after the backup
		_, err := cl.Put(ctx, "k", []byte(fmt.Sprint(i)))
		require.NoError(t, err)
	}
	later := concurrency.NewMutex(s, "moved-on")
	require.NoError(t, later.Lock(ctx))
	put, err := cl.Put(ctx, "k", []byte("old cluster, after the backup"))
	require.NoError(t, err)
	oldToken, oldRev := later.Token(), put.Revision

	for _, bump := range []uint64{0, 1_000_000_000} {
		t.Run(fmt.Sprint("bump-", bump), func(t *testing.T) {
			idBump := int64(bump / 1000) // a million: above the 150 values handed out since
			srv := restoreInto(t, backup.Bytes(), fsm.NewClusterOptions{IndexBump: bump, IDBump: idBump}, c.Members[0].Cfg.Raft, 0)
			ncl, err := client.New(ctx, client.Config{Endpoints: []string{srv.Config().ListenClient}})
			require.NoError(t, err)
			defer ncl.Close()
			// The backup's hold is kept, under its token.
			info, _, err := ncl.InspectLock(ctx, "kept")
			require.NoError(t, err)
			require.Len(t, info.GetHolders(), 1)
			require.Equal(t, kept.Token(), info.GetHolders()[0].GetToken())

			m := concurrency.NewMutex(session(t, ncl, 30*time.Second), "moved-on")
			require.NoError(t, m.Lock(ctx))
			segStart, _, err := ncl.AllocSegment(ctx, "orders", 10)
			require.NoError(t, err)
			seq, _, err := ncl.NextSequence(ctx, "invoices", 1)
			require.NoError(t, err)
			if bump == 0 {
				require.LessOrEqual(t, m.Token(), oldToken, "without a bump the restored cluster hands out the old cluster's tokens again")
				require.Less(t, segStart, oldSegEnd, "without a bump segments repeat")
				require.LessOrEqual(t, seq, oldSeq, "without a bump sequence values repeat")
				return
			}
			require.GreaterOrEqual(t, segStart, oldSegEnd, "a segment of the restored cluster overlaps one the old cluster handed out")
			require.Greater(t, seq, oldSeq, "a sequence value of the restored cluster was handed out by the old one")
			require.Greater(t, m.Token(), oldToken, "a token of the restored cluster is not above the old cluster's")
			require.Greater(t, m.Token(), bump)
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			select {
			case r := <-ncl.Watch(wctx, "k", client.WithRevision(oldRev)):
				require.ErrorIs(t, r.Err, client.ErrCompacted, "a watch from a revision of the gap")
			case <-wctx.Done():
				t.Fatal("a watch from a revision of the gap got nothing")
			}
		})
	}
}
