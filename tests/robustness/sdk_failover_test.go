package robustness

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/faultnet"
	"github.com/concord-dev/concord/internal/testcluster"
	"github.com/concord-dev/concord/tests/robustness/cluster"
)

// followerFirstClient returns a client whose first endpoint is a follower f (the
// member New talks to first, which the client keeps as its "current"
// endpoint) and whose second is the leader.
func followerFirstClient(ctx context.Context, t *testing.T, c *cluster.Cluster, f, leader int) *client.Client {
	t.Helper()
	// Until f knows the leader's client address, a client that asks f
	// cannot tell which endpoint leads and uses f for everything.
	admin, err := client.New(ctx, client.Config{Endpoints: []string{c.Member(f).ClientAddr}})
	require.NoError(t, err)
	require.NoError(t, cluster.Poll(ctx, 10*time.Second, 20*time.Millisecond, func() error {
		st, err := admin.StatusOf(ctx, c.Member(f).ClientAddr)
		if err != nil {
			return err
		}
		for _, m := range st.GetMembers() {
			if m.GetRole() == "leader" && m.GetClientAddr() == c.Member(leader).ClientAddr {
				return nil
			}
		}
		return fmt.Errorf("%s does not name the leader's client address yet", c.Member(f).Name)
	}))
	admin.Close()
	eps := []string{c.Member(f).ClientAddr, c.Member(leader).ClientAddr}
	for i := range c.Size() {
		if i != f && i != leader {
			eps = append(eps, c.Member(i).ClientAddr)
		}
	}
	cl, err := client.New(ctx, client.Config{Endpoints: eps})
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	return cl
}

// (fixed 2026-11-27: the SDK asks every endpoint at once who leads) A
// 5-member cluster loses its leader while a follower the client first
// talked to is paused: three members are healthy and elect a new leader
// within a second, so a write must get through well within its deadline.
// syncLeader probed endpoints one by one starting at the client's
// "current" endpoint, with 2 s per endpoint under a 1 s budget: the paused
// follower ate the whole budget, the leader stayed unknown, and the next
// attempt went to the paused follower for a full AttemptTimeout.
func TestRegressionCallFindsTheLeaderPastAPausedEndpoint(t *testing.T) {
	ctx, c := startCluster(t, 5)
	leader := c.Leader(ctx)
	require.GreaterOrEqual(t, leader, 0)
	f := (leader + 1) % 5
	cl := followerFirstClient(ctx, t, c, f, leader)
	_, err := cl.Put(ctx, "k", []byte("before"))
	require.NoError(t, err)

	require.NoError(t, c.Pause(f))
	defer func() { _ = c.Resume(f) }()
	require.NoError(t, c.Kill(leader))
	_, err = c.WaitLeader(ctx, 20*time.Second)
	require.NoError(t, err, "three of five members elect a new leader")

	start := time.Now()
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = cl.Put(pctx, "k", []byte("after"))
	cancel()
	require.NoError(t, err, "a put with a 3 s deadline failed after %s although a ready leader was serving", time.Since(start).Round(time.Millisecond))
}

// (fixed with the one above) The keep-alive stream's way back from a paused
// leader went through the same sequential look-up: with the follower at
// "current" paused too, a session of TTL 3 s was lost although three
// healthy members elect a leader within a second.
func TestRegressionSessionOutlivesPausedLeaderAndPausedCurrentEndpoint(t *testing.T) {
	ctx, c := startCluster(t, 5)
	leader := c.Leader(ctx)
	require.GreaterOrEqual(t, leader, 0)
	f := (leader + 1) % 5
	cl := followerFirstClient(ctx, t, c, f, leader)
	sess, err := cl.NewSession(ctx, client.WithTTL(3*time.Second))
	require.NoError(t, err)

	require.NoError(t, c.Pause(f))
	defer func() { _ = c.Resume(f) }()
	created := sess.Deadline()
	require.NoError(t, cluster.Poll(ctx, 10*time.Second, 5*time.Millisecond, func() error {
		if !sess.Deadline().After(created) {
			return fmt.Errorf("no keep-alive confirmed yet")
		}
		return nil
	}))
	require.NoError(t, c.Pause(leader))
	pausedAt := time.Now()
	t.Logf("%s paused leader %s (current endpoint %s paused too); session deadline %s", pausedAt.Format("15:04:05.000"), c.Member(leader).ClientAddr, c.Member(f).ClientAddr, sess.Deadline().Format("15:04:05.000"))
	defer func() { _ = c.Resume(leader) }()
	_, err = c.WaitLeader(ctx, 20*time.Second)
	require.NoError(t, err)
	t.Logf("new leader ready %s after the pause", time.Since(pausedAt).Round(time.Millisecond))

	select {
	case <-sess.Done():
	case <-time.After(time.Until(pausedAt.Add(sess.TTL() + time.Second))):
	}
	select {
	case <-sess.Done():
		t.Fatalf("session lost %s after the leader's pause although a ready leader was serving: %v",
			time.Since(pausedAt).Round(time.Millisecond), sess.Err())
	default:
	}
}

