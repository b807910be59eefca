package workload

import (
	"math/rand/v2"
	"sync"
	"time"
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

// HolderConfig shapes the clients of the workloads that hold locks under
// sessions (locks, fence).
type HolderConfig struct {
	// Clients is the number of clients (default 3).
	Clients int
	// TTL is the clients' session TTL (default 2s).
	TTL time.Duration
	// Wait bounds a Lock call (default 6s); OpTimeout the other calls
	// (default 3s).
	Wait, OpTimeout time.Duration
	// Stalls is how many times each client stalls while holding a lock
	// (default 1; negative: never): it stops keeping its session alive and
	// waits longer than the session can live, as a paused client would.
	Stalls int
	// Pace is the most a client waits between rounds (default: the
	// workload's).
	Pace time.Duration
}

func (c *HolderConfig) setDefaults(pace time.Duration) {
	if c.Clients == 0 {
		c.Clients = 3
	}
	c.Clients = max(c.Clients, 0)
	if c.TTL <= 0 {
		c.TTL = 2 * time.Second
	}
	if c.Wait <= 0 {
		c.Wait = 6 * time.Second
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = 3 * time.Second
	}
	if c.Stalls == 0 {
		c.Stalls = 1
	}
	c.Stalls = max(c.Stalls, 0)
	if c.Pace <= 0 {
		c.Pace = pace
	}
}
