package server_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/client/concurrency"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/faultnet"
	"github.com/concord-dev/concord/internal/lock"
	"github.com/concord-dev/concord/internal/testcluster"
)

// A Lock.Acquire stream served by a follower that answered GRANTED before
// applying the grant itself must not take it for ended: it stays open and
// sends LOST when the grant is force-released.
func TestAcquireStreamOnAFollowerFollowsItsGrant(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 30*time.Second)
	leader := c.Leader()
	follower := (leader + 1) % len(c.Members)
	cl := c.Client()
	s := session(t, cl, 5*time.Second)
	lc := concordv1connect.NewLockClient(http.DefaultClient, "http://"+c.Members[follower].Cfg.ListenClient)
	for i := 0; i < 5; i++ {
		name := "fl" + string(rune('a'+i))
		req := &concordv1.AcquireRequest{Claims: []*client.LockClaim{{Name: name, Kind: client.KindMutex}},
			Session: s.ID(), Owner: "raw", Wait: true}
		sctx, cancel := context.WithCancel(ctx)
		stream, err := lc.Acquire(sctx, connect.NewRequest(req))
		require.NoError(t, err)
		require.True(t, stream.Receive(), "%v", stream.Err())
		require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, stream.Msg().GetState())
		token := stream.Msg().GetToken()
		got := make(chan *concordv1.AcquireResponse, 1)
		go func() {
			if stream.Receive() {
				got <- stream.Msg()
			} else {
				got <- nil
			}
		}()
		time.Sleep(200 * time.Millisecond)
		select {
		case msg := <-got:
			t.Fatalf("round %d: the stream ended (msg %v, err %v) right after GRANTED, while the grant (token %d) is still held", i, msg, stream.Err(), token)
		default:
		}
		_, err = cl.ForceReleaseLock(ctx, name, token, "operator")
		require.NoError(t, err)
		select {
		case msg := <-got:
			require.NotNil(t, msg, "round %d: the stream ended without LOST (err %v) although the grant was force-released", i, stream.Err())
			require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_LOST, msg.GetState())
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: no LOST within 5 s", i)
		}
		cancel()
		_ = stream.Close()
	}
}

