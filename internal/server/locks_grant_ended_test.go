package server_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/client/concurrency"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/faultnet"
	"github.com/concord-dev/concord/internal/lock"
	"github.com/concord-dev/concord/internal/server"
	"github.com/concord-dev/concord/internal/testcluster"
)

// An acquire granted at once is answered after its command applied, and a
// member may have applied the grant's end by then (here an operator's
// force-release, applied on the leader and on the follower that serves the
// acquire while its answer waits). The answer is LOST with the reason, not
// GRANTED: the SDK's Lock fails with ErrLockLost and holds nothing, and a
// Lock.Acquire stream's one answer is LOST. Both were GRANTED, and the SDK
// held a grant the cluster had given up, until a keep-alive told it.
func TestAcquireAnsweredAfterItsGrantEndedIsLost(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 30*time.Second)
	leader := c.WaitLeader(10 * time.Second)
	f := (leader + 1) % len(c.Members)
	srvL, srvF := c.Members[leader].Daemon().Server(), c.Members[f].Daemon().Server()
	cl := c.Client(f) // acquires are forwarded, and answered by the follower
	sess := session(t, cl, 30*time.Second)
	t.Run("SDK", func(t *testing.T) {
		m := concurrency.NewMutex(sess, "sdk")
		var err error
		endBeforeAnswer(t, ctx, srvL, srvF, sess.ID(), "sdk", func() { err = m.Lock(ctx) })
		require.ErrorIs(t, err, client.ErrLockLost)
		require.Contains(t, err.Error(), lock.ReasonForced+": op")
		info, ierr := srvL.InspectLock(ctx, &concordv1.InspectLockRequest{Name: "sdk"})
		require.NoError(t, ierr)
		require.Empty(t, info.GetLock().GetHolders())
		// The mutex holds nothing, and takes the lock again.
		require.NoError(t, m.Lock(ctx))
		require.NoError(t, m.Unlock(ctx))
	})

	// A conversion applied in place whose new grant ended before the
	// answer is LOST with converted set: it took the lock, so it is not
	// ErrConversionLost (which says nothing was taken), and both the old
	// and the new grant are over for the SDK. It was answered GRANTED.
	t.Run("conversion", func(t *testing.T) {
		read := &client.LockClaim{Name: "conv", Kind: client.KindRWLock, Mode: client.ModeShared}
		write := &client.LockClaim{Name: "conv", Kind: client.KindRWLock, Mode: client.ModeExclusive}
		g, err := cl.AcquireLocks(ctx, sess, "up", []*client.LockClaim{read}, client.AcquireOptions{Wait: true})
		require.NoError(t, err)
		endBeforeAnswer(t, ctx, srvL, srvF, sess.ID(), "conv", func() {
			_, err = cl.AcquireLocks(ctx, sess, "up", []*client.LockClaim{write}, client.AcquireOptions{Wait: true, Converts: g})
		})
		require.ErrorIs(t, err, client.ErrLockLost)
		require.NotErrorIs(t, err, client.ErrConversionLost, "the conversion took the lock before its grant ended")
		require.Contains(t, err.Error(), lock.ReasonForced+": op")
		require.ErrorIs(t, g.Err(), client.ErrLockLost, "the converted grant is over for the SDK")
		info, ierr := srvL.InspectLock(ctx, &concordv1.InspectLockRequest{Name: "conv"})
		require.NoError(t, ierr)
		require.Empty(t, info.GetLock().GetHolders())
	})

	t.Run("conversion stream", func(t *testing.T) {
		claim := func(mode concordv1.LockMode) []*client.LockClaim {
			return []*client.LockClaim{{Name: "rawconv", Kind: client.KindRWLock, Mode: mode}}
		}
		var sent []*concordv1.AcquireResponse
		collect := func(r *concordv1.AcquireResponse) error { sent = append(sent, r); return nil }
		require.NoError(t, srvF.AcquireLock(ctx, &concordv1.AcquireRequest{Claims: claim(client.ModeShared), Session: sess.ID(), Owner: "rawconv"}, collect))
		require.Len(t, sent, 1)
		readToken := sent[0].GetToken()
		sent = nil
		var err error
		endBeforeAnswer(t, ctx, srvL, srvF, sess.ID(), "rawconv", func() {
			err = srvF.AcquireLock(ctx, &concordv1.AcquireRequest{Claims: claim(client.ModeExclusive), Session: sess.ID(), Owner: "rawconv", Conversion: true}, collect)
		})
		require.NoError(t, err)
		require.Len(t, sent, 1)
		require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_LOST, sent[0].GetState(), "answered %v", sent[0])
		require.Equal(t, readToken, sent[0].GetConverted(), "LOST names the grant the conversion replaced")
		require.Greater(t, sent[0].GetToken(), readToken)
	})

	t.Run("stream", func(t *testing.T) {
		req := &concordv1.AcquireRequest{Claims: []*client.LockClaim{{Name: "raw", Kind: client.KindMutex}}, Session: sess.ID(), Owner: "raw"}
		var sent []*concordv1.AcquireResponse
		var err error
		endBeforeAnswer(t, ctx, srvL, srvF, sess.ID(), "raw", func() {
			err = srvF.AcquireLock(ctx, req, func(r *concordv1.AcquireResponse) error {
				sent = append(sent, r)
				return nil
			})
		})
		require.NoError(t, err)
		require.Len(t, sent, 1)
		require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_LOST, sent[0].GetState(), "answered %v", sent[0])
		require.NotZero(t, sent[0].GetToken())
		require.Equal(t, lock.ReasonForced+": op", sent[0].GetReason())
	})
}

