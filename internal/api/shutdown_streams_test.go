package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/api/batchwire"
	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/faultnet"
	"github.com/concord-dev/concord/internal/testcluster"
)

// A member that shuts down ends its open streams with SHUTTING_DOWN
// (Unavailable), the error a gRPC or HTTP client resumes on another member
// on, never with a clean end, which says the stream had nothing more to
// send: a watch would look finished and a queued acquire answered.
func TestShutdownEndsStreamsWithShuttingDown(t *testing.T) {
	c, cl := single(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := "http://" + c.Endpoints()[0]
	kvc := concordv1connect.NewKVClient(http2Client(), base)
	lc := concordv1connect.NewLockClient(http2Client(), base)

	watch, err := kvc.Watch(ctx, connect.NewRequest(&concordv1.WatchRequest{Key: []byte("w/"), Prefix: true}))
	require.NoError(t, err)
	require.True(t, watch.Receive(), "the opening header: %v", watch.Err())

	sess, err := cl.NewSession(ctx, client.WithTTL(30*time.Second))
	require.NoError(t, err)
	claim := []*client.LockClaim{{Name: "l", Kind: client.KindMutex}}
	held, err := lc.Acquire(ctx, connect.NewRequest(&concordv1.AcquireRequest{Claims: claim, Session: sess.ID(), Owner: "a", Wait: true}))
	require.NoError(t, err)
	require.True(t, held.Receive(), "%v", held.Err())
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, held.Msg().GetState())
	queued, err := lc.Acquire(ctx, connect.NewRequest(&concordv1.AcquireRequest{Claims: claim, Session: sess.ID(), Owner: "b", Wait: true}))
	require.NoError(t, err)
	require.True(t, queued.Receive(), "%v", queued.Err())
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_QUEUED, queued.Msg().GetState())

	c.Stop(0)
	for name, s := range map[string]interface {
		Receive() bool
		Err() error
	}{"watch": watch, "holder": held, "waiter": queued} {
		for s.Receive() {
		}
		err := s.Err()
		require.Error(t, err, "%s: the stream ended cleanly at shutdown", name)
		var ce *connect.Error
		require.True(t, errors.As(err, &ce), "%s: %v", name, err)
		require.Equal(t, connect.CodeUnavailable, ce.Code(), "%s: %v", name, err)
		require.Equal(t, "SHUTTING_DOWN", errs.ReasonOf(errs.FromConnect(err), ""), "%s: %v", name, err)
	}
}

// A keep-alive stream waits for the client's next keep-alive (a third of
// the session's TTL away): a graceful stop must end it rather than wait for
// it, or every member with an SDK client that holds a session ran out its
// --shutdown-timeout and failed (concord server exited non-zero).
func TestStopEndsAnIdleKeepAliveStream(t *testing.T) {
	c, cl := single(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addr := c.Endpoints()[0]
	_, err := cl.NewSession(ctx, client.WithTTL(30*time.Second))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return metric(t, addr, `concord_api_open_streams{method="Session/KeepAlive"} 1`) },
		10*time.Second, 10*time.Millisecond)
	c.Stop(0) // fails if the stop ran out its time (context deadline exceeded)
}

// The SDK's batch stream on Connect (a member with --disable-framed-batch,
// or a client with DisableFramedBatch) waits for the client's next message
// like a keep-alive stream: a graceful stop ends it too.
func TestStopEndsAnIdleConnectBatchStream(t *testing.T) {
	c, cl := single(t, func(cfg *config.Server) { cfg.DisableFramedBatch = true })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := cl.Put(ctx, "k", []byte("v"))
	require.NoError(t, err)
	require.True(t, metric(t, c.Endpoints()[0], `concord_api_open_streams{method="KV/Batch"} 1`))
	c.Stop(0) // fails if the stop ran out its time (context deadline exceeded)
}

