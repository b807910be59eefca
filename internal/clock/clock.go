// Package clock is the time source of every lease and TTL computation, so
// tests can run a node's clock with an offset and a rate.
package clock

import (
	"sync"
	"time"
)

// Clock tells the time.
type Clock interface {
	// Now returns the current time. Differences between two readings of
	// the same Clock measure elapsed time.
	Now() time.Time
}

// Real is the system clock.
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// Skewed runs at Rate times real time and Offset ahead of it, from the
// moment it was made. Rate 1 and Offset 0 make it the real clock. It is used
// by fault-injection runs to give nodes fast and slow clocks.
type Skewed struct {
	start  time.Time
	Offset time.Duration
	Rate   float64
}

// NewSkewed returns a clock offset from real time that advances at rate.
func NewSkewed(offset time.Duration, rate float64) *Skewed {
	if rate <= 0 {
		rate = 1
	}
	return &Skewed{start: time.Now(), Offset: offset, Rate: rate}
}

// Now returns the skewed time.
func (s *Skewed) Now() time.Time {
	elapsed := time.Since(s.start)
	return s.start.Add(s.Offset + time.Duration(float64(elapsed)*s.Rate))
}

// Fake is a manually advanced clock for tests.
type Fake struct {
	mu  sync.Mutex
	now time.Time
}

// NewFake returns a fake clock set to t.
func NewFake(t time.Time) *Fake { return &Fake{now: t} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Advance moves the fake time by d (which may be negative).
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}
