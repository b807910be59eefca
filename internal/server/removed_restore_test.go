package server_test

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/internal/daemon"
	"github.com/concord-dev/concord/internal/fsm"
	"github.com/concord-dev/concord/internal/raftnode"
	"github.com/concord-dev/concord/internal/server"
	"github.com/concord-dev/concord/internal/testcluster"
)

// A cluster restored from a backup is another history, even on the same
// addresses and IDs: a member of the old cluster, started on its old data
// dir next to it, is not told that it was removed by a configuration that
// never removed it. The restored members' seed tells the histories apart.
func TestRemovalCheckIgnoresARestoredCluster(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	cfg4, d4 := startFourth(t, c)
	ctx := ctxT(t, 60*time.Second)
	var backup bytes.Buffer
	_, err := c.Members[0].Daemon().Server().Snapshot(ctx, &backup)
	require.NoError(t, err)
	require.NoError(t, d4.Stop(ctxT(t, 10*time.Second)))
	c.Stop(0)

	// n1 restored from the backup, alone, at its address: `concord
	// snapshot restore` then `concord server`.
	m := c.Members[0]
	dir := filepath.Join(t.TempDir(), "n1-restored")
	var fresh bytes.Buffer
	sum, err := fsm.ForNewCluster(bytes.NewReader(backup.Bytes()), &fresh, fsm.NewClusterOptions{})
	require.NoError(t, err)
	require.NoError(t, server.SeedMember(dir, m.Name, server.NewSeed(sum.Index, fresh.Bytes()), func(raftDir string) error {
		return raftnode.SeedFromSnapshot(raftDir, "seglog", sum.Index, []raftnode.Server{{ID: m.Name, Addr: m.Cfg.AdvertisePeer, Voter: true}}, &fresh, nil)
	}))
	m.Cfg.DataDir = dir
	c.Restart(0)
	c.WaitLeader(10 * time.Second)

	cfg4.Join = nil
	d, err := daemon.Start(ctx, cfg4, daemon.Options{})
	require.NoError(t, err)
	t.Cleanup(d.Kill)
	require.False(t, d.Server().AskRemoved(ctx))
	select {
	case err := <-d.Failed():
		t.Fatalf("the old cluster's member took the restored cluster for its own: %v", err)
	case <-time.After(3 * server.RemovedCheckInterval):
	}
}
