package workload

import (
	"math/rand/v2"
	"sync"
)

// counters counts what a workload's clients did, for the run's report.
type counters struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counters) add(name string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[name] += n
}

// snapshot returns the counts, each name prefixed with the workload's.
func (c *counters) snapshot(workload string) map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.m))
	for k, v := range c.m {
		out[workload+" "+k] = v
	}
	return out
}

// runClients runs n clients until each returns, client i with its own
// random stream (the run's seed, stream+i), so a seed replays the same
// choices.
func runClients(n int, seed int64, stream uint64, run func(i int, rng *rand.Rand)) {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run(i, rand.New(rand.NewPCG(uint64(seed), stream+uint64(i))))
		}()
	}
	wg.Wait()
}