// A member that catches up by installing a snapshot must still push the
// grants and losses the snapshot carries to the streams it serves.
// A member cut off while a waiter it serves is granted, and a holder it
// serves is force-released, catches up from the leader's snapshot: the
// grant and the loss were never applied one by one there, yet both streams
// learn them.
func TestStreamsOnAMemberThatInstallsASnapshotLearnWhatItHolds(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Configure: func(i int, cfg *config.Server) {
		cfg.Raft.SnapshotThreshold = 64
		cfg.Raft.SnapshotInterval = 100 * time.Millisecond
		cfg.Raft.TrailingLogs = 16
	}})
	ctx := ctxT(t, 90*time.Second)
	leader := c.WaitLeader(5 * time.Second)
	f := (leader + 1) % 3
	cl := c.Client(leader)
	hs := session(t, cl, 10*time.Second)
	hw := concurrency.NewMutex(hs, "sw")
	require.NoError(t, hw.Lock(ctx))
	hl := concurrency.NewMutex(hs, "sl")
	require.NoError(t, hl.Lock(ctx))

	ws := session(t, cl, 10*time.Second)
	lc := concordv1connect.NewLockClient(http.DefaultClient, "http://"+c.Members[f].Cfg.ListenClient)
	open := func(name, owner string) *connect.ServerStreamForClient[concordv1.AcquireResponse] {
		stream, err := lc.Acquire(ctx, connect.NewRequest(&concordv1.AcquireRequest{
			Claims: []*client.LockClaim{{Name: name, Kind: client.KindMutex}}, Session: ws.ID(), Owner: owner, Wait: true}))
		require.NoError(t, err)
		require.True(t, stream.Receive(), "%v", stream.Err())
		require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_QUEUED, stream.Msg().GetState())
		t.Cleanup(func() { _ = stream.Close() })
		return stream
	}
	a := open("sw", "a") // waits for sw
	b := open("sl", "b") // waits for sl, granted before the isolation
	require.NoError(t, hl.Unlock(ctx))
	require.True(t, b.Receive(), "%v", b.Err())
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, b.Msg().GetState())
	bToken := b.Msg().GetToken()

	next := func(s *connect.ServerStreamForClient[concordv1.AcquireResponse]) chan *concordv1.AcquireResponse {
		ch := make(chan *concordv1.AcquireResponse, 1)
		go func() {
			if s.Receive() {
				ch <- s.Msg()
			} else {
				ch <- nil
			}
		}()
		return ch
	}
	aNext, bNext := next(a), next(b)

	c.Isolate(f)
	require.NoError(t, hw.Unlock(ctx))                           // grants a
	_, err := cl.ForceReleaseLock(ctx, "sl", bToken, "operator") // b loses sl
	require.NoError(t, err)
	for i := 0; i < 400; i++ {
		_, err := cl.Put(ctx, fmt.Sprintf("s/%03d", i), []byte("v"))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		st, err := cl.StatusOf(ctx, c.Members[leader].Cfg.ListenClient)
		return err == nil && st.GetLastSnapshotIndex() > 200
	}, 10*time.Second, 50*time.Millisecond, "the leader never compacted its log")
	c.Heal()
	c.WaitConverged(20 * time.Second)
	st, err := c.Client(f).StatusOf(ctx, c.Members[f].Cfg.ListenClient)
	require.NoError(t, err)
	require.Greater(t, st.GetLastSnapshotIndex(), uint64(0), "the member should have installed a snapshot")
	info, _, err := cl.InspectLock(ctx, "sw")
	require.NoError(t, err)
	require.Len(t, info.GetHolders(), 1)
	require.Equal(t, "a", info.GetHolders()[0].GetOwner())

	deadline := time.After(5 * time.Second)
	var aMsg, bMsg *concordv1.AcquireResponse
	for aMsg == nil || bMsg == nil {
		select {
		case aMsg = <-aNext:
			require.NotNil(t, aMsg, "a's stream ended: %v", a.Err())
		case bMsg = <-bNext:
			require.NotNil(t, bMsg, "b's stream ended: %v", b.Err())
		case <-deadline:
			t.Fatalf("after the member installed the snapshot: waiter a granted on the state machine got %v on its stream, force-released b got %v (want GRANTED and LOST)", aMsg, bMsg)
		}
	}
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, aMsg.GetState())
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_LOST, bMsg.GetState())
}

// Two mutexes of one session, each its own grant (own owner), granted by
// one release command, share its token. Force-releasing one must be told
// to its holder through the keep-alive.
func TestKeepAliveReportsAForcedGrantSharingItsTokenInTheSession(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	all, err := concurrency.LockAll(ctx, session(t, cl, 3*time.Second), []string{"sa", "sb"})
	require.NoError(t, err)

	s2 := session(t, cl, 3*time.Second)
	ma, mb := concurrency.NewMutex(s2, "sa"), concurrency.NewMutex(s2, "sb")
	ga, gb := make(chan error, 1), make(chan error, 1)
	go func() { ga <- ma.Lock(ctx) }()
	go func() { gb <- mb.Lock(ctx) }()
	require.Eventually(t, func() bool {
		ia, _, err1 := cl.InspectLock(ctx, "sa")
		ib, _, err2 := cl.InspectLock(ctx, "sb")
		return err1 == nil && err2 == nil && len(ia.GetWaiters()) == 1 && len(ib.GetWaiters()) == 1
	}, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, all.Unlock(ctx)) // one command grants both
	require.NoError(t, <-ga)
	require.NoError(t, <-gb)
	require.Equal(t, ma.Token(), mb.Token(), "granted by one command")

	_, err = cl.ForceReleaseLock(ctx, "sa", ma.Token(), "operator")
	require.NoError(t, err)

	select {
	case <-ma.Lost():
	case <-time.After(3 * time.Second): // three keep-alive intervals
		info, _, _ := cl.InspectLock(ctx, "sa")
		t.Fatalf("sa was force-released (holders now %v) but its holder's context (token %d) is live: the keep-alive did not report it", info.GetHolders(), ma.Token())
	}
	require.ErrorIs(t, context.Cause(ma.Context()), client.ErrLockLost)
	require.Contains(t, context.Cause(ma.Context()).Error(), "operator")
	require.NoError(t, mb.Context().Err(), "sb, granted under the same token to another handle of the session, is still held")
}