// (fixed with the ones above) New asked the endpoints one by one, each for
// up to 2 s: with the first endpoint unresponsive (a paused member, a
// blackholed host), New failed whenever DialTimeout was under 2 s although
// the next endpoint answers at once.
func TestRegressionNewPassesAPausedFirstEndpoint(t *testing.T) {
	tc := testcluster.Start(t, testcluster.Options{Size: 1})
	// A listener that accepts connections and never answers, as the
	// kernel does for a SIGSTOPped member.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	cl, err := client.New(context.Background(), client.Config{
		Endpoints:   []string{ln.Addr().String(), tc.Members[0].Cfg.ListenClient},
		DialTimeout: 1500 * time.Millisecond,
	})
	require.NoError(t, err, "New failed after %s although the second endpoint answers at once", time.Since(start).Round(time.Millisecond))
	cl.Close()
}

// (fixed 2026-11-27) A watch without WithRevision starts "from the next
// revision", fixed by the opening header of the first stream. When that
// stream hung on a paused leader, the SDK reconnected (after the HTTP/2
// ping timeout) with StartRevision 0 again, from whatever the new member
// had applied by then: writes made after Watch returned, while the watch
// was reconnecting, were never delivered. It now resumes after the last
// revision the client had seen when Watch was called.
func TestRegressionWatchFromNowMissesNothingAcrossItsFirstReconnect(t *testing.T) {
	ctx, c := startCluster(t, 3)
	leader := c.Leader(ctx)
	require.GreaterOrEqual(t, leader, 0)
	eps := []string{c.Member(leader).ClientAddr}
	var others []string
	for i := range 3 {
		if i != leader {
			eps = append(eps, c.Member(i).ClientAddr)
			others = append(others, c.Member(i).ClientAddr)
		}
	}
	watcher, err := client.New(ctx, client.Config{Endpoints: eps})
	require.NoError(t, err)
	defer watcher.Close()
	_, err = watcher.Put(ctx, "w/warm", []byte("x"))
	require.NoError(t, err)

	require.NoError(t, c.Pause(leader))
	defer func() { _ = c.Resume(leader) }()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	w := watcher.Watch(wctx, "w/", client.WithPrefix())
	_, err = c.WaitLeader(ctx, 20*time.Second)
	require.NoError(t, err)

	writer, err := client.New(ctx, client.Config{Endpoints: others})
	require.NoError(t, err)
	defer writer.Close()
	first, err := writer.Put(ctx, "w/a", []byte("1"))
	require.NoError(t, err)
	time.Sleep(8 * time.Second) // the watch has reconnected by now
	second, err := writer.Put(ctx, "w/b", []byte("2"))
	require.NoError(t, err)

	// The watch may deliver events from before the call (w/warm: it
	// resumes after the last revision the client had seen, and a member's
	// "now" may lag), but none after it may be missing.
	var got []uint64
	for last := uint64(0); last < second.Revision; {
		select {
		case r := <-w:
			require.NoError(t, r.Err)
			for _, ev := range r.Events {
				rev := ev.GetKv().GetModRevision()
				require.Greater(t, rev, last, "events out of order or repeated: %v then %d", got, rev)
				got, last = append(got, rev), rev
			}
		case <-wctx.Done():
			t.Fatalf("the watch delivered %v, not w/b (rev %d)", got, second.Revision)
		}
	}
	require.Contains(t, got, first.Revision, "the watch, started before w/a was written (rev %d), skipped it: delivered %v", first.Revision, got)
}

// (fixed 2026-11-27) A write in flight when the client closed ended with
// ErrClosed alone, which says the call had no effect; it may have been
// applied (here it was). It now wraps ErrUnknownOutcome too.
func TestRegressionWriteInFlightAtCloseIsAnUnknownOutcome(t *testing.T) {
	tc := testcluster.Start(t, testcluster.Options{Size: 1})
	proxy, err := faultnet.Listen("127.0.0.1:0", tc.Members[0].Cfg.ListenClient)
	require.NoError(t, err)
	defer proxy.Close()
	cl, err := client.New(context.Background(), client.Config{Endpoints: []string{proxy.Addr()}})
	require.NoError(t, err)
	_, err = cl.Range(context.Background(), "k") // opens the batch stream
	require.NoError(t, err)
	proxy.Set("127.0.0.1", faultnet.Link{Delay: 300 * time.Millisecond})
	done := make(chan error, 1)
	go func() {
		_, err := cl.Put(context.Background(), "k", []byte("v"))
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	cl.Close()
	err = <-done
	check := tc.Client()
	require.Eventually(t, func() bool { _, err := check.Get(context.Background(), "k"); return err == nil }, 5*time.Second, 20*time.Millisecond)
	require.ErrorIs(t, err, client.ErrUnknownOutcome, "the put was applied, but the SDK reported only ErrClosed (no effect): %v", err)
}
