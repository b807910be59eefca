package api_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/api/batchwire"
	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/vtcodec"
	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/client/concurrency"
)

// rawBatch is a framed batch stream driven by hand.
type rawBatch struct {
	t    *testing.T
	conn net.Conn
	w    *batchwire.Writer
	r    *batchwire.Reader
}

func openRaw(t *testing.T, addr string) *rawBatch {
	conn, br, status := upgrade(t, addr, "")
	require.Equal(t, http.StatusSwitchingProtocols, status)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(60*time.Second)))
	return &rawBatch{t: t, conn: conn, w: batchwire.NewWriter(conn), r: batchwire.NewReader(br, 64<<20)}
}

func (b *rawBatch) send(calls ...*concordv1.BatchCall) {
	require.NoError(b.t, b.w.WriteMessage(&concordv1.BatchRequest{Calls: calls}))
}

// results reads until it has n results, by call ID.
func (b *rawBatch) results(n int) map[uint64]*concordv1.BatchResult {
	out := map[uint64]*concordv1.BatchResult{}
	for len(out) < n {
		typ, payload, err := b.r.Next()
		require.NoError(b.t, err)
		if typ != batchwire.FrameMessage {
			continue
		}
		var resp concordv1.BatchResponse
		require.NoError(b.t, (vtcodec.Codec{}).Unmarshal(payload, &resp))
		for _, r := range resp.GetResults() {
			out[r.GetId()] = r
		}
	}
	return out
}

func acquireCall(id uint64, sess int64, owner string, wait bool) *concordv1.BatchCall {
	return &concordv1.BatchCall{Id: id, Request: &concordv1.BatchCall_LockAcquire{LockAcquire: &concordv1.AcquireRequest{
		Claims: []*concordv1.LockClaim{{Name: "waited", Kind: concordv1.LockKind_LOCK_KIND_MUTEX}}, Session: sess, Owner: owner, Wait: wait}}}
}

func waitCall(id uint64, sess int64, owner string, waiter uint64, timeout time.Duration) *concordv1.BatchCall {
	return &concordv1.BatchCall{Id: id, TimeoutMs: timeout.Milliseconds(), Request: &concordv1.BatchCall_LockWait{LockWait: &concordv1.AcquireRequest{
		Claims: []*concordv1.LockClaim{{Name: "waited", Kind: concordv1.LockKind_LOCK_KIND_MUTEX}}, Session: sess, Owner: owner, Wait: true, ResumeWaiter: waiter}}}
}