// An SDK client follows a graceful stop of the leader, on which it watches
// and waits (the SDK uses the leader): the watch resumes on another member
// without a gap, the queued acquire is granted there, and the stopped
// member restarts on its data dir with what the others applied.
func TestSDKStreamsOutliveAGracefulStopAndTheMemberRestarts(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	victim := c.WaitLeader(5 * time.Second)
	cl := c.Client()
	// The watch names its start: a watch "from now" opens its stream in
	// the background, and a Put that is applied first is before it (CI
	// once waited out the test's minute for that event).
	before, err := cl.Put(ctx, "before", []byte("x"))
	require.NoError(t, err)
	watch := cl.Watch(ctx, "g/", client.WithPrefix(), client.WithRevision(before.Revision+1))
	_, err = cl.Put(ctx, "g/1", []byte("a"))
	require.NoError(t, err)
	resp := <-watch
	require.NoError(t, resp.Err)
	require.Len(t, resp.Events, 1)

	mutex := []*client.LockClaim{{Name: "g", Kind: client.KindMutex}}
	holder, err := cl.NewSession(ctx, client.WithTTL(10*time.Second))
	require.NoError(t, err)
	g, err := cl.AcquireLocks(ctx, holder, "h", mutex, client.AcquireOptions{})
	require.NoError(t, err)
	waiter, err := cl.NewSession(ctx, client.WithTTL(10*time.Second))
	require.NoError(t, err)
	granted := make(chan error, 1)
	queued := make(chan struct{})
	go func() {
		_, err := cl.AcquireLocks(ctx, waiter, "w", mutex, client.AcquireOptions{Wait: true, OnQueued: func(int64) { close(queued) }})
		granted <- err
	}()
	<-queued

	c.Stop(victim)
	_, err = cl.Put(ctx, "g/2", []byte("b"))
	require.NoError(t, err)
	resp = <-watch
	require.NoError(t, resp.Err)
	require.Len(t, resp.Events, 1, "the watch resumed after the stop")
	require.Equal(t, "g/2", string(resp.Events[0].GetKv().GetKey()))
	require.NoError(t, g.Release(ctx))
	require.NoError(t, <-granted, "the queued acquire followed its wait on another member")

	c.Restart(victim)
	c.WaitConverged(20 * time.Second)
	got, err := c.Client(victim).Get(ctx, "g/2", client.WithConsistency(client.Stale))
	require.NoError(t, err)
	require.Equal(t, "b", string(got.GetValue()))
}

// A write in flight on a framed batch connection when its member stops
// gracefully is answered, as on the unary path and the Connect stream
// (UNKNOWN_OUTCOME: the stop cut it on its way), and the member then
// ends the connection with a GoAway that says why, rather than closing it
// at once with the call unanswered.
func TestGracefulStopAnswersFramedCallsInFlight(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	leader := c.WaitLeader(5 * time.Second)
	f := (leader + 1) % len(c.Members)
	addr := c.Members[f].Cfg.ListenClient
	// (The member forwards writes of its own, its address for one.)
	proposed := func() string { return metricLine(t, addr, `concord_server_forwarded_total{kind="propose"}`) }
	before := proposed()
	// The follower's calls to the leader go unanswered (the leader's own
	// connections to it, Raft's, still pass): a write it forwards stays
	// on its way until the stop cuts it.
	c.Members[leader].Proxy.Set(c.Members[f].IP, faultnet.Link{Mode: faultnet.Blackhole})
	b := openRaw(t, addr)
	b.send(&concordv1.BatchCall{Id: 1, Request: &concordv1.BatchCall_Put{Put: &concordv1.PutRequest{Key: []byte("k"), Value: []byte("v")}}})
	require.Eventually(t, func() bool { return proposed() != before }, 10*time.Second, 10*time.Millisecond)

	c.Stop(f)
	res := b.results(1)[1]
	require.Equal(t, "UNKNOWN_OUTCOME", res.GetError().GetInfo().GetReason(), "%v", res)
	_, _, err := b.r.Next()
	require.ErrorIs(t, err, batchwire.ErrGoAway)
	require.Contains(t, err.Error(), "shutting down")
	_, _, err = b.r.Next()
	require.ErrorIs(t, err, io.EOF, "the member closes the connection after its goaway")
}

// metricLine returns the value of the metric series named line on addr,
// "" when it has none.
func metricLine(t *testing.T, addr, series string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return v
		}
	}
	return ""
}

// SDK writes that run while the leader stops gracefully each end in a
// success or ErrUnknownOutcome (the SDK lands the others on the new
// leader), never in a bare cancellation or a broken stream, and none
// hangs: on the framed batch transport and on the Connect stream.
func TestSDKWritesThroughAGracefulStopOfTheLeader(t *testing.T) {
	for _, framedOff := range []bool{false, true} {
		t.Run(fmt.Sprintf("DisableFramedBatch=%v", framedOff), func(t *testing.T) {
			c := testcluster.Start(t, testcluster.Options{})
			leader := c.WaitLeader(5 * time.Second)
			cl, err := client.New(context.Background(), client.Config{Endpoints: c.Endpoints(), DialTimeout: 10 * time.Second, DisableFramedBatch: framedOff})
			require.NoError(t, err)
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			_, err = cl.Put(ctx, "warm", []byte("up"))
			require.NoError(t, err)

			var (
				mu       sync.Mutex
				ok       []string
				unknown  int
				bad      []error
				stopping = make(chan struct{})
				wg       sync.WaitGroup
			)
			var started atomic.Int64
			for w := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					after := -1 // writes left once the stop is done
					for i := 0; after != 0; i++ {
						select {
						case <-stopping:
							if after < 0 {
								after = 20
							}
						default:
						}
						if after > 0 {
							after--
						}
						key := fmt.Sprintf("w%d/%d", w, i)
						wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
						_, err := cl.Put(wctx, key, []byte("v"))
						wcancel()
						started.Add(1)
						mu.Lock()
						switch {
						case err == nil:
							ok = append(ok, key)
						case errors.Is(err, client.ErrUnknownOutcome):
							unknown++
						default:
							bad = append(bad, fmt.Errorf("%s: %w", key, err))
						}
						mu.Unlock()
					}
				}()
			}
			require.Eventually(t, func() bool { return started.Load() > 200 }, 20*time.Second, time.Millisecond)
			c.Stop(leader)
			close(stopping)
			wg.Wait()
			require.Empty(t, bad, "writes that ended in neither a success nor an unknown outcome")
			t.Logf("%d writes applied, %d unknown", len(ok), unknown)
			for _, key := range ok {
				got, err := cl.Get(ctx, key)
				require.NoError(t, err)
				require.Equal(t, "v", string(got.GetValue()), key)
			}
		})
	}
}