// endBeforeAnswer runs acquire (of lock name, by session sessID) and, when
// the member answering is about to answer GRANTED, force-releases the grant
// on leader and lets answering apply that first.
func endBeforeAnswer(t *testing.T, ctx context.Context, leader, answering *server.Server, sessID int64, name string, acquire func()) {
	t.Helper()
	reached, proceed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	answering.SetBeforeGrantJudged(func(r *concordv1.AcquireRequest) {
		if r.GetSession() == sessID && r.GetClaims()[0].GetName() == name {
			once.Do(func() { close(reached) })
			select {
			case <-proceed:
			case <-ctx.Done():
			}
		}
	})
	defer answering.SetBeforeGrantJudged(nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		acquire()
	}()
	select {
	case <-reached:
	case <-done:
		t.Fatal("the acquire was answered before the member judged its grant")
	case <-time.After(15 * time.Second):
		t.Fatal("the acquire was not answered GRANTED")
	}
	info, err := leader.InspectLock(ctx, &concordv1.InspectLockRequest{Name: name})
	require.NoError(t, err)
	require.Len(t, info.GetLock().GetHolders(), 1)
	fr, err := leader.ForceReleaseLock(ctx, &concordv1.ForceReleaseRequest{Name: name, Token: info.GetLock().GetHolders()[0].GetToken(), Reason: "op"})
	require.NoError(t, err)
	require.EqualValues(t, 1, fr.GetReleased())
	require.NoError(t, answering.FSM().WaitApplied(ctx, fr.GetHeader().GetRevision()))
	close(proceed)
	<-done
}

