package api_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/client/concurrency"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/testcluster"
)

// --max-locks bounds lock objects, grants and waiters; a lock_acquire call
// that sets resume_waiter (which an acquire ignores) must not slip past it.
func TestAnAcquireNamingAWaiterIsRefused(t *testing.T) {
	c, cl := single(t, func(cfg *config.Server) { cfg.Limits.MaxLocks = 4 })
	ctx := context.Background()
	s, err := cl.NewSession(ctx, client.WithTTL(30*time.Second))
	require.NoError(t, err)
	defer s.Close(context.Background())
	b := openRaw(t, c.Endpoints()[0])
	acq := func(id uint64, name string, resume uint64) *concordv1.BatchCall {
		return &concordv1.BatchCall{Id: id, Request: &concordv1.BatchCall_LockAcquire{LockAcquire: &concordv1.AcquireRequest{
			Claims: []*concordv1.LockClaim{{Name: name, Kind: concordv1.LockKind_LOCK_KIND_MUTEX}}, Session: s.ID(), Owner: "o",
			Wait: true, ResumeWaiter: resume}}}
	}
	b.send(acq(1, "q1", 0), acq(2, "q2", 0))
	res := b.results(2)
	require.Nil(t, res[1].GetError())
	require.Nil(t, res[2].GetError())
	b.send(acq(3, "q3", 0))
	require.Equal(t, "QUOTA_EXCEEDED", b.results(1)[3].GetError().GetInfo().GetReason(), "the limit holds for a plain acquire")
	for i := range 20 {
		id := uint64(10 + i)
		b.send(acq(id, fmt.Sprintf("bypass%d", i), 1))
		r := b.results(1)[id]
		require.Equal(t, "INVALID_LOCK_REQUEST", r.GetError().GetInfo().GetReason(),
			"acquire %d with resume_waiter set beyond --max-locks 4 was answered %v", i, r.GetLockAcquire())
	}
	locks, err := cl.ListLocks(ctx, "")
	require.NoError(t, err)
	require.Len(t, locks, 2, "the refused acquires made nothing")
}

// A hold time far beyond --max-session-ttl is refused, not wrapped.
func TestAHoldTimePastTheLimitIsRefused(t *testing.T) {
	c, cl := single(t, nil)
	ctx := context.Background()
	s, err := cl.NewSession(ctx, client.WithTTL(30*time.Second))
	require.NoError(t, err)
	defer s.Close(context.Background())
	b := openRaw(t, c.Endpoints()[0])
	b.send(&concordv1.BatchCall{Id: 1, Request: &concordv1.BatchCall_LockAcquire{LockAcquire: &concordv1.AcquireRequest{
		Claims: []*concordv1.LockClaim{{Name: "huge", Kind: concordv1.LockKind_LOCK_KIND_MUTEX}}, Session: s.ID(), Owner: "o",
		HoldMs: 1 << 58}}})
	r := b.results(1)[1]
	info, _, ierr := cl.InspectLock(ctx, "huge")
	require.NoError(t, ierr)
	require.Equal(t, "INVALID_LOCK_REQUEST", r.GetError().GetInfo().GetReason(),
		"a hold time of 2^58 ms (limit %s) was accepted: %v; lock now %v", config.DefaultMaxTTL, r.GetLockAcquire(), info)
	require.Empty(t, info.GetHolders(), "the refused acquire took nothing")
}

// A client that sent a bad frame and went away must not leave its lock
// waits followed on the member for their whole window.
func TestLockWaitEndsWhenTheClientGoesAwayAfterABadFrame(t *testing.T) {
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
	_, err := b.conn.Write([]byte{99, 0, 0, 0, 0}) // an unknown frame type
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	require.NoError(t, b.conn.Close())
	for !metric(t, c.Endpoints()[0], `concord_api_request_duration_seconds_count{method="AcquireWait"} 1`) {
		require.Less(t, time.Since(start), 5*time.Second, "the wait outlived its client (and the framed stream stays open)")
		time.Sleep(20 * time.Millisecond)
	}
	require.True(t, metric(t, c.Endpoints()[0], `concord_api_open_streams{method="KV/BatchFramed"} 0`))
}

