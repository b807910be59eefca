package workload

import "sync"

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