// On a cluster at rules version 1 (here, a member of an older release
// behind olderMemberProxy), an Upgrade of a read grant that had ended is
// granted anew; if that new grant ends before the answer, the answer is
// LOST with its token and no converted. A grant was made, so it is not
// ErrConversionLost ("nothing was granted"), which the SDK said when it
// read every LOST of a conversion without converted as the state
// machine's refusal (that answer carries no token).
func TestConversionGrantedAnewThenEndedIsNoConversionLost(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	srv := c.Members[0].Daemon().Server()
	cl, err := client.New(ctx, client.Config{Endpoints: []string{olderMemberProxy(t, c.Endpoints()[0])}, DisableBatching: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cl.Close() })
	sess := session(t, cl, 30*time.Second)
	read := &client.LockClaim{Name: "anew", Kind: client.KindRWLock, Mode: client.ModeShared}
	write := &client.LockClaim{Name: "anew", Kind: client.KindRWLock, Mode: client.ModeExclusive}
	g, err := cl.AcquireLocks(ctx, sess, "up", []*client.LockClaim{read}, client.AcquireOptions{Wait: true})
	require.NoError(t, err)
	_, err = srv.ForceReleaseLock(ctx, &concordv1.ForceReleaseRequest{Name: "anew", Token: g.Token, Reason: "drill"})
	require.NoError(t, err)
	endBeforeAnswer(t, ctx, srv, srv, sess.ID(), "anew", func() {
		_, err = cl.AcquireLocks(ctx, sess, "up", []*client.LockClaim{write}, client.AcquireOptions{Wait: true, Converts: g})
	})
	require.ErrorIs(t, err, client.ErrLockLost)
	require.NotErrorIs(t, err, client.ErrConversionLost, "the older member granted anew before the grant ended")
	require.ErrorIs(t, g.Err(), client.ErrLockLost)
}

// A retried acquire is answered with its first attempt's outcome, however
// long ago it applied: a GRANTED whose grant has ended since is answered
// LOST with how it ended, on the unary call and on the batch stream's path
// (StartAcquireNow) alike. The retry answered GRANTED.
func TestRetriedAcquireOfAGrantEndedSinceIsLost(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	srv := c.Members[0].Daemon().Server()
	cl := c.Client()
	for i, tc := range []struct {
		name   string
		end    func(t *testing.T, s *client.Session, token uint64)
		reason string
	}{
		{"force-released", func(t *testing.T, _ *client.Session, token uint64) {
			_, err := srv.ForceReleaseLock(ctx, &concordv1.ForceReleaseRequest{Name: "force-released", Token: token, Reason: "op"})
			require.NoError(t, err)
		}, lock.ReasonForced + ": op"},
		{"session-ended", func(t *testing.T, s *client.Session, _ uint64) {
			require.NoError(t, s.Close(ctx))
		}, lock.ReasonSessionEnded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := session(t, cl, 30*time.Second)
			req := func() *concordv1.AcquireRequest {
				return &concordv1.AcquireRequest{Claims: []*client.LockClaim{{Name: tc.name, Kind: client.KindMutex}}, Session: s.ID(), Owner: "o",
					Meta: &concordv1.WriteMeta{ClientId: "retrying-client", RequestId: uint64(i + 1)}}
			}
			first, err := srv.AcquireNow(ctx, req())
			require.NoError(t, err)
			require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, first.GetState())
			tc.end(t, s, first.GetToken())

			check := func(r *concordv1.AcquireResponse) {
				t.Helper()
				require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_LOST, r.GetState(), "answered %v", r)
				require.Equal(t, first.GetToken(), r.GetToken())
				require.Equal(t, tc.reason, r.GetReason())
				require.Greater(t, r.GetHeader().GetRevision(), first.GetHeader().GetRevision())
			}
			again, err := srv.AcquireNow(ctx, req())
			require.NoError(t, err)
			check(again)

			type answer struct {
				r   *concordv1.AcquireResponse
				err error
			}
			got := make(chan answer, 1)
			require.True(t, srv.StartAcquireNow(ctx, req(), func(r *concordv1.AcquireResponse, err error) { got <- answer{r, err} }))
			a := <-got
			require.NoError(t, a.err)
			check(a.r)
		})
	}
}