// revision writes a probe and returns its revision: the log's length.
func revision(t *testing.T, cl *client.Client) uint64 {
	t.Helper()
	res, err := cl.Put(context.Background(), "rev-probe", []byte("x"))
	require.NoError(t, err)
	return res.Revision
}

// Requests refused before they are proposed keep their own reason, and
// leave no entry behind: the revision moves only by the probe's own put.
func TestRefusedRequestsKeepTheirReasonAndProposeNothing(t *testing.T) {
	c, cl := single(t, nil)
	base := "http://" + c.Endpoints()[0] + "/concord.v1."
	tests := []struct {
		name, method, body, wantReason string
	}{
		{"empty key in a transaction", "KV/Txn", `{"success":[{"put":{"key":""}}]}`, "EMPTY_KEY"},
		{"empty lock name in a compare", "KV/Txn", `{"compare":[{"key":"","target":"TARGET_LOCK_TOKEN","result":"RESULT_EQUAL","number":"5"}]}`, "EMPTY_KEY"},
		{"lock compare other than equal", "KV/Txn",
			`{"compare":[{"key":"TA==","target":"TARGET_LOCK_TOKEN","result":"RESULT_GREATER","number":"1"}],"failure":[{"put":{"key":"ZQ==","value":"eA=="}}]}`, "INVALID_COMPARE"},
		{"unknown compare target", "KV/Txn", `{"compare":[{"key":"TA==","target":99,"result":"RESULT_EQUAL"}]}`, "INVALID_COMPARE"},
		{"release without owner", "Lock/Release", `{"names":["q"],"session":"1"}`, "INVALID_LOCK_REQUEST"},
		{"release without session", "Lock/Release", `{"names":["q"],"owner":"a"}`, "INVALID_LOCK_REQUEST"},
		{"release naming a lock twice", "Lock/Release", `{"names":["q","q"],"session":"1","owner":"a"}`, "INVALID_LOCK_REQUEST"},
		{"cancel naming no waiter", "Lock/Cancel", `{"session":"1","owner":"a"}`, "INVALID_LOCK_REQUEST"},
		{"cancel without session", "Lock/Cancel", `{"waiter":"5","session":"-3","owner":"a"}`, "INVALID_LOCK_REQUEST"},
		{"cancel without owner", "Lock/Cancel", `{"waiter":"5","session":"1"}`, "INVALID_LOCK_REQUEST"},
		{"cancel with an owner over 256 bytes", "Lock/Cancel", `{"waiter":"5","session":"1","owner":"` + strings.Repeat("o", 257) + `"}`, "INVALID_LOCK_REQUEST"},
		{"lock list with a negative limit", "Lock/List", `{"limit":"-1"}`, "INVALID_ARGUMENT"},
		{"a session TTL that wraps a Duration", "Session/Create", `{"ttl_ms":"18446744074710"}`, "SESSION_TTL_OUT_OF_RANGE"},
		{"a negative session TTL that wraps", "Session/Create", `{"ttl_ms":"-18446744072709"}`, "SESSION_TTL_OUT_OF_RANGE"},
		{"a lease of 0 worker bits", "IDs/LeaseWorker", `{"pool":"p","worker_bits":0,"session":"1","owner":"o"}`, "INVALID_ID_REQUEST"},
		{"a lease of 63 worker bits", "IDs/LeaseWorker", `{"pool":"p","worker_bits":63,"session":"1","owner":"o"}`, "INVALID_ID_REQUEST"},
		{"a lease guard that wraps", "IDs/LeaseWorker", `{"pool":"p","worker_bits":4,"session":"1","owner":"o","guard_ms":"-18446744073709"}`, "INVALID_ID_REQUEST"},
		{"a reservation to the end of time", "IDs/ReserveWorker", `{"pool":"p","worker_id":"0","session":"1","owner":"o","until_ms":"9223372036854775807"}`, "INVALID_ID_REQUEST"},
		{"a tag that can hand out no ID", "IDs/CreateTag", `{"tag":"t","start":"9223372036854775807","step":"1"}`, "INVALID_ID_REQUEST"},
		{"a tag without room for one step", "IDs/CreateTag", `{"tag":"t","start":"9223372036854775800","step":"8"}`, "INVALID_ID_REQUEST"},
		{"a negative reservation", "IDs/ReserveWorker", `{"pool":"p","worker_id":"0","session":"1","owner":"o","until_ms":"-1"}`, "INVALID_ID_REQUEST"},
		{"a release of worker -1", "IDs/ReleaseWorker", `{"pool":"p","worker_id":"-1","session":"1","owner":"o"}`, "INVALID_ID_REQUEST"},
		{"a release without an owner", "IDs/ReleaseWorker", `{"pool":"p","worker_id":"0","session":"1"}`, "INVALID_ID_REQUEST"},
		{"a release with an owner over 256 bytes", "IDs/ReleaseWorker", `{"pool":"p","worker_id":"0","session":"1","owner":"` + strings.Repeat("o", 257) + `"}`, "INVALID_ID_REQUEST"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The member proposes on its own too (a no-op and its
			// address when it starts leading): a window with another
			// entry in it is measured again. A refused request that was
			// proposed moves the revision in every window.
			var moved []uint64
			for range 3 {
				before := revision(t, cl)
				status, out := post(t, base+tc.method, tc.body)
				require.Equal(t, 400, status, "%v", out)
				details, _ := out["details"].([]any)
				require.NotEmpty(t, details, "%v", out)
				debug := details[0].(map[string]any)["debug"].(map[string]any)
				require.Equal(t, tc.wantReason, debug["reason"], "%v", out)
				after := revision(t, cl)
				if after == before+1 {
					return
				}
				moved = append(moved, after-before-1)
			}
			t.Fatalf("the refused request was proposed: entries besides the probe in each of 3 windows: %v", moved)
		})
	}
	// The SDK sees the same sentinels in a transaction as in a put.
	_, err := cl.Txn().Then(client.OpPut("k", make([]byte, 2<<20))).Commit(context.Background())
	require.ErrorIs(t, err, client.ErrTooLarge)
}

