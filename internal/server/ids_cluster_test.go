package server_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/client/idgen"
	"github.com/concord-dev/concord/internal/clock"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/testcluster"
)

func TestSnowflakeWorkersAreLeasedAndFenced(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	s1 := session(t, cl, time.Second)
	g1, err := idgen.NewSnowflake(ctx, idgen.NewSessionWorkers(s1), idgen.SnowflakeConfig{Guard: 2 * time.Second})
	require.NoError(t, err)
	g2, err := idgen.NewSnowflake(ctx, idgen.NewSessionWorkers(session(t, cl, 5*time.Second)), idgen.SnowflakeConfig{Guard: 2 * time.Second})
	require.NoError(t, err)
	require.NotEqual(t, g1.WorkerID(), g2.WorkerID())

	seen := map[int64]bool{}
	for i := 0; i < 20000; i++ {
		for _, g := range []*idgen.Snowflake{g1, g2} {
			id, err := g.Next()
			require.NoError(t, err)
			require.False(t, seen[id])
			seen[id] = true
		}
	}
	// The first generator's session is lost: it stops, and its worker ID is
	// not leased again before the guard interval.
	lostID := g1.WorkerID()
	s1.Orphan()
	require.Eventually(t, func() bool {
		_, err := g1.Next()
		return err != nil
	}, 5*time.Second, 10*time.Millisecond)
	_, err = g1.Next()
	require.ErrorIs(t, err, client.ErrWorkerLost)
	g3, err := idgen.NewSnowflake(ctx, idgen.NewSessionWorkers(session(t, cl, 5*time.Second)), idgen.SnowflakeConfig{Guard: 2 * time.Second})
	require.NoError(t, err)
	require.NotEqual(t, lostID, g3.WorkerID(), "a freed worker ID is guarded")

	workers, bits, err := cl.ListWorkers(ctx, "default")
	require.NoError(t, err)
	require.Equal(t, 10, bits)
	require.GreaterOrEqual(t, len(workers), 3)
}

func TestMembersServeUniqueIDs(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	_, err := cl.CreateTag(ctx, "orders", 1000, 50)
	require.NoError(t, err)
	_, err = cl.NextIDs(ctx, "nope", 1)
	require.ErrorIs(t, err, client.ErrUnknownTag)
	_, err = cl.NextIDs(ctx, "orders", 1_000_000)
	require.ErrorIs(t, err, client.ErrInvalidArgument)
	_, err = cl.CreateTag(ctx, "orders", 1, 50)
	require.ErrorIs(t, err, client.ErrTagExists)

	var mu sync.Mutex
	seenTag, seenSnow := map[int64]bool{}, map[int64]bool{}
	var wg sync.WaitGroup
	for i := range c.Members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := c.Client(i)
			var lastTag, lastSnow int64
			for r := 0; r < 30; r++ {
				ids, err := m.NextIDs(ctx, "orders", 37)
				require.NoError(t, err)
				snow, err := m.NextSnowflakes(ctx, 11)
				require.NoError(t, err)
				mu.Lock()
				for _, id := range ids {
					require.False(t, seenTag[id], "segment ID %d twice", id)
					require.Greater(t, id, lastTag, "one member's IDs increase")
					require.GreaterOrEqual(t, id, int64(1000))
					seenTag[id], lastTag = true, id
				}
				for _, id := range snow {
					require.False(t, seenSnow[id], "snowflake %d twice", id)
					require.Greater(t, id, lastSnow)
					seenSnow[id], lastSnow = true, id
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	tags, err := cl.ListTags(ctx)
	require.NoError(t, err)
	require.Len(t, tags, 1)
	require.Greater(t, tags[0].GetFetches(), int64(2))
}

func TestSegmentsNeverGoBackAcrossLeaderChanges(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	_, err := cl.CreateTag(ctx, "t", 0, 10)
	require.NoError(t, err)
	var last int64 = -1
	for round := 0; round < 2; round++ {
		for i := 0; i < 20; i++ {
			start, end, err := cl.AllocSegment(ctx, "t", 10)
			require.NoError(t, err)
			require.Greater(t, start, last)
			require.Equal(t, start+10, end)
			last = end - 1
		}
		old := c.WaitLeader(5 * time.Second)
		c.Kill(old)
		c.WaitNewLeader(old, 10*time.Second)
		c.Restart(old)
	}
}

func TestStrictSequenceIsGapFree(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	seqs := []*idgen.Sequence{idgen.NewSequence(c.Client(0), "invoice", 0), idgen.NewSequence(c.Client(1), "invoice", 0)}
	const n = 400
	got := make(chan int64, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := seqs[i%2].Next(ctx)
			require.NoError(t, err)
			got <- v
		}()
	}
	wg.Wait()
	close(got)
	seen := map[int64]bool{}
	for v := range got {
		require.False(t, seen[v])
		seen[v] = true
	}
	for v := int64(1); v <= n; v++ {
		require.True(t, seen[v], "gap at %d", v)
	}
}

// TestConcurrentNextIDsAreCoalesced checks the SDK's coalescing of
// concurrent NextIDs calls: each caller gets exactly its n IDs, unique and
// increasing per caller, also when the server's --max-ids-per-call is
// below what a coalesced call asks for.
func TestConcurrentNextIDsAreCoalesced(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1, Configure: func(_ int, cfg *config.Server) {
		cfg.Limits.MaxIDsPerCall = 50
	}})
	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	_, err := cl.CreateTag(ctx, "coalesced", 1, 100)
	require.NoError(t, err)

	var mu sync.Mutex
	seen := map[int64]bool{}
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last int64
			for r := 0; r < 40; r++ {
				n := int64(1 + (g*7+r)%40)
				ids, err := cl.NextIDs(ctx, "coalesced", n)
				if !assert.NoError(t, err) {
					return
				}
				assert.Len(t, ids, int(n))
				mu.Lock()
				for _, id := range ids {
					assert.False(t, seen[id], "ID %d twice", id)
					assert.Greater(t, id, last, "one caller's IDs increase")
					seen[id], last = true, id
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	_, err = cl.NextIDs(ctx, "coalesced", 51)
	require.ErrorIs(t, err, client.ErrInvalidArgument, "a lone call above the limit is still refused")
}

// stepClock is the real clock plus an offset the test can step.
type stepClock struct{ off atomic.Int64 }

func (c *stepClock) Now() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }

// TestMemberClockStepAheadFailsNextSnowflakes steps a follower's clock two
// hours ahead (an NTP step, a VM resume) after its generator started. Its
// generator retried the reservation the leader refused forever, and
// NextSnowflakes never answered. It now answers INVALID_ID_REQUEST at once,
// drops the generator (revoking its session, which frees the worker ID),
// and serves again from a fresh one once the clock is back.
func TestMemberClockStepAheadFailsNextSnowflakes(t *testing.T) {
	clocks := []*stepClock{{}, {}, {}}
	c := testcluster.Start(t, testcluster.Options{Clock: func(i int) clock.Clock { return clocks[i] }})
	leader := c.WaitLeader(20 * time.Second)
	f := (leader + 1) % len(c.Members)
	cl := c.Client(f)
	ctx := ctxT(t, 30*time.Second)
	first, err := cl.NextSnowflakes(ctx, 1)
	require.NoError(t, err)

	clocks[f].off.Store(int64(2 * time.Hour))
	// Each call is refused; the member keeps its generator, which renews
	// again on the next call, rather than lease a worker ID per call: a
	// first fix dropped it, and 30 refused calls used 30 worker IDs (1,024,
	// the whole pool, in 6 s), each held for its guard, so that the other
	// members could not serve snowflakes either.
	for i := range 30 {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = cl.NextSnowflakes(cctx, 1)
		cancel()
		var ce *client.Error
		require.ErrorAs(t, err, &ce, "call %d", i)
		require.Equal(t, "INVALID_ID_REQUEST", ce.Reason, "call %d: %v", i, err)
	}
	workers, _, err := cl.ListWorkers(ctx, "default")
	require.NoError(t, err)
	require.LessOrEqual(t, len(workers), 2, "refused calls leased worker IDs: %v", workers)

	clocks[f].off.Store(0)
	next, err := cl.NextSnowflakes(ctx, 1)
	require.NoError(t, err)
	require.NotEqual(t, first[0], next[0])
}

// A member whose clock is an hour ahead before it ever started a generator
// has each start refused: it answers the refusal from memory for a second
// rather than start another generator per call, each of which leased a
// worker ID and held it for its guard (932 worker IDs in 9 s in a review's
// run).
func TestRefusedGeneratorStartIsRemembered(t *testing.T) {
	clocks := []*stepClock{{}, {}, {}}
	c := testcluster.Start(t, testcluster.Options{Clock: func(i int) clock.Clock { return clocks[i] }})
	leader := c.WaitLeader(20 * time.Second)
	f := (leader + 1) % len(c.Members)
	clocks[f].off.Store(int64(2 * time.Hour))
	cl := c.Client(f)
	ctx := ctxT(t, 30*time.Second)
	start := time.Now()
	calls := 0
	for ; calls < 30; calls++ {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := cl.NextSnowflakes(cctx, 1)
		cancel()
		var ce *client.Error
		require.ErrorAs(t, err, &ce, "call %d", calls)
		require.Equal(t, "INVALID_ID_REQUEST", ce.Reason, "call %d: %v", calls, err)
	}
	starts := int(time.Since(start)/time.Second) + 1 // one start per second at most
	workers, _, err := cl.ListWorkers(ctx, "default")
	require.NoError(t, err)
	require.LessOrEqual(t, len(workers), starts, "%d refused calls in %s leased %d worker IDs", calls, time.Since(start), len(workers))
}
