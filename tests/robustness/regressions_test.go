package robustness

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/tests/robustness/cluster"
)

// The tests in this file reproduce bugs the harness found. They failed
// before the fixes named in each test and are kept as regression tests.

func startCluster(t *testing.T, size int) (context.Context, *cluster.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	c, err := cluster.Start(ctx, cluster.Options{Binary: binary(t), Size: size, Dir: t.TempDir(), Logf: t.Logf})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return ctx, c
}

// TestRegressionSDKFailsOverFromUnresponsiveLeader (fixed: per-attempt
// timeouts, HTTP/2 pings, a keep-alive watchdog in the SDK): when the leader stops
// answering without closing its connections (SIGSTOP, a long GC or VM
// pause, a blackholed client network), the cluster elects a new leader
// within a second, but an SDK client keeps sending every call to the old
// one: an attempt that runs into the call's deadline is neither retried
// elsewhere nor followed by a leader refresh, so every call times out until
// the old leader answers again. The keep-alive stream is stuck the same way,
// so the client's sessions expire although a healthy majority is serving.
func TestRegressionSDKFailsOverFromUnresponsiveLeader(t *testing.T) {
	ctx, c := startCluster(t, 3)
	old := c.Leader(ctx)
	require.GreaterOrEqual(t, old, 0)
	// The leader's endpoint first: the client talks to it from the start.
	eps := []string{c.Member(old).ClientAddr}
	for i := range 3 {
		if i != old {
			eps = append(eps, c.Member(i).ClientAddr)
		}
	}
	cl, err := client.New(ctx, client.Config{Endpoints: eps})
	require.NoError(t, err)
	defer cl.Close()
	_, err = cl.Put(ctx, "k", []byte("before"))
	require.NoError(t, err)
	sess, err := cl.NewSession(ctx, client.WithTTL(3*time.Second))
	require.NoError(t, err)

	require.NoError(t, c.Pause(old))
	defer func() { _ = c.Resume(old) }()
	_, err = c.WaitLeader(ctx, 20*time.Second)
	require.NoError(t, err, "the majority elects a new leader")

	// The new leader is ready: a write must get through within a few
	// attempts' worth of time.
	for i := range 3 {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = cl.Put(pctx, "k", []byte(fmt.Sprint("after-", i)))
		cancel()
		if err == nil {
			break
		}
		t.Logf("put %d with a ready leader elsewhere: %v", i, err)
	}
	require.NoError(t, err, "no write got through in 15s although a new leader was ready")

	// And a session kept alive by the SDK outlives a pause of the old
	// leader longer than its TTL.
	select {
	case <-sess.Done():
		t.Fatalf("the SDK lost its session while a ready leader was serving: %v", sess.Err())
	default:
	}
}

// TestRegressionDedupeSurvivesLeaderClockJump (fixed: dedupe records age on
// an elapsed clock counted within a leader's term): the state machine
// times its deduplication records with the leader's clock (the highest
// stamp any leader put on a command). A leader whose clock runs more than
// DedupeIdleNanos (15 minutes) ahead moves that time forward at once, and
// the next housekeeping sweep (every 4096 log entries) forgets every client
// that has not written since: a write retried a few seconds later is
// applied a second time, against the documented guarantee that a retry
// within 30 seconds is recognised.
func TestRegressionDedupeSurvivesLeaderClockJump(t *testing.T) {
	ctx, c := startCluster(t, 3)
	raw := concordv1connect.NewKVClient(http.DefaultClient, "http://"+c.Endpoints()[0])
	write := func() uint64 {
		t.Helper()
		var rev uint64
		require.NoError(t, cluster.Poll(ctx, 20*time.Second, 100*time.Millisecond, func() error {
			resp, err := raw.Put(ctx, connect.NewRequest(&concordv1.PutRequest{Key: []byte("once"), Value: []byte("1"),
				Meta: &concordv1.WriteMeta{ClientId: "retrying-client", RequestId: 1}}))
			if err != nil {
				return err
			}
			rev = resp.Msg.GetHeader().GetRevision()
			return nil
		}))
		return rev
	}
	first := write()
	require.Equal(t, first, write(), "an immediate retry returns the first result")

	// The leader restarts with its clock an hour ahead and leads again.
	leader := c.Leader(ctx)
	c.SetClock(leader, cluster.Clock{Offset: time.Hour, Rate: 1})
	require.NoError(t, c.Kill(leader))
	require.NoError(t, c.Restart(ctx, leader))
	require.NoError(t, c.Do(ctx, 30*time.Second, 5*time.Second, func(ctx context.Context, cl *client.Client) error {
		_, err := cl.TransferLeader(ctx, c.Member(leader).Name)
		return err
	}))

	// Other clients write until the log crosses a sweep boundary
	// (4096 entries).
	cl, err := c.NewClient(ctx)
	require.NoError(t, err)
	defer cl.Close()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 600 {
				_, _ = cl.Put(ctx, fmt.Sprintf("fill/%d/%d", g, i), []byte("x"))
			}
		}()
	}
	wg.Wait()

	again := write()
	require.Equal(t, first, again, "the retry of request 1, seconds after the first write, was applied again at revision %d", again)
}

// TestRegressionWatchFailsOverPastCompactedMember (fixed: the SDK tries the
// other members before reporting ErrCompacted): a member that restarts keeps
// watch history only from its latest snapshot on. When an SDK watch fails
// over to such a member (here: the leader it watched through dies, and the
// next endpoint in its list is the restarted follower), the watch ends with
// ErrCompacted, although the other members still hold every event since the
// watch's position: the SDK does not try another member, against its
// promise that a watch resumes on another member without losing an event.
func TestRegressionWatchFailsOverPastCompactedMember(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{Binary: binary(t), Size: 3, Dir: t.TempDir(), Logf: t.Logf,
		SnapshotThreshold: 64, SnapshotInterval: 200 * time.Millisecond, TrailingLogs: 16})
	require.NoError(t, err)
	defer c.Close()
	leader := c.Leader(ctx)
	require.GreaterOrEqual(t, leader, 0)
	follower, other := (leader+1)%3, (leader+2)%3
	// The endpoint after the leader's is the follower that will restart.
	cl, err := client.New(ctx, client.Config{Endpoints: []string{
		c.Member(leader).ClientAddr, c.Member(follower).ClientAddr, c.Member(other).ClientAddr}})
	require.NoError(t, err)
	defer cl.Close()

	first, err := cl.Put(ctx, "quiet/a", []byte("1"))
	require.NoError(t, err)
	watch := cl.Watch(ctx, "quiet/", client.WithPrefix(), client.WithRevision(first.Revision))
	r := <-watch
	require.NoError(t, r.Err)
	// Traffic elsewhere moves the snapshots past the watch's position.
	for i := range 300 {
		_, err := cl.Put(ctx, fmt.Sprintf("busy/%d", i), []byte("x"))
		require.NoError(t, err)
	}
	require.NoError(t, c.Kill(follower))
	require.NoError(t, c.Restart(ctx, follower))
	require.NoError(t, c.Kill(leader))
	_, err = c.WaitLeader(ctx, 20*time.Second)
	require.NoError(t, err)

	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	next, err := cl.Put(wctx, "quiet/b", []byte("2"))
	require.NoError(t, err)
	select {
	case r := <-watch:
		require.NoError(t, r.Err, "the watch gave up although member %s still holds its history", c.Member(other).Name)
		require.Len(t, r.Events, 1)
		require.Equal(t, next.Revision, r.Events[0].GetKv().GetModRevision())
	case <-wctx.Done():
		t.Fatal("the watch delivered nothing")
	}
}