// The JSON API refuses fields it does not know: a misspelt "compare" would
// otherwise turn a fenced write into an unguarded one.
func TestHTTPJSONRefusesUnknownFields(t *testing.T) {
	c, cl := single(t, nil)
	base := "http://" + c.Endpoints()[0] + "/concord.v1."
	status, out := post(t, base+"KV/Txn",
		`{"compares":[{"key":"cQ==","target":"TARGET_LOCK_TOKEN","result":"RESULT_EQUAL","number":"999"}],"success":[{"put":{"key":"dHlwbw==","value":"c3RhbGU="}}]}`)
	require.Equal(t, 400, status, "%v", out)
	require.Equal(t, "invalid_argument", out["code"])
	_, err := cl.Get(context.Background(), "typo")
	require.ErrorIs(t, err, client.ErrNotFound, "nothing was written")
	status, out = post(t, base+"KV/Put", `{"key":"aGk=","value":"dA=="}`)
	require.Equal(t, 200, status, "known fields still work: %v", out)
}

// A force-release retried with the same request ID is applied once, and
// counted once.
func TestARetriedForceReleaseCountsOnce(t *testing.T) {
	c, cl := single(t, nil)
	ctx := context.Background()
	s, err := cl.NewSession(ctx, client.WithTTL(30*time.Second))
	require.NoError(t, err)
	defer s.Close(context.Background())
	_, err = cl.AcquireLocks(ctx, s, cl.NewOwner(), []*client.LockClaim{{Name: "fr", Kind: client.KindMutex}}, client.AcquireOptions{})
	require.NoError(t, err)
	url := "http://" + c.Endpoints()[0] + "/concord.v1.Lock/ForceRelease"
	body := `{"name":"fr","reason":"retry test","meta":{"clientId":"ops-1","requestId":"7"}}`
	for range 2 {
		status, out := post(t, url, body)
		require.Equal(t, 200, status, "%v", out)
		require.Equal(t, "1", out["released"], "the retry is answered with the first outcome")
	}
	require.True(t, metric(t, c.Endpoints()[0], "concord_lock_force_releases_total 1"))
	_, forced, err := cl.InspectLock(ctx, "fr")
	require.NoError(t, err)
	require.Len(t, forced, 1)
}

