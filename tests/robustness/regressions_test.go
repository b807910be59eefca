package robustness

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/faultnet"
	"github.com/concord-dev/concord/internal/kv"
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
	// The worst moment to pause (CI found it, 2026-11-27): right after a
	// keep-alive was confirmed, so the next one, a third of a TTL later,
	// goes to the paused leader. With a fixed 2 s answer timeout the SDK gave
	// up on that stream only at the session's deadline.
	created := sess.Deadline()
	require.NoError(t, cluster.Poll(ctx, 10*time.Second, 5*time.Millisecond, func() error {
		if !sess.Deadline().After(created) {
			return fmt.Errorf("no keep-alive confirmed yet")
		}
		return nil
	}))

	require.NoError(t, c.Pause(old))
	pausedAt := time.Now()
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
	case <-time.After(time.Until(pausedAt.Add(sess.TTL() + time.Second))):
	}
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

// TestRegressionLockTokenReusedWhenSessionsExpireTogether (fixed: the lock
// table defers grants to one pass after the whole command, lock.Table.Settle,
// so one command grants a lock at most once): a lock's fencing token is the Raft index of the command that granted it,
// and one command can grant the same lock twice. When the leader expires
// several sessions in one ExpireSessions command (it does whenever their
// TTLs run out together, e.g. after a new leader restarted every TTL), the
// holder's session ends, the next waiter is granted under that command's
// index, then that waiter's session ends in the same command and the waiter
// after it is granted under the same index. The first waiter's stream is
// told GRANTED with that token; so is the second's: two grants, one token.
// A fenced write of the first (LockHeld(name, token)) then applies while
// the second holds the lock: the fencing that docs/locks.md promises
// ("strictly greater than every earlier grant of that lock") is broken.
// Found by the lock workload of the short campaign (seed 1).
func TestRegressionLockTokenReusedWhenSessionsExpireTogether(t *testing.T) {
	ctx, c := startCluster(t, 3)
	cl, err := c.NewClient(ctx)
	require.NoError(t, err)
	defer cl.Close()
	session := func(ttl time.Duration) *client.Session {
		s, err := cl.NewSession(ctx, client.WithTTL(ttl))
		require.NoError(t, err)
		return s
	}
	// Sessions in creation order: their IDs increase, and an expiry
	// command ends them in ID order.
	s1, s2, s3 := session(2*time.Second), session(2*time.Second), session(10*time.Second)
	claim := []*client.LockClaim{{Name: "m", Kind: client.KindMutex}}
	g1, err := cl.AcquireLocks(ctx, s1, "owner-1", claim, client.AcquireOptions{Wait: true})
	require.NoError(t, err)
	type result struct {
		g   *client.Grant
		err error
	}
	wait := func(s *client.Session, owner string) <-chan result {
		out := make(chan result, 1)
		queued := make(chan struct{})
		var once sync.Once
		go func() {
			g, err := cl.AcquireLocks(ctx, s, owner, claim, client.AcquireOptions{Wait: true,
				OnQueued: func(int64) { once.Do(func() { close(queued) }) }})
			once.Do(func() { close(queued) })
			out <- result{g, err}
		}()
		<-queued
		return out
	}
	r2 := wait(s2, "owner-2")
	r3 := wait(s3, "owner-3")

	// Sessions 1 and 2 are no longer kept alive; a new leader restarts
	// every TTL at once, so both run out together and expire in one
	// command.
	s1.Orphan()
	s2.Orphan()
	leader := c.Leader(ctx)
	require.GreaterOrEqual(t, leader, 0)
	target := c.Member((leader + 1) % 3).Name
	require.NoError(t, c.Do(ctx, 20*time.Second, 5*time.Second, func(ctx context.Context, cl *client.Client) error {
		_, err := cl.TransferLeader(ctx, target)
		return err
	}))

	var got2, got3 result
	select {
	case got3 = <-r3:
	case <-time.After(30 * time.Second):
		t.Fatal("the third waiter was not granted within 30s of its predecessors' sessions running out")
	}
	require.NoError(t, got3.err)
	select {
	case got2 = <-r2:
	case <-time.After(10 * time.Second):
		t.Fatal("the second waiter's acquire did not return")
	}
	if got2.err != nil {
		t.Logf("holder 1: token %d; waiter 2 not granted (%v); waiter 3: token %d", g1.Token, got2.err, got3.g.Token)
		return // told it was not granted: no duplicate
	}
	t.Logf("holder 1: token %d; waiter 2: token %d; waiter 3: token %d", g1.Token, got2.g.Token, got3.g.Token)
	res, err := cl.Txn().If(client.LockHeld("m", got2.g.Token)).Then(client.OpPut("fenced", []byte("from waiter 2"))).Commit(ctx)
	require.NoError(t, err)
	assert.NotEqual(t, got3.g.Token, got2.g.Token, "token %d was granted to waiter 2 (whose session ended in the same command) and to waiter 3", got3.g.Token)
	assert.False(t, res.Succeeded, "a write fenced with waiter 2's token applied while waiter 3 holds the lock")
}