// A grant that still holds is answered GRANTED when retried, and the
// answer keeps the revision of the command that made it.
func TestRetriedAcquireOfAGrantStillHeldIsGranted(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	srv := c.Members[0].Daemon().Server()
	s := session(t, c.Client(), 30*time.Second)
	req := func() *concordv1.AcquireRequest {
		return &concordv1.AcquireRequest{Claims: []*client.LockClaim{{Name: "held", Kind: client.KindMutex}}, Session: s.ID(), Owner: "o",
			Meta: &concordv1.WriteMeta{ClientId: "retrying-client", RequestId: 1}}
	}
	first, err := srv.AcquireNow(ctx, req())
	require.NoError(t, err)
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, first.GetState())
	_, err = c.Client().Put(ctx, "k", []byte("v")) // the applied index moves on
	require.NoError(t, err)
	again, err := srv.AcquireNow(ctx, req())
	require.NoError(t, err)
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, again.GetState())
	require.Equal(t, first.GetToken(), again.GetToken())
	require.Equal(t, first.GetHeader().GetRevision(), again.GetHeader().GetRevision())
}

// A Lock whose session ends between the grant and the answer is answered
// LOST with reason "session ended"; the SDK reports it as a followed wait
// reports its session's end, ErrSessionExpired, and as the lost grant it
// is, ErrLockLost. It was ErrLockLost alone, so a caller that renews its
// session on ErrSessionExpired did not.
func TestLockWhoseSessionEndedBeforeItsAnswerIsSessionExpired(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	srv := c.Members[0].Daemon().Server()
	// Without batching, the answer is given on the Lock.Acquire stream's
	// goroutine, which the hook may block.
	cl, err := client.New(ctx, client.Config{Endpoints: c.Endpoints(), DisableBatching: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cl.Close() })
	sess := session(t, cl, 30*time.Second)
	revoked := make(chan error, 1)
	srv.SetBeforeGrantJudged(func(r *concordv1.AcquireRequest) {
		if r.GetSession() != sess.ID() {
			return
		}
		rv, err := srv.RevokeSession(ctx, &concordv1.RevokeSessionRequest{Id: sess.ID()})
		if err == nil {
			err = srv.FSM().WaitApplied(ctx, rv.GetHeader().GetRevision())
		}
		revoked <- err
	})
	t.Cleanup(func() { srv.SetBeforeGrantJudged(nil) })

	err = concurrency.NewMutex(sess, "gone").Lock(ctx)
	require.NoError(t, <-revoked)
	require.ErrorIs(t, err, client.ErrSessionExpired)
	require.ErrorIs(t, err, client.ErrLockLost)
	info, ierr := srv.InspectLock(ctx, &concordv1.InspectLockRequest{Name: "gone"})
	require.NoError(t, ierr)
	require.Empty(t, info.GetLock().GetHolders())
}