// Acquires whose claims the state machine would refuse whatever it holds
// are refused before they are proposed: the revision moves only by the
// probes around them.
func TestAcquiresOfABadShapeProposeNothing(t *testing.T) {
	c, cl := single(t, nil)
	s := liveSession(t, cl)
	b := openRaw(t, c.Endpoints()[0])
	mutex := func(name string) *concordv1.LockClaim {
		return &concordv1.LockClaim{Name: name, Kind: concordv1.LockKind_LOCK_KIND_MUTEX}
	}
	tests := []struct {
		name       string
		claims     []*concordv1.LockClaim
		wantReason string
	}{
		{"a lock claimed twice", []*concordv1.LockClaim{mutex("m"), mutex("m")}, "INVALID_LOCK_REQUEST"},
		{"a claim without a kind", []*concordv1.LockClaim{{Name: "k"}}, "INVALID_LOCK_REQUEST"},
		{"a read-write claim without a mode", []*concordv1.LockClaim{{Name: "rw", Kind: concordv1.LockKind_LOCK_KIND_RWLOCK}}, "INVALID_LOCK_REQUEST"},
		{"zero permits", []*concordv1.LockClaim{{Name: "s", Kind: concordv1.LockKind_LOCK_KIND_SEMAPHORE, Permits: 0, Capacity: 2}}, "TOO_MANY_PERMITS"},
		{"permits above the capacity", []*concordv1.LockClaim{{Name: "s", Kind: concordv1.LockKind_LOCK_KIND_SEMAPHORE, Permits: 3, Capacity: 2}}, "TOO_MANY_PERMITS"},
		{"a capacity of 2^31", []*concordv1.LockClaim{{Name: "s", Kind: concordv1.LockKind_LOCK_KIND_SEMAPHORE, Permits: 1, Capacity: 1 << 31}}, "TOO_MANY_PERMITS"},
		{"several locks, one a semaphore", []*concordv1.LockClaim{mutex("m"), {Name: "s", Kind: concordv1.LockKind_LOCK_KIND_SEMAPHORE, Permits: 1, Capacity: 2}}, "INVALID_LOCK_REQUEST"},
	}
	id := uint64(0)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var moved []uint64
			for range 3 { // see TestRefusedRequestsKeepTheirReasonAndProposeNothing
				before := revision(t, cl)
				id++
				b.send(&concordv1.BatchCall{Id: id, Request: &concordv1.BatchCall_LockAcquire{LockAcquire: &concordv1.AcquireRequest{
					Claims: tc.claims, Session: s.ID(), Owner: "o", Wait: true}}})
				r := b.results(1)[id]
				require.Equal(t, tc.wantReason, r.GetError().GetInfo().GetReason(), "%v", r)
				after := revision(t, cl)
				if after == before+1 {
					return
				}
				moved = append(moved, after-before-1)
			}
			t.Fatalf("the refused acquire was proposed: entries besides the probe in each of 3 windows: %v", moved)
		})
	}
}

// --max-locks counts the locks an acquire would create and their grants,
// not only what exists: one LockAll of many new locks cannot pass it.
func TestMaxLocksCountsTheLocksAnAcquireCreates(t *testing.T) {
	_, cl := single(t, func(cfg *config.Server) { cfg.Limits.MaxLocks = 6 })
	ctx := context.Background()
	s := liveSession(t, cl)
	claims := func(names ...string) []*client.LockClaim {
		var out []*client.LockClaim
		for _, n := range names {
			out = append(out, &client.LockClaim{Name: n, Kind: client.KindMutex})
		}
		return out
	}
	_, err := cl.AcquireLocks(ctx, s, cl.NewOwner(), claims("a", "b", "c", "d"), client.AcquireOptions{})
	require.ErrorIs(t, err, client.ErrQuotaExceeded, "four new locks and their grants past --max-locks 6")
	require.ErrorContains(t, err, "holds 0 locks, grants and waiters and this acquire could add 8")
	locks, err := cl.ListLocks(ctx, "")
	require.NoError(t, err)
	require.Empty(t, locks, "the refused acquire made nothing")

	g, err := cl.AcquireLocks(ctx, s, cl.NewOwner(), claims("a", "b", "c"), client.AcquireOptions{})
	require.NoError(t, err, "three fit")
	_, err = cl.AcquireLocks(ctx, s, cl.NewOwner(), claims("d"), client.AcquireOptions{})
	require.ErrorIs(t, err, client.ErrQuotaExceeded, "a fourth lock does not")
	require.NoError(t, g.Release(ctx))
	_, err = cl.AcquireLocks(ctx, s, cl.NewOwner(), claims("d"), client.AcquireOptions{})
	require.NoError(t, err, "released locks are dropped and no longer count")
}