// A write the leader had proposed when it handed leadership over before
// its stop, and whose commit it did not see before it stepped down, may be
// applied by the new leader: it is answered UNKNOWN_OUTCOME, never
// SHUTTING_DOWN, which says nothing was applied.
func TestWritesCutByTheHandoverAreNotAnsweredAsUnapplied(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	l := c.WaitLeader(5 * time.Second)
	a, b := (l+1)%3, (l+2)%3
	// The leader commits with a alone, slowly: writes stay in flight.
	c.Isolate(b)
	c.Members[a].Proxy.Set(c.Members[l].IP, faultnet.Link{Delay: 100 * time.Millisecond})
	c.Members[l].Proxy.Set(c.Members[a].IP, faultnet.Link{Delay: 100 * time.Millisecond})
	addr := c.Members[l].Cfg.ListenClient
	raw := openRaw(t, addr)
	const n = 64
	var calls []*concordv1.BatchCall
	for i := range n {
		calls = append(calls, &concordv1.BatchCall{Id: uint64(i + 1), Request: &concordv1.BatchCall_Put{Put: &concordv1.PutRequest{
			Key: []byte(fmt.Sprintf("h/%d", i)), Value: []byte("v"), Meta: &concordv1.WriteMeta{ClientId: "handover", RequestId: uint64(i + 1)}}}})
	}
	raw.send(calls...)
	require.Eventually(t, func() bool {
		return metricLine(t, addr, "concord_raft_last_log_index") != metricLine(t, addr, "concord_raft_commit_index")
	}, 10*time.Second, time.Millisecond)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		c.Stop(l)
	}()
	res := raw.results(n)
	<-stopped
	// The handover may not elect a before the old leader is gone (the
	// transfer waits for a to catch up over the slow link, and gives up
	// after its timeout); with b back, a and b elect a leader either way.
	c.Heal()
	cl := c.Client(a)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range n {
		r := res[uint64(i+1)]
		if r.GetError().GetInfo().GetReason() != "SHUTTING_DOWN" {
			continue
		}
		got, err := cl.Get(ctx, fmt.Sprintf("h/%d", i))
		require.NoError(t, err)
		require.Nil(t, got, "h/%d was answered SHUTTING_DOWN (nothing applied) and is applied", i)
	}
}

// Daemon.Kill is a crash for in-process tests: a framed call in flight gets
// no answer and the connection just ends, with no GoAway. Since graceful
// stops answer framed calls in flight, Kill (which cancels the same
// context) answered them too, and a test's "crash" was a polite stop.
func TestKillAnswersNoFramedCall(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	leader := c.WaitLeader(5 * time.Second)
	f := (leader + 1) % len(c.Members)
	addr := c.Members[f].Cfg.ListenClient
	proposed := func() string { return metricLine(t, addr, `concord_server_forwarded_total{kind="propose"}`) }
	before := proposed()
	c.Members[leader].Proxy.Set(c.Members[f].IP, faultnet.Link{Mode: faultnet.Blackhole})
	b := openRaw(t, addr)
	b.send(&concordv1.BatchCall{Id: 1, Request: &concordv1.BatchCall_Put{Put: &concordv1.PutRequest{Key: []byte("k"), Value: []byte("v")}}})
	require.Eventually(t, func() bool { return proposed() != before }, 10*time.Second, 10*time.Millisecond)

	c.Kill(f)
	_, _, err := b.r.Next()
	require.True(t, err != nil && !errors.Is(err, batchwire.ErrGoAway), "a killed member sent a frame after the kill: %v", err)
}
