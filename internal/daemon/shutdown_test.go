package daemon_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/client"
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
	c, v := cutOffLeader(t)
	start := time.Now()
	c.Stop(v) // fails if the stop ran out its time
	// Raft's own shutdown is not bounded by the budget: it waits for its
	// replication goroutines, which waited on the silent peers for the
	// transport's timeout (10 s) when their connections stayed open.
	require.Less(t, time.Since(start), c.Members[v].Cfg.ShutdownTimeout+2*time.Second,
		"--shutdown-timeout bounds a graceful stop, Raft's shutdown included")
}

// cutOffLeader starts a cluster whose leader v, with an SDK client's
// connections open, is cut off from its voters and still leads: its leader
// lease (half the heartbeat timeout) outlasts the test, and its election
// timeout (which bounds Raft's own transfer attempt) the stop's budget of
// 3 s.
func cutOffLeader(t *testing.T) (*testcluster.Cluster, int) {
	c := testcluster.Start(t, testcluster.Options{Configure: func(_ int, cfg *config.Server) {
		cfg.ShutdownTimeout = 3 * time.Second
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
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
	return c, v
}

// A write the leader proposed and cannot commit (its voters are cut off)
// when it stops gracefully is answered UNKNOWN_OUTCOME, as on the unary
// path, on the SDK's batch stream: it was answered with the bare
// cancellation of the stop, which the SDK returned to the caller as
// context.Canceled (a caller that did not cancel, and was not told that the
// write may have been applied).
func TestStopOfALeaderAnswersItsPendingBatchWriteUnknownOutcome(t *testing.T) {
	c, v := cutOffLeader(t)
	addr := c.Members[v].Cfg.ListenClient
	cl := c.Client(v)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	got := make(chan error, 1)
	go func() {
		_, err := cl.Put(ctx, "pending", []byte("v"))
		got <- err
	}()
	// The put is in v's log and not committed.
	require.Eventually(t, func() bool {
		return gauge(t, addr, "concord_raft_last_log_index") > gauge(t, addr, "concord_raft_commit_index")
	}, 10*time.Second, 10*time.Millisecond)
	c.Stop(v)
	err := <-got
	require.ErrorIs(t, err, client.ErrUnknownOutcome)
}

// gauge reads a metric without labels from addr's /metrics.
func gauge(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