// --max-locks counts grants: a read lock takes one per owner, and one
// session may use any number of owners. Shared grants used to pass it, and
// one read lock held 300 grants (each with a hold time, each an entry of
// the leader's hold tracker) under --max-locks 2.
func TestMaxLocksCountsSharedGrants(t *testing.T) {
	_, cl := single(t, func(cfg *config.Server) { cfg.Limits.MaxLocks = 10 })
	ctx := context.Background()
	s := liveSession(t, cl)
	claim := []*client.LockClaim{{Name: "rw", Kind: client.KindRWLock, Mode: client.ModeShared}}
	granted, refused := 0, 0
	for i := 0; i < 30; i++ {
		_, err := cl.AcquireLocks(ctx, s, fmt.Sprintf("o%d", i), claim, client.AcquireOptions{Hold: time.Hour})
		switch {
		case err == nil:
			granted++
		case errors.Is(err, client.ErrQuotaExceeded):
			refused++
		default:
			t.Fatalf("acquire %d: %v", i, err)
		}
	}
	info, _, err := cl.InspectLock(ctx, "rw")
	require.NoError(t, err)
	require.Equal(t, 9, granted, "one lock and 9 grants fill --max-locks 10")
	require.Equal(t, 21, refused)
	require.Len(t, info.GetHolders(), 9)
}

// grantedWithRequestID acquires mutex m for owner o of s on a raw batch
// stream, under request ID 7 of client "retrying-client", and returns the
// stream, the call (to send again as a retry) and its GRANTED result.
func grantedWithRequestID(t *testing.T, c *testcluster.Cluster, s *client.Session) (*rawBatch, *concordv1.BatchCall, *concordv1.BatchResult) {
	t.Helper()
	b := openRaw(t, c.Endpoints()[0])
	try := &concordv1.BatchCall{Id: 1, Request: &concordv1.BatchCall_LockAcquire{LockAcquire: &concordv1.AcquireRequest{
		Claims: []*concordv1.LockClaim{{Name: "m", Kind: concordv1.LockKind_LOCK_KIND_MUTEX}}, Session: s.ID(), Owner: "o",
		Meta: &concordv1.WriteMeta{ClientId: "retrying-client", RequestId: 7}}}}
	b.send(try)
	first := b.results(1)[1]
	require.Nil(t, first.GetError())
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, first.GetLockAcquire().GetState())
	return b, try, first
}

// At the --max-locks limit, acquires that add nothing to the table pass:
// a retry of an applied acquire (same request ID; the SDK retries after an
// unknown outcome) and a conversion of a held grant. Counting every claim
// of an existing lock refused both.
func TestMaxLocksLetsThroughWhatAddsNothing(t *testing.T) {
	c, cl := single(t, func(cfg *config.Server) { cfg.Limits.MaxLocks = 2 })
	ctx := context.Background()
	s := liveSession(t, cl)
	b, try, first := grantedWithRequestID(t, c, s)
	try.Id = 2
	b.send(try)
	again := b.results(1)[2]
	require.Nil(t, again.GetError(), "the retry at the limit (the table holds the lock and its grant)")
	require.Equal(t, first.GetLockAcquire().GetToken(), again.GetLockAcquire().GetToken())

	_, rcl := single(t, func(cfg *config.Server) { cfg.Limits.MaxLocks = 2 })
	rw := concurrency.NewRWMutex(liveSession(t, rcl), "rw")
	require.NoError(t, rw.Lock(ctx))
	require.NoError(t, rw.Downgrade(ctx), "a downgrade at the limit")
	require.NoError(t, rw.Upgrade(ctx), "an upgrade at the limit")
}

