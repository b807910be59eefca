package idgen

import (
	"context"
	"sync"
	"time"

	"github.com/concord-dev/concord/client"
)

// fakeClock is a wall clock tests move by hand; Sleep advances it.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(d time.Duration) { c.Advance(d) }

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakeWorkers mimics the state machine's worker leases in memory.
type fakeWorkers struct {
	mu     sync.Mutex
	bits   int
	hw     map[int64]int64
	held   map[int64]bool
	done   chan struct{}
	leases int
}

func newFakeWorkers() *fakeWorkers {
	return &fakeWorkers{hw: map[int64]int64{}, held: map[int64]bool{}, done: make(chan struct{})}
}

func (f *fakeWorkers) Lease(_ context.Context, _ string, bits int, _ time.Duration) (int64, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id := int64(0); id < int64(1)<<bits; id++ {
		if !f.held[id] {
			f.held[id] = true
			f.leases++
			return id, f.hw[id], nil
		}
	}
	return 0, 0, client.ErrNoWorkerIDs
}

func (f *fakeWorkers) Reserve(_ context.Context, _ string, id, until int64) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.held[id] {
		return 0, client.ErrWorkerLost
	}
	f.hw[id] = max(f.hw[id], until)
	return f.hw[id], nil
}

func (f *fakeWorkers) Release(_ context.Context, _ string, id int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.held[id] = false
	return nil
}

func (f *fakeWorkers) Done() <-chan struct{} { return f.done }
