package api_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/errs"
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
	watch := cl.Watch(ctx, "g/", client.WithPrefix())
	_, err := cl.Put(ctx, "g/1", []byte("a"))
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