// At the --max-locks limit, a conversion of a grant that had ended is
// told so (ErrLockLost: it takes nothing, so adds nothing), not refused as
// past the limit, which counted it as a new lock and grant.
func TestMaxLocksLetsThroughAConversionOfAnEndedGrant(t *testing.T) {
	_, cl := single(t, func(cfg *config.Server) { cfg.Limits.MaxLocks = 3 })
	ctx := context.Background()
	s := liveSession(t, cl)
	rw := concurrency.NewRWMutex(s, "rw")
	require.NoError(t, rw.RLock(ctx))
	_, err := cl.ForceReleaseLock(ctx, "rw", rw.Token(), "drill")
	require.NoError(t, err)
	m := concurrency.NewMutex(s, "m")
	require.NoError(t, m.Lock(ctx), "the lock and its grant: 2 entries of 3")
	err = rw.Upgrade(ctx)
	require.ErrorIs(t, err, client.ErrLockLost)
	require.NotErrorIs(t, err, client.ErrQuotaExceeded)
	require.ErrorContains(t, err, "converted grant ended")
}

// --max-locks counts a LockAll waiter's place in each queue it joins: it
// becomes one grant per lock. Counted as one entry while it waited, two
// waiters of 64 locks each grew the table to 256 entries under
// --max-locks 200 once their gate was released.
func TestMaxLocksCountsEveryPlaceAMultiLockWaiterTakes(t *testing.T) {
	const max = 200
	c, cl := single(t, func(cfg *config.Server) { cfg.Limits.MaxLocks = max })
	ctx := context.Background()
	s := liveSession(t, cl)
	gates := []*client.LockClaim{{Name: "g0", Kind: client.KindMutex}, {Name: "g1", Kind: client.KindMutex}}
	_, err := cl.AcquireLocks(ctx, s, "h", gates, client.AcquireOptions{})
	require.NoError(t, err)
	b := openRaw(t, c.Endpoints()[0])
	for i := range 2 {
		claims := []*concordv1.LockClaim{{Name: fmt.Sprintf("g%d", i), Kind: concordv1.LockKind_LOCK_KIND_MUTEX}}
		for j := range 63 {
			claims = append(claims, &concordv1.LockClaim{Name: fmt.Sprintf("y%d.%02d", i, j), Kind: concordv1.LockKind_LOCK_KIND_MUTEX})
		}
		id := uint64(i + 1)
		b.send(&concordv1.BatchCall{Id: id, Request: &concordv1.BatchCall_LockAcquire{LockAcquire: &concordv1.AcquireRequest{
			Claims: claims, Session: s.ID(), Owner: fmt.Sprintf("w%d", i), Wait: true}}})
		r := b.results(1)[id]
		if i == 0 {
			require.Nil(t, r.GetError(), "the first waiter: 2 gates held (4 entries) and 63 new locks (126) plus a place (1)")
			require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_QUEUED, r.GetLockAcquire().GetState())
			continue
		}
		require.Equal(t, "QUOTA_EXCEEDED", r.GetError().GetInfo().GetReason(), "the second waiter would pass --max-locks %d", max)
	}
	entries := func() int {
		locks, err := cl.ListLocks(ctx, "")
		require.NoError(t, err)
		n := len(locks)
		waiters := map[uint64]bool{}
		for _, l := range locks {
			n += len(l.GetHolders())
			for _, w := range l.GetWaiters() {
				waiters[w.GetId()] = true
			}
		}
		return n + len(waiters)
	}
	require.LessOrEqual(t, entries(), max)
	require.NoError(t, cl.ReleaseLocks(ctx, s, "h", []string{"g0", "g1"}, 0))
	n := entries()
	t.Logf("entries after the gates were released: %d (--max-locks %d)", n, max)
	require.LessOrEqual(t, n, max, "the lock table grew past --max-locks")
}

