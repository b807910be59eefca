package idgen

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// SegmentSource hands out blocks of a tag's numbers: [start, end). The
// SDK's *client.Client is one.
type SegmentSource interface {
	AllocSegment(ctx context.Context, tag string, count int64) (start, end int64, err error)
}

// SegmentConfig configures a segment buffer. Zero fields take the defaults.
type SegmentConfig struct {
	// Step is the first segment's size; default 1,000. The tag's step (of
	// CreateTag) is not read: it sizes the members' buffers only.
	Step int64
	// MinStep and MaxStep bound the adaptive size; defaults 100 and
	// 1,000,000,000 (the server's default --max-segment-step).
	MinStep, MaxStep int64
	// Target is how long one segment should last: when a segment lasted
	// less than half of it, the size grows by Target/lasted (at least 2x,
	// at most 1024x); when it lasted more than twice, the size halves;
	// default 10s.
	Target time.Duration
	// Prefetch is the fraction of a segment left when the next one is
	// fetched in the background; default 0.5.
	Prefetch float64
	// FetchTimeout bounds one fetch; default 10s.
	FetchTimeout time.Duration
}

func (c *SegmentConfig) setDefaults() {
	if c.Step <= 0 {
		c.Step = 1000
	}
	if c.MinStep <= 0 {
		c.MinStep = 100
	}
	if c.MaxStep <= 0 {
		c.MaxStep = 1_000_000_000
	}
	c.Step = min(max(c.Step, c.MinStep), c.MaxStep)
	if c.Target <= 0 {
		c.Target = 10 * time.Second
	}
	if c.Prefetch <= 0 || c.Prefetch >= 1 {
		c.Prefetch = 0.5
	}
	if c.FetchTimeout <= 0 {
		c.FetchTimeout = 10 * time.Second
	}
}

type segment struct {
	next atomic.Int64 // next number to hand out
	end  int64
	size int64
}

// SegmentStats counts what a buffer did.
type SegmentStats struct {
	Issued      int64
	Fetches     int64
	FetchErrors int64
	StepChanges int64
	Step        int64
	// Buffered is how many numbers are ready: what is left of the current
	// segment plus the prefetched one.
	Buffered int64
	// Waits counts calls that found both segments empty and waited for a
	// fetch.
	Waits int64
	// MaxFetch is the slowest fetch seen.
	MaxFetch time.Duration
}

// Segments is a double buffer of a tag's numbers: callers take numbers
// from the current segment without a network call; when it is half used the
// next one is fetched in the background, so a burst finds it ready. If both
// run out, callers wait for the fetch in flight; they never fail with "not
// ready". Numbers increase within a buffer; a crash loses at most what is
// left in the buffer.
type Segments struct {
	src SegmentSource
	tag string
	cfg SegmentConfig

	cur atomic.Pointer[segment]

	mu        sync.Mutex
	spare     *segment
	fetching  bool
	fetchDone chan struct{}
	fetchErr  error
	step      int64
	lastFetch time.Time

	issued, fetches, fetchErrors, stepChanges, waits atomic.Int64
	maxFetch                                         atomic.Int64
}

// NewSegments returns a buffer of tag's numbers. The first segment is
// fetched on first use.
func NewSegments(src SegmentSource, tag string, cfg SegmentConfig) *Segments {
	cfg.setDefaults()
	return &Segments{src: src, tag: tag, cfg: cfg, step: cfg.Step}
}

// Next returns the next number. It blocks only while both segments are
// empty and a fetch is in flight, until ctx ends.
func (s *Segments) Next(ctx context.Context) (int64, error) {
	for {
		if seg := s.cur.Load(); seg != nil {
			if v := seg.next.Add(1) - 1; v < seg.end {
				s.issued.Add(1)
				if seg.end-v == int64(float64(seg.size)*s.cfg.Prefetch) {
					s.prefetch()
				}
				return v, nil
			}
		}
		if err := s.advance(ctx); err != nil {
			return 0, err
		}
	}
}

// prefetch starts fetching the next segment unless one is ready or coming.
func (s *Segments) prefetch() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.spare == nil && !s.fetching {
		s.startFetch()
	}
}

// advance moves to the prefetched segment, or waits for one.
func (s *Segments) advance(ctx context.Context) error {
	s.mu.Lock()
	seg := s.cur.Load()
	if seg != nil && seg.next.Load() < seg.end {
		s.mu.Unlock()
		return nil
	}
	if s.spare != nil {
		s.cur.Store(s.spare)
		s.spare = nil
		s.mu.Unlock()
		return nil
	}
	if !s.fetching {
		s.startFetch()
	}
	done := s.fetchDone
	s.mu.Unlock()
	s.waits.Add(1)
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.spare == nil && s.fetchErr != nil {
		return s.fetchErr
	}
	return nil
}

// startFetch fetches the next segment in the background. The caller holds
// s.mu.
func (s *Segments) startFetch() {
	s.fetching = true
	s.fetchErr = nil
	s.fetchDone = make(chan struct{})
	count := s.adapt()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.FetchTimeout)
		start := time.Now()
		lo, hi, err := s.src.AllocSegment(ctx, s.tag, count)
		cancel()
		took := time.Since(start)
		for {
			m := s.maxFetch.Load()
			if int64(took) <= m || s.maxFetch.CompareAndSwap(m, int64(took)) {
				break
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.fetching = false
		if err != nil {
			s.fetchErrors.Add(1)
			s.fetchErr = err
		} else {
			s.fetches.Add(1)
			seg := &segment{end: hi, size: hi - lo}
			seg.next.Store(lo)
			if cur := s.cur.Load(); cur == nil || cur.next.Load() >= cur.end {
				s.cur.Store(seg)
			} else {
				s.spare = seg
			}
		}
		close(s.fetchDone)
	}()
}

// adapt sizes the next segment so that it lasts about the target time.
func (s *Segments) adapt() int64 {
	now := time.Now()
	if !s.lastFetch.IsZero() {
		lasted := now.Sub(s.lastFetch)
		switch {
		case lasted < s.cfg.Target/2 && s.step < s.cfg.MaxStep:
			// Grow by as much as the segment fell short, so that a buffer
			// meeting a high rate reaches a lasting size in a few fetches
			// instead of one doubling per fetch.
			f := min(max(int64(s.cfg.Target/max(lasted, time.Microsecond)), 2), 1024)
			s.step = min(f*s.step, s.cfg.MaxStep)
			s.stepChanges.Add(1)
		case lasted > 2*s.cfg.Target && s.step > s.cfg.MinStep:
			s.step = max(s.step/2, s.cfg.MinStep)
			s.stepChanges.Add(1)
		}
	}
	s.lastFetch = now
	return s.step
}

// Stats returns the buffer's counters.
func (s *Segments) Stats() SegmentStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var buffered int64
	if seg := s.cur.Load(); seg != nil {
		buffered = max(0, seg.end-seg.next.Load())
	}
	if s.spare != nil {
		buffered += s.spare.end - s.spare.next.Load()
	}
	return SegmentStats{Issued: s.issued.Load(), Fetches: s.fetches.Load(), FetchErrors: s.fetchErrors.Load(),
		StepChanges: s.stepChanges.Load(), Step: s.step, Buffered: buffered, Waits: s.waits.Load(),
		MaxFetch: time.Duration(s.maxFetch.Load())}
}