// TestRegressionReaddedMemberTakesRetiredIDFromStaleJoinEndpoint (fixed:
// discoverID trusts only the leader's answer, following a member's hint to
// the leader's client address): a member started with --join and an empty data dir learns its
// Raft ID by asking its --join endpoints for the member with its name and
// peer address (server.discoverID), and takes the first answer. A member
// that has not applied the previous incarnation's removal (it is cut off
// from the leader, or lagging) still lists that incarnation, under its
// retired ID, with the same name and address: the new process takes the
// retired ID, while `cluster add` put a new ID in the configuration. The
// leader promotes a learner only when the process at its address reports
// the configuration's ID (promoteLearners), so the member stays a learner
// for good, and a retired ID is in use again, against "IDs are never
// reused". Found by the long campaign (seed 400: n2 re-added at 78.5s
// while n1 was on the minority side of a partition took ID n2-5968, the
// configuration said n2-10049, and n2 was still a learner 60s after the
// heal).
func TestRegressionReaddedMemberTakesRetiredIDFromStaleJoinEndpoint(t *testing.T) {
	ctx, c := startCluster(t, 5)
	// n1, the first of n5's --join endpoints, does not lead and is cut off
	// from its peers: it misses n5's removal. n2, n3 and n4 keep a quorum
	// of the four members left.
	require.NoError(t, cluster.Poll(ctx, 30*time.Second, 200*time.Millisecond, func() error {
		if l := c.Leader(ctx); l == 0 || l == 4 || l < 0 {
			_ = c.Do(ctx, 10*time.Second, 3*time.Second, func(ctx context.Context, cl *client.Client) error {
				_, err := cl.TransferLeader(ctx, c.Member(1).Name)
				return err
			})
			return fmt.Errorf("leader is %d", l)
		}
		return nil
	}))
	for j := 1; j < 5; j++ {
		c.SetLink(0, j, faultnet.Link{Mode: faultnet.Blackhole})
		c.SetLink(j, 0, faultnet.Link{Mode: faultnet.Blackhole})
	}
	require.NoError(t, c.Remove(ctx, 4, 30*time.Second))
	require.NoError(t, c.Readd(ctx, 4, 30*time.Second))

	err := cluster.Poll(ctx, 20*time.Second, 200*time.Millisecond, func() error {
		voter, err := c.Promoted(ctx, 4)
		if err != nil {
			return err
		}
		if !voter {
			return fmt.Errorf("n5 is still a learner")
		}
		return nil
	})
	var took string
	for _, st := range c.Statuses(ctx) {
		if st.Index == 4 {
			took = st.ID
		}
	}
	added := c.Info(4).ID // as the leader lists it (recorded by Promoted)
	t.Logf("the configuration added n5 as %q; the process took ID %q", added, took)
	require.NoError(t, err, "n5 was not promoted within 20s of its re-addition: it took ID %q, the configuration has %q", took, added)
	require.NotEqual(t, "n5", took, "the new n5 took the retired ID of its predecessor")
}

// TestRegressionWatchDeliversAnEventTwice (fixed: History.Read returns
// only events at or below the applied revision it reports): the state
// machine adds an apply batch's events to the watch history in two steps,
// Append then Advance (fsm.Apply), each under the history's lock. A watch
// that reads in between (kv.History.Read) gets the new events, but a
// response revision ("through") that is still the previous applied index,
// below them; it resumes from that revision + 1 and gets the same events
// again. So a watcher sees an event outside its response's range, and
// then twice. Found by the short campaign (seed 2): "event put kv/k002 at
// 3868 in the response (3860, 3867]", then "event delivered twice". This
// test drives the history through the same interleaving.
func TestRegressionWatchDeliversAnEventTwice(t *testing.T) {
	put := func(rev uint64) kv.Event {
		return kv.Event{Rev: rev, Type: kv.EventPut, Item: &kv.Item{Key: []byte("kv/k002"), Value: []byte("v"), CreateRev: 4, ModRev: rev, Version: int64(rev - 3)}}
	}
	h := kv.NewHistory(1000, 1<<20)
	sp, err := kv.SpanOf([]byte("kv/"), nil, true)
	require.NoError(t, err)
	// Revision 4 has applied.
	h.Append([]kv.Event{put(4)})
	h.Advance(4)
	// Revision 5 applies: its event is appended, and a watch at revision
	// 4 reads before the history is advanced to 5.
	h.Append([]kv.Event{put(5)})
	first, through, _, err := h.Read(4, sp, 100)
	require.NoError(t, err)
	h.Advance(5)
	// The watch resumes after the revision its response carried.
	second, _, _, err := h.Read(through+1, sp, 100)
	require.NoError(t, err)

	var got []uint64
	for _, e := range append(first, second...) {
		got = append(got, e.Rev)
	}
	for _, e := range first {
		assert.LessOrEqual(t, e.Rev, through, "a response carries an event at revision %d above its own revision %d", e.Rev, through)
	}
	assert.Equal(t, []uint64{4, 5}, got, "each event must be delivered once")
}