// --max-locks holds however many acquires race: each member checks an
// acquire against its state before proposing, and acquires sent together
// all passed that check against the same state, so 64 acquires of new
// locks under --max-locks 10 created up to 64. The state machine now
// checks again against the limit the command carries (rules version 4),
// in log order: at most five locks, each with its grant, are made, and
// every other acquire is refused with QUOTA_EXCEEDED.
func TestMaxLocksHoldsUnderRacingAcquires(t *testing.T) {
	_, cl := single(t, func(cfg *config.Server) { cfg.Limits.MaxLocks = 10 })
	ctx := context.Background()
	s := liveSession(t, cl)
	const racers = 64
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		granted atomic.Int64
		refused atomic.Int64
		other   = make(chan error, racers)
	)
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := cl.AcquireLocks(ctx, s, cl.NewOwner(), []*client.LockClaim{{Name: fmt.Sprintf("l%02d", i), Kind: client.KindMutex}}, client.AcquireOptions{})
			switch {
			case err == nil:
				granted.Add(1)
			case errors.Is(err, client.ErrQuotaExceeded):
				refused.Add(1)
			default:
				other <- err
			}
		}()
	}
	close(start)
	wg.Wait()
	close(other)
	for err := range other {
		t.Fatalf("an acquire failed otherwise: %v", err)
	}
	locks, err := cl.ListLocks(ctx, "")
	require.NoError(t, err)
	require.Len(t, locks, 5, "five locks and their grants fill --max-locks 10")
	require.EqualValues(t, len(locks), granted.Load())
	require.EqualValues(t, racers, granted.Load()+refused.Load())
}

// At the --max-locks limit, a retry of an acquire applied earlier (the
// same request ID) is answered from the first application, even after its
// grant ended and other locks filled the table: LOST, with its token, as
// any retry of a grant that ended. The member's check counted it as a new
// lock and refused it, telling the caller it had never taken effect.
func TestMaxLocksAnswersARetryOfAnEndedGrant(t *testing.T) {
	c, cl := single(t, func(cfg *config.Server) { cfg.Limits.MaxLocks = 2 })
	ctx := context.Background()
	s := liveSession(t, cl)
	b, try, first := grantedWithRequestID(t, c, s)
	require.NoError(t, cl.ReleaseLocks(ctx, s, "o", []string{"m"}, 0))
	_, err := cl.AcquireLocks(ctx, s, "other", []*client.LockClaim{{Name: "n", Kind: client.KindMutex}}, client.AcquireOptions{})
	require.NoError(t, err, "another lock and its grant fill --max-locks 2")

	try.Id = 2
	b.send(try)
	again := b.results(1)[2]
	require.Nil(t, again.GetError(), "the retry at the limit was refused")
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_LOST, again.GetLockAcquire().GetState(), "the grant ended since")
	require.Equal(t, first.GetLockAcquire().GetToken(), again.GetLockAcquire().GetToken(), "the first application's grant")
	require.Contains(t, again.GetLockAcquire().GetReason(), "no longer held")
	locks, err := cl.ListLocks(ctx, "")
	require.NoError(t, err)
	require.Len(t, locks, 1, "the retry took nothing")
}

// At the --max-locks limit, a try-lock of a held mutex fails as locked,
// as the state machine answers it, not as over the limit: the member's
// own check counted a place in the lock's queue that a try-lock never
// takes, and answered QUOTA_EXCEEDED (the lock table's campaign,
// tests/robustness ProfileLockLimit, seed 1).
func TestMaxLocksAnswersATryLockOfAHeldMutexAsLocked(t *testing.T) {
	_, cl := single(t, func(cfg *config.Server) { cfg.Limits.MaxLocks = 4 })
	ctx := context.Background()
	s := liveSession(t, cl)
	for _, name := range []string{"a", "b"} {
		_, err := cl.AcquireLocks(ctx, s, cl.NewOwner(), []*client.LockClaim{{Name: name, Kind: client.KindMutex}}, client.AcquireOptions{})
		require.NoError(t, err, "two locks and their grants fill --max-locks 4")
	}
	_, err := cl.AcquireLocks(ctx, s, cl.NewOwner(), []*client.LockClaim{{Name: "a", Kind: client.KindMutex}}, client.AcquireOptions{})
	require.ErrorIs(t, err, client.ErrLocked)
	require.NotErrorIs(t, err, client.ErrQuotaExceeded)
	_, err = cl.AcquireLocks(ctx, s, cl.NewOwner(), []*client.LockClaim{{Name: "c", Kind: client.KindMutex}}, client.AcquireOptions{})
	require.ErrorIs(t, err, client.ErrQuotaExceeded, "a new lock does not fit")
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = cl.AcquireLocks(wctx, s, cl.NewOwner(), []*client.LockClaim{{Name: "a", Kind: client.KindMutex}}, client.AcquireOptions{Wait: true})
	require.ErrorIs(t, err, client.ErrQuotaExceeded, "a wait would take a place in the queue, past the limit")
}