// A lock wait served by a member that applies the grant and its end in one
// batch (here a follower cut off while the leader granted the waiter and an
// operator force-released the grant) answers LOST with the reason, never
// GRANTED at a revision at which the grant is already over. It used to
// answer GRANTED (token 11 at revision 12, force-released at revision 12).
func TestLockWaitDoesNotAnswerAGrantAlreadyEnded(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 30*time.Second)
	leader := c.WaitLeader(10 * time.Second)
	f := (leader + 1) % len(c.Members)
	srvL, srvF := c.Members[leader].Daemon().Server(), c.Members[f].Daemon().Server()
	cl := c.Client(leader)
	hold := concurrency.NewMutex(session(t, cl, 30*time.Second), "x")
	require.NoError(t, hold.Lock(ctx))
	s := session(t, cl, 30*time.Second)
	req := &concordv1.AcquireRequest{Claims: []*client.LockClaim{{Name: "x", Kind: client.KindMutex}}, Session: s.ID(), Owner: "w", Wait: true}
	q, err := srvL.AcquireNow(ctx, req)
	require.NoError(t, err)
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_QUEUED, q.GetState())
	follow := &concordv1.AcquireRequest{Claims: req.GetClaims(), Session: s.ID(), Owner: "w", Wait: true, ResumeWaiter: q.GetWaiter()}
	got := make(chan *concordv1.AcquireResponse, 1)
	go func() {
		r, err := srvF.AwaitWaiter(ctx, follow)
		assert.NoError(t, err)
		got <- r
	}()
	time.Sleep(300 * time.Millisecond) // the follower follows the waiter
	c.Isolate(f)
	require.NoError(t, hold.Unlock(ctx)) // grants the waiter
	info, err := srvL.InspectLock(ctx, &concordv1.InspectLockRequest{Name: "x"})
	require.NoError(t, err)
	require.Len(t, info.GetLock().GetHolders(), 1)
	token := info.GetLock().GetHolders()[0].GetToken()
	fr, err := srvL.ForceReleaseLock(ctx, &concordv1.ForceReleaseRequest{Name: "x", Token: token, Reason: "op"})
	require.NoError(t, err)
	c.Heal()
	select {
	case r := <-got:
		if r.GetState() == concordv1.AcquireState_ACQUIRE_STATE_GRANTED {
			require.GreaterOrEqual(t, fr.GetHeader().GetRevision(), r.GetHeader().GetRevision()+1,
				"lock_wait answered GRANTED (token %d) at revision %d, but the grant was force-released at revision %d",
				r.GetToken(), r.GetHeader().GetRevision(), fr.GetHeader().GetRevision())
		} else {
			require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_LOST, r.GetState())
			require.Equal(t, token, r.GetToken())
			require.Contains(t, r.GetReason(), "force")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the lock wait on the follower has not answered 15 s after the heal")
	}
}

// concord_lock_handoff_seconds times a grant once, however many calls
// follow its waiter (a client whose stream broke follows on a new one while
// the old handler is on its way out). It counted once per follower.
func TestHandoffIsTimedOncePerGrant(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	srv := c.Members[0].Daemon().Server()
	cl := c.Client()
	hold := concurrency.NewMutex(session(t, cl, 30*time.Second), "h")
	require.NoError(t, hold.Lock(ctx))
	s := session(t, cl, 30*time.Second)
	req := &concordv1.AcquireRequest{Claims: []*client.LockClaim{{Name: "h", Kind: client.KindMutex}}, Session: s.ID(), Owner: "w", Wait: true}
	q, err := srv.AcquireNow(ctx, req)
	require.NoError(t, err)
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_QUEUED, q.GetState())
	follow := &concordv1.AcquireRequest{Claims: req.GetClaims(), Session: s.ID(), Owner: "w", Wait: true, ResumeWaiter: q.GetWaiter()}
	done := make(chan *concordv1.AcquireResponse, 2)
	for range 2 {
		go func() {
			r, err := srv.AwaitWaiter(ctx, follow)
			assert.NoError(t, err)
			done <- r
		}()
	}
	time.Sleep(300 * time.Millisecond)
	before := metric(t, c.Members[0], "concord_lock_handoff_seconds_count")
	require.NoError(t, hold.Unlock(ctx))
	for range 2 {
		require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, (<-done).GetState())
	}
	require.Equal(t, 1.0, metric(t, c.Members[0], "concord_lock_handoff_seconds_count")-before)
}