// A grant its hold time ended is named so: in a keep-alive's lost grants
// and in the LOST answer to a retried acquire. Both said "no longer held
// (released, or its hold time ended)" before, the table recording only
// force-releases; a grant its owner released is still not named.
func TestGrantEndedByItsHoldTimeIsNamed(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	srv := c.Members[0].Daemon().Server()
	cl := c.Client(0)
	sess := session(t, cl, 30*time.Second)
	req := &concordv1.AcquireRequest{Claims: []*concordv1.LockClaim{{Name: "ht", Kind: concordv1.LockKind_LOCK_KIND_MUTEX}}, Session: sess.ID(), Owner: "o",
		HoldMs: 200, Meta: &concordv1.WriteMeta{ClientId: "ht-test", RequestId: 77}}
	var first *concordv1.AcquireResponse
	require.NoError(t, srv.AcquireLock(ctx, req, func(r *concordv1.AcquireResponse) error { first = r; return nil }))
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, first.GetState())
	token := first.GetToken()
	require.Eventually(t, func() bool {
		info, err := srv.InspectLock(ctx, &concordv1.InspectLockRequest{Name: "ht"})
		return err == nil && len(info.GetLock().GetHolders()) == 0
	}, 10*time.Second, 20*time.Millisecond, "the hold time ends the grant")

	lost := srv.LostGrants(sess.ID(), nil, []*concordv1.HeldGrant{{Token: token, Owner: "o"}})
	require.Len(t, lost, 1)
	require.Equal(t, lock.ReasonHoldTime, lost[0].GetReason())
	lost = srv.LostGrants(sess.ID(), []uint64{token}, nil)
	require.Len(t, lost, 1)
	require.Equal(t, lock.ReasonHoldTime, lost[0].GetReason(), "asked by token alone")

	var again *concordv1.AcquireResponse
	require.NoError(t, srv.AcquireLock(ctx, req, func(r *concordv1.AcquireResponse) error { again = r; return nil }))
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_LOST, again.GetState(), "the retry under the request ID")
	require.Equal(t, token, again.GetToken())
	require.Equal(t, lock.ReasonHoldTime, again.GetReason())

	// A grant its owner released is not recorded: the owner knows.
	rel := &concordv1.AcquireRequest{Claims: []*concordv1.LockClaim{{Name: "rel", Kind: concordv1.LockKind_LOCK_KIND_MUTEX}}, Session: sess.ID(), Owner: "o"}
	var g *concordv1.AcquireResponse
	require.NoError(t, srv.AcquireLock(ctx, rel, func(r *concordv1.AcquireResponse) error { g = r; return nil }))
	_, err := srv.ReleaseLock(ctx, &concordv1.ReleaseRequest{Names: []string{"rel"}, Session: sess.ID(), Owner: "o", Token: g.GetToken()})
	require.NoError(t, err)
	lost = srv.LostGrants(sess.ID(), []uint64{g.GetToken()}, nil)
	require.Len(t, lost, 1)
	require.Equal(t, lock.ReasonUnknownEnd, lost[0].GetReason())
}

// A follower gets the answer to its forwarded acquire from the leader, and
// may get it before it has applied the grant itself: then it cannot judge
// the grant (judgeGrant leaves a revision it has not applied alone), and a
// grant that had ended by then was answered GRANTED. Here the follower
// hears none of the leader's Raft traffic (its calls to the leader still
// pass), and the grant is force-released on the leader after it applied
// the acquire and before it answers. The leader now judges the grant of a
// forwarded acquire as it judges its own: LOST, with the reason.
func TestForwardedAcquireIsJudgedByTheLeader(t *testing.T) {
	// Long timeouts: cut off from the leader's heartbeats, the follower
	// must still know it as the leader when it forwards the acquire.
	c := testcluster.Start(t, testcluster.Options{Configure: func(_ int, cfg *config.Server) {
		cfg.Raft.HeartbeatTimeout, cfg.Raft.ElectionTimeout = 3*time.Second, 3*time.Second
	}})
	ctx := ctxT(t, 30*time.Second)
	leader := c.WaitLeader(10 * time.Second)
	f := (leader + 1) % len(c.Members)
	srvL, srvF := c.Members[leader].Daemon().Server(), c.Members[f].Daemon().Server()
	sess := session(t, c.Client(leader), 30*time.Second)
	c.WaitConverged(10 * time.Second)

	c.Members[f].Proxy.Set(c.Members[leader].IP, faultnet.Link{Mode: faultnet.Blackhole})
	defer c.Heal()
	req := &concordv1.AcquireRequest{Claims: []*client.LockClaim{{Name: "lagging", Kind: client.KindMutex}}, Session: sess.ID(), Owner: "o"}
	var resp *concordv1.AcquireResponse
	var err error
	endBeforeAnswer(t, ctx, srvL, srvL, sess.ID(), "lagging", func() { resp, err = srvF.AcquireNow(ctx, req) })
	require.NoError(t, err)
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_LOST, resp.GetState(), "answered %v", resp)
	require.Equal(t, lock.ReasonForced+": op", resp.GetReason())
	require.NotZero(t, resp.GetToken())
	require.Less(t, srvF.FSM().AppliedIndex(), resp.GetToken(), "the follower had not applied the grant when it answered")
}