// At the --max-locks limit, an acquire with a request ID is refused by
// the state machine, in log order, and its refusal is remembered: a retry
// is refused again even once there is room, as its first attempt would be
// if it reached the log after the retry. The member refused such acquires
// from its own state, before the log: a first attempt still on its way was
// then granted after its caller had been told no (the lock table's
// campaign, tests/robustness ProfileLockLimit, seed 1, where the SDK's
// take-back released it again soon after).
func TestMaxLocksRefusesARequestWithAnIDInLogOrder(t *testing.T) {
	c, cl := single(t, func(cfg *config.Server) { cfg.Limits.MaxLocks = 2 })
	ctx := context.Background()
	s := liveSession(t, cl)
	b, _, first := grantedWithRequestID(t, c, s)
	over := &concordv1.BatchCall{Id: 2, Request: &concordv1.BatchCall_LockAcquire{LockAcquire: &concordv1.AcquireRequest{
		Claims: []*concordv1.LockClaim{{Name: "n", Kind: concordv1.LockKind_LOCK_KIND_MUTEX}}, Session: s.ID(), Owner: "p",
		Meta: &concordv1.WriteMeta{ClientId: "retrying-client", RequestId: 8}}}}
	b.send(over)
	refused := b.results(1)[2]
	require.Equal(t, "QUOTA_EXCEEDED", refused.GetError().GetInfo().GetReason())

	require.NoError(t, cl.ReleaseLocks(ctx, s, "o", []string{"m"}, first.GetLockAcquire().GetToken()))
	over.Id = 3
	b.send(over)
	again := b.results(1)[3]
	require.Equal(t, "QUOTA_EXCEEDED", again.GetError().GetInfo().GetReason(), "the retry, with room now, is answered as the first attempt")
	locks, err := cl.ListLocks(ctx, "")
	require.NoError(t, err)
	require.Empty(t, locks, "the retry took nothing")
}

// A refusal over --max-locks sends nothing after it: the SDK takes back
// only an acquire that may have been applied (ErrUnknownOutcome). It took
// back every refusal by sending the acquire again to learn what it took;
// after a member's refusal, which left nothing in the log, that was a new
// acquire, granted once there was room, then released (the lock-limit
// fault campaign found the lock held by a refused acquire's owner).
func TestMaxLocksRefusalIsNotTakenBack(t *testing.T) {
	c, cl := single(t, func(cfg *config.Server) { cfg.Limits.MaxLocks = 2 })
	ctx := context.Background()
	s := liveSession(t, cl)
	_, err := cl.AcquireLocks(ctx, s, "holder", []*client.LockClaim{{Name: "a", Kind: client.KindMutex}}, client.AcquireOptions{})
	require.NoError(t, err)
	fsm := c.Members[0].Daemon().Server().FSM()
	before := fsm.AppliedIndex()
	_, err = cl.AcquireLocks(ctx, s, "refused", []*client.LockClaim{{Name: "b", Kind: client.KindMutex}}, client.AcquireOptions{})
	require.ErrorIs(t, err, client.ErrQuotaExceeded)
	require.NotErrorIs(t, err, client.ErrUnknownOutcome)
	time.Sleep(300 * time.Millisecond) // a take-back runs in the background
	require.Equal(t, before+1, fsm.AppliedIndex(), "the refusal is one entry of the log, and nothing follows it")
}