// A lock wait cut by the member's graceful stop while the member waits to
// apply the command that queued it (a follower behind the leader) ends
// SHUTTING_DOWN, as a wait cut later does: the client resumes it on
// another member. It ended TIMEOUT (DEADLINE_EXCEEDED), which a client
// takes for the end of its own deadline, and the SDK for a write whose
// outcome is unknown.
func TestLockWaitCutByAStopBeforeItsQueueEntryAppliedEndsShuttingDown(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 30*time.Second)
	leader := c.WaitLeader(5 * time.Second)
	v := (leader + 1) % len(c.Members)
	cl := c.Client(leader)
	s := session(t, cl, 5*time.Second)
	holder := concurrency.NewMutex(s, "cut")
	require.NoError(t, holder.Lock(ctx))
	m := c.Members[v]
	lead := c.Members[leader].Daemon().Server().FSM()
	require.Eventually(t, func() bool { return m.Daemon().Server().FSM().AppliedIndex() >= lead.AppliedIndex() },
		5*time.Second, time.Millisecond)
	// v applies what the leader sends it 700 ms late.
	m.Proxy.Set(c.Members[leader].IP, faultnet.Link{Delay: 700 * time.Millisecond})
	lc := concordv1connect.NewLockClient(http.DefaultClient, "http://"+m.Cfg.ListenClient)
	req := &concordv1.AcquireRequest{Claims: []*client.LockClaim{{Name: "cut", Kind: client.KindMutex}},
		Session: s.ID(), Owner: "w", Wait: true}
	stream, err := lc.Acquire(ctx, connect.NewRequest(req))
	require.NoError(t, err)
	require.True(t, stream.Receive(), "%v", stream.Err())
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_QUEUED, stream.Msg().GetState())
	// v now waits to apply the acquire before following the waiter.
	c.Stop(v)
	require.False(t, stream.Receive())
	err = stream.Err()
	require.Error(t, err)
	info, ok := errs.InfoOf(err)
	require.True(t, ok, "%v", err)
	assert.Equal(t, "SHUTTING_DOWN", info.GetReason(), "%v", err)
	assert.Equal(t, connect.CodeUnavailable, connect.CodeOf(err), "%v", err)
}

// A Lock.Acquire stream follows a LockAll grant by its first lock. The
// raw API let the owner release one lock of the grant: the stream then
// ended as released, and when the rest of the grant was force-released
// later, nobody on the stream was told (the loss was silent). A grant now
// ends whole: releasing part of it is refused, and the stream reports the
// force-release of any of its locks as LOST.
func TestAcquireStreamTellsTheLossOfAMultiLockGrantAfterAPartialRelease(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	s := session(t, cl, 10*time.Second)
	lc := concordv1connect.NewLockClient(http.DefaultClient, "http://"+c.Members[0].Cfg.ListenClient)
	req := &concordv1.AcquireRequest{Claims: []*client.LockClaim{{Name: "px", Kind: client.KindMutex}, {Name: "py", Kind: client.KindMutex}},
		Session: s.ID(), Owner: "multi", Wait: true}
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	stream, err := lc.Acquire(sctx, connect.NewRequest(req))
	require.NoError(t, err)
	defer stream.Close()
	require.True(t, stream.Receive(), "%v", stream.Err())
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, stream.Msg().GetState())
	token := stream.Msg().GetToken()

	_, relErr := lc.Release(ctx, connect.NewRequest(&concordv1.ReleaseRequest{Names: []string{"px"}, Session: s.ID(), Owner: "multi", Token: token}))
	_, err = cl.ForceReleaseLock(ctx, "py", token, "test")
	require.NoError(t, err, "py is held under the grant's token")

	require.True(t, stream.Receive(), "the stream ended without telling the loss of py (release of px: %v): %v", relErr, stream.Err())
	assert.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_LOST, stream.Msg().GetState())
	assert.Contains(t, stream.Msg().GetReason(), lock.ReasonForced)
	info, ok := errs.InfoOf(relErr)
	require.True(t, ok, "the release of part of the grant: %v", relErr)
	assert.Equal(t, "INVALID_LOCK_REQUEST", info.GetReason())
	for _, name := range []string{"px", "py"} {
		li, _, err := cl.InspectLock(ctx, name)
		require.NoError(t, err)
		assert.Empty(t, li.GetHolders(), "%s still held", name)
	}
}
