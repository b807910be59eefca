package server_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/daemon"
	"github.com/concord-dev/concord/internal/fsm"
	"github.com/concord-dev/concord/internal/testcluster"
)

// A single member restored from a backup that then grows by --join: the
// joined members have no seed, which confirms the restored member's at
// every start, and nothing stops.
func TestRestoredMemberThatGrowsByJoinKeepsRunning(t *testing.T) {
	ctx := ctxT(t, 90*time.Second)
	opts := fsm.NewClusterOptions{IndexBump: 1_000_000_000, IDBump: 1_000_000}
	ms := seedMembersWith(t, tagBackup(t), []fsm.NewClusterOptions{opts})
	n1 := ms[0]
	leader := n1.start(t)
	waitLog(t, n1, "seed confirmed by every voter")
	waitLeaderAmong(t, leader)

	ip := strings.Split(n1.cfg.ListenClient, ":")[0]
	var joined []*daemon.Daemon
	for _, name := range []string{"j2", "j3"} {
		peerAddr := fmt.Sprintf("%s:%d", ip, testcluster.FreePort(t, ip))
		_, err := leader.AddMember(ctx, &concordv1.AddMemberRequest{Name: name, PeerAddr: peerAddr})
		require.NoError(t, err)
		cfg := config.Server{
			Name: name, DataDir: filepath.Join(t.TempDir(), name),
			ListenClient: fmt.Sprintf("%s:%d", ip, testcluster.FreePort(t, ip)), ListenPeer: peerAddr, AdvertisePeer: peerAddr,
			Join: []string{n1.cfg.ListenClient}, Raft: n1.cfg.Raft, Limits: n1.cfg.Limits, ShutdownTimeout: 5 * time.Second,
		}
		d, err := daemon.Start(ctx, cfg, daemon.Options{})
		require.NoError(t, err)
		t.Cleanup(func() { _ = d.Stop(context.Background()) })
		joined = append(joined, d)
	}
	putN(t, ctx, leader, "grown/", 5)
	for _, d := range joined {
		require.Eventually(t, func() bool { return staleHas(ctx, d.Server(), "grown/4") }, 20*time.Second, 50*time.Millisecond)
	}

	require.Eventually(t, func() bool {
		st, err := leader.Status(ctx)
		if err != nil {
			return false
		}
		followers := 0
		for _, m := range st.GetMembers() {
			if m.GetRole() == "follower" {
				followers++
			}
		}
		return followers == 2
	}, 30*time.Second, 100*time.Millisecond, "the joined members were never promoted")

	// The restored member restarts and asks the joined voters: their empty
	// seeds confirm its own.
	n1.stop(t)
	srv := n1.start(t)
	require.Eventually(t, func() bool { return strings.Count(n1.logs.String(), "seed confirmed by every voter") == 2 },
		30*time.Second, 50*time.Millisecond, "the restarted member did not confirm its seed with the joined voters")
	leader = waitLeaderAmong(t, srv, joined[0].Server(), joined[1].Server())
	putN(t, ctx, leader, "restarted/", 5)
	require.Eventually(t, func() bool { return staleHas(ctx, srv, "restarted/4") }, 20*time.Second, 50*time.Millisecond)
	require.Contains(t, n1.logs.String(), "voters=2", "the restarted member asked both joined voters")
	noFailure(t, n1)
	for _, d := range joined {
		select {
		case err := <-d.Failed():
			t.Fatalf("a joined member failed: %v", err)
		default:
		}
	}
}
