package server_test

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
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

	dir := filepath.Join(t.TempDir(), "r1")
	ip := "127.0.0.9"
	peer := net.JoinHostPort(ip, strconv.Itoa(testcluster.FreePort(t, ip)))
	var fresh bytes.Buffer
	idx, err := fsm.ForNewCluster(&backup, &fresh)
	require.NoError(t, err)
	require.NoError(t, server.SeedMember(dir, "r1", func(raftDir string) error {
		return raftnode.SeedFromSnapshot(raftDir, "seglog", idx, []raftnode.Server{{ID: "r1", Addr: peer, Voter: true}}, &fresh, nil)
	}))
	cfg := config.Server{Name: "r1", DataDir: dir, ListenClient: net.JoinHostPort(ip, strconv.Itoa(testcluster.FreePort(t, ip))),
		ListenPeer: peer, AdvertisePeer: peer, InitialCluster: []config.Peer{{Name: "r1", Addr: peer}},
		Raft: c.Members[0].Cfg.Raft, ShutdownTimeout: 5 * time.Second, ClockOffset: time.Hour, ClockRate: 1}
	d, err := daemon.Start(ctx, cfg, daemon.Options{})
	require.NoError(t, err)
	defer d.Stop(ctx)
	srv := d.Server()
	require.Eventually(t, func() bool { return srv.Barrier(ctx) == nil }, 10*time.Second, 50*time.Millisecond)
	nst, _ := srv.Status(ctx)
	t.Logf("old cluster term %d, restored cluster term %d", st.GetTerm(), nst.GetTerm())
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
}
