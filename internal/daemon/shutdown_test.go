package daemon_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/testcluster"
)

// A leader that can hand leadership to nobody (its voters are cut off)
// still stops gracefully within --shutdown-timeout: the handover takes a
// share of the budget, not all of it, and the drain that follows (an SDK
// client's framed batch connection, its HTTP/2 connection) gets the rest.
// Before, the handover could take min(5 s, the whole budget), and Stop
// failed (concord server exited non-zero after SIGTERM); and Raft's
// shutdown then waited some 10 s more for the silent peers.
func TestStopOfACutOffLeaderLeavesTimeToDrain(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Configure: func(_ int, cfg *config.Server) {
		cfg.ShutdownTimeout = 3 * time.Second
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Member v gets a leader lease (half the heartbeat timeout) that
	// outlasts the test, and an election timeout (which bounds Raft's own
	// transfer attempt) longer than the budget; then it is made leader.
	leader := c.WaitLeader(5 * time.Second)
	v := (leader + 1) % len(c.Members)
	c.Stop(v)
	c.Members[v].Cfg.Raft.HeartbeatTimeout = 30 * time.Second
	c.Members[v].Cfg.Raft.ElectionTimeout = 30 * time.Second
	c.Restart(v)
	require.Eventually(t, func() bool {
		_, err := c.Members[leader].Daemon().Server().TransferLeader(ctx, &concordv1.TransferLeaderRequest{Name: c.Members[v].Name})
		return err == nil && c.Leader() == v
	}, 20*time.Second, 50*time.Millisecond)

	cl := c.Client(v)
	_, err := cl.Put(ctx, "k", []byte("v"))
	require.NoError(t, err)
	c.Isolate(v)
	require.True(t, c.Members[v].Daemon().Server().IsLeader(), "the cut-off leader still leads when its stop begins")
	start := time.Now()
	c.Stop(v) // fails if the stop ran out its time
	// Raft's own shutdown is not bounded by the budget: it waits for its
	// replication goroutines, which waited on the silent peers for the
	// transport's timeout (10 s) when their connections stayed open.
	require.Less(t, time.Since(start), c.Members[v].Cfg.ShutdownTimeout+2*time.Second,
		"--shutdown-timeout bounds a graceful stop, Raft's shutdown included")
}