func TestLockWaitCallsOnTheBatchStream(t *testing.T) {
	c, cl := single(t, nil)
	ctx := context.Background()
	var sess [3]*client.Session
	for i := range sess {
		s, err := cl.NewSession(ctx, client.WithTTL(30*time.Second))
		require.NoError(t, err)
		defer s.Close(context.Background())
		sess[i] = s
	}
	b := openRaw(t, c.Endpoints()[0])

	b.send(acquireCall(1, sess[0].ID(), "a", true))
	first := b.results(1)[1]
	held := first.GetLockAcquire()
	require.Nil(t, first.GetError(), "%v", first)
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, held.GetState())
	b.send(acquireCall(2, sess[1].ID(), "b", true))
	queued := b.results(1)[2].GetLockAcquire()
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_QUEUED, queued.GetState())

	// A wait whose window ends first says so, with the waiter's place.
	b.send(waitCall(3, sess[1].ID(), "b", queued.GetWaiter(), 200*time.Millisecond))
	r := b.results(1)[3].GetLockWait()
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_QUEUED, r.GetState())
	require.EqualValues(t, 0, r.GetPosition())

	// A wait in progress gets the grant when the holder releases, on the
	// same stream as the release.
	b.send(waitCall(4, sess[1].ID(), "b", queued.GetWaiter(), 20*time.Second))
	b.send(&concordv1.BatchCall{Id: 5, Request: &concordv1.BatchCall_LockRelease{LockRelease: &concordv1.ReleaseRequest{
		Names: []string{"waited"}, Session: sess[0].ID(), Owner: "a", Token: held.GetToken()}}})
	res := b.results(2)
	require.Nil(t, res[5].GetError())
	granted := res[4].GetLockWait()
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, granted.GetState(), "%v", res[4])
	require.Greater(t, granted.GetToken(), held.GetToken())

	// Asking again after the grant answers the grant (an answer lost on
	// the way is not a lost lock).
	b.send(waitCall(6, sess[1].ID(), "b", queued.GetWaiter(), time.Second))
	require.Equal(t, granted.GetToken(), b.results(1)[6].GetLockWait().GetToken())

	// A wait without its waiter is refused.
	b.send(waitCall(7, sess[1].ID(), "b", 0, time.Second))
	require.Equal(t, "INVALID_LOCK_REQUEST", b.results(1)[7].GetError().GetInfo().GetReason())

	// Waits have their own bound per stream, beyond the other calls'.
	b.send(acquireCall(8, sess[2].ID(), "c", true))
	third := b.results(1)[8].GetLockAcquire()
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_QUEUED, third.GetState())
	var calls []*concordv1.BatchCall
	for i := range 4097 {
		calls = append(calls, waitCall(100+uint64(i), sess[2].ID(), "c", third.GetWaiter(), time.Second))
	}
	// (In two messages: one carries at most 4096 calls.)
	b.send(calls[:4096]...)
	b.send(calls[4096:]...)
	// A release on the same stream still goes through while it follows
	// 4096 waits: the waits do not hold the stream's call slots.
	b.send(&concordv1.BatchCall{Id: 9, Request: &concordv1.BatchCall_LockRelease{LockRelease: &concordv1.ReleaseRequest{
		Names: []string{"waited"}, Session: sess[1].ID(), Owner: "b", Token: granted.GetToken()}}})
	res = b.results(4098)
	require.Nil(t, res[9].GetError(), "%v", res[9])
	refused, answered := 0, 0
	for i := range 4097 {
		r := res[100+uint64(i)]
		if r.GetError().GetInfo().GetReason() == "TOO_MANY_WAITS" {
			refused++
			continue
		}
		require.Nil(t, r.GetError(), "%v", r)
		answered++
	}
	require.Equal(t, 1, refused)
	require.Equal(t, 4096, answered)
}

// The SDK follows a queued lock with lock_wait calls when it batches, and
// on a Lock.Acquire stream when it does not; both hand the lock over.
func TestSDKWaitsOnTheBatchStream(t *testing.T) {
	c, _ := single(t, nil)
	for _, batching := range []bool{true, false} {
		cl, err := client.New(context.Background(), client.Config{Endpoints: c.Endpoints(), DisableBatching: !batching})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s1, err := cl.NewSession(ctx)
		require.NoError(t, err)
		s2, err := cl.NewSession(ctx)
		require.NoError(t, err)
		m1, m2 := concurrency.NewMutex(s1, "handoff"), concurrency.NewMutex(s2, "handoff")
		require.NoError(t, m1.Lock(ctx))
		got := make(chan error, 1)
		go func() { got <- m2.Lock(ctx) }()
		time.Sleep(200 * time.Millisecond)
		require.NoError(t, m1.Unlock(ctx))
		require.NoError(t, <-got)
		require.Greater(t, m2.Token(), m1.Token())
		require.NoError(t, m2.Unlock(ctx))
		cancel()
		_ = s1.Close(context.Background())
		_ = s2.Close(context.Background())
		cl.Close()
	}
	require.True(t, metric(t, c.Endpoints()[0], `concord_api_requests_total{code="ok",method="AcquireWait"} 1`),
		"the batching client's waiter followed with one lock_wait call")
}

