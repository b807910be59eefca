package workload

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestCutOffWhileHolding checks the cut-off step the holder workloads
// share: it draws from the client's random stream only while the client
// has cut-offs left (a seed replays the same choices), cuts off one time in
// 12 and at most limit times, and counts the cut-offs and those the SDK
// told of.
func TestCutOffWhileHolding(t *testing.T) {
	// Seeds whose first draw of IntN(12) is 0 (cut) and is not.
	var cutSeed, keepSeed uint64
	for s := uint64(1); cutSeed == 0 || keepSeed == 0; s++ {
		switch cuts := rand.New(rand.NewPCG(s, 0)).IntN(12) == 0; {
		case cuts && cutSeed == 0:
			cutSeed = s
		case !cuts && keepSeed == 0:
			keepSeed = s
		}
	}
	// next returns the next draw of a stream, to tell how many draws the
	// step took from its copy.
	next := func(rng *rand.Rand) uint64 { return rng.Uint64() }
	after := func(seed uint64, draws int) uint64 {
		rng := rand.New(rand.NewPCG(seed, 0))
		for range draws {
			rng.IntN(12)
		}
		return next(rng)
	}

	cut, err := newCutOff([]string{"127.0.0.1:1"})
	require.NoError(t, err)
	defer cut.close()
	cut.limit, cut.wait, cut.counters = 1, 20*time.Millisecond, &counters{}
	ctx := context.Background()
	lost := make(chan struct{})

	t.Run("a nil cut-off never draws", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(cutSeed, 0))
		require.False(t, (*cutOff)(nil).whileHolding(ctx, rng, lost))
		require.Equal(t, after(cutSeed, 0), next(rng))
	})
	t.Run("one draw, no cut", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(keepSeed, 0))
		require.False(t, cut.whileHolding(ctx, rng, lost))
		require.Equal(t, after(keepSeed, 1), next(rng))
		require.Empty(t, cut.counters.snapshot("w"))
	})
	t.Run("cut, not told within the wait", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(cutSeed, 0))
		require.True(t, cut.whileHolding(ctx, rng, lost))
		require.Equal(t, after(cutSeed, 1), next(rng))
		require.Equal(t, map[string]int{"w cut-offs": 1}, cut.counters.snapshot("w"))
	})
	t.Run("no cut-offs left: no draw", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(cutSeed, 0))
		require.False(t, cut.whileHolding(ctx, rng, lost))
		require.Equal(t, after(cutSeed, 0), next(rng))
	})
	t.Run("cut, told", func(t *testing.T) {
		cut.limit = 2
		close(lost)
		rng := rand.New(rand.NewPCG(cutSeed, 0))
		require.True(t, cut.whileHolding(ctx, rng, lost))
		require.Equal(t, map[string]int{"w cut-offs": 2, "w cut-offs told": 1}, cut.counters.snapshot("w"))
	})
}