// A client that goes away ends its waits on the member at once, as an
// HTTP/2 stream's reset would.
func TestLockWaitEndsWhenTheClientGoesAway(t *testing.T) {
	c, cl := single(t, nil)
	ctx := context.Background()
	var ids [2]int64
	for i := range ids {
		s, err := cl.NewSession(ctx, client.WithTTL(30*time.Second))
		require.NoError(t, err)
		defer s.Close(context.Background())
		ids[i] = s.ID()
	}
	b := openRaw(t, c.Endpoints()[0])
	b.send(acquireCall(1, ids[0], "a", true))
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, b.results(1)[1].GetLockAcquire().GetState())
	b.send(acquireCall(2, ids[1], "b", true))
	res := b.results(1)
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_QUEUED, res[2].GetLockAcquire().GetState())
	b.send(waitCall(3, ids[1], "b", res[2].GetLockAcquire().GetWaiter(), 20*time.Second))
	time.Sleep(100 * time.Millisecond)
	require.False(t, metric(t, c.Endpoints()[0], `concord_api_request_duration_seconds_count{method="AcquireWait"} 1`))
	start := time.Now()
	require.NoError(t, b.conn.Close())
	for !metric(t, c.Endpoints()[0], `concord_api_request_duration_seconds_count{method="AcquireWait"} 1`) {
		require.Less(t, time.Since(start), 5*time.Second, "the wait outlived its client")
		time.Sleep(20 * time.Millisecond)
	}
}

// A lock wait follows only a waiter of its own session and owner: one that
// names another's waiter is refused at once and is never told of that
// waiter's grant, and a waiter ID that names no queued request is refused
// at once, without a QUEUED answer first or a wait for the ID to apply.
func TestLockWaitFollowsOnlyItsOwnWaiter(t *testing.T) {
	c, cl := single(t, nil)
	ctx := context.Background()
	sess := [3]*client.Session{liveSession(t, cl), liveSession(t, cl), liveSession(t, cl)}
	b := openRaw(t, c.Endpoints()[0])
	b.send(acquireCall(1, sess[0].ID(), "a", true))
	held := b.results(1)[1].GetLockAcquire()
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, held.GetState())
	b.send(acquireCall(2, sess[1].ID(), "b", true))
	queued := b.results(1)[2].GetLockAcquire()
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_QUEUED, queued.GetState())

	refusedAtOnce := func(id uint64, sess int64, owner string, waiter uint64) {
		t.Helper()
		start := time.Now()
		b.send(waitCall(id, sess, owner, waiter, 20*time.Second))
		r := b.results(1)[id]
		require.Equal(t, "LOCK_NOT_WAITING", r.GetError().GetInfo().GetReason(), "session %d owner %q following waiter %d: %v", sess, owner, waiter, r)
		require.Less(t, time.Since(start), 3*time.Second, "refused only after a wait")
	}
	refusedAtOnce(3, sess[2].ID(), "x", queued.GetWaiter())     // another session's waiter
	refusedAtOnce(4, sess[1].ID(), "other", queued.GetWaiter()) // another owner of its session
	refusedAtOnce(5, sess[2].ID(), "x", 1)                      // an index that queued nothing
	refusedAtOnce(6, sess[2].ID(), "x", 1<<62)                  // an index not yet committed

	// The owner's own wait still gets the grant, and only it.
	b.send(waitCall(7, sess[1].ID(), "b", queued.GetWaiter(), 20*time.Second))
	b.send(&concordv1.BatchCall{Id: 8, Request: &concordv1.BatchCall_LockRelease{LockRelease: &concordv1.ReleaseRequest{
		Names: []string{"waited"}, Session: sess[0].ID(), Owner: "a", Token: held.GetToken()}}})
	res := b.results(2)
	require.Nil(t, res[8].GetError())
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, res[7].GetLockWait().GetState(), "%v", res[7])
	// Once granted, another session naming the waiter is still refused.
	refusedAtOnce(9, sess[2].ID(), "x", queued.GetWaiter())
	info, _, err := cl.InspectLock(ctx, "waited")
	require.NoError(t, err)
	require.Len(t, info.GetHolders(), 1)
	require.Equal(t, sess[1].ID(), info.GetHolders()[0].GetSession())
	require.Equal(t, "b", info.GetHolders()[0].GetOwner())
}

// liveSession opens a session of 30 s that the test closes when it ends.
func liveSession(t *testing.T, cl *client.Client) *client.Session {
	t.Helper()
	s, err := cl.NewSession(context.Background(), client.WithTTL(30*time.Second))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}
