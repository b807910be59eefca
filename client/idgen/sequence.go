package idgen

import (
	"context"
	"slices"
	"sync"
)

// SequenceSource hands out the next n values of a gap-free sequence. The
// SDK's *client.Client is one.
type SequenceSource interface {
	NextSequence(ctx context.Context, name string, n int64) (first, last int64, err error)
}

// Sequence batches the callers of a strict sequence: the callers waiting
// while one request is in flight share the next request, so the cost is one
// Raft write per batch, not per value. Values are gap-free across all
// clients. A caller whose ctx ends while it waits for its batch to be sent
// leaves the queue and takes no value. Only one whose ctx ends after its
// batch was sent may leave its value unused: concord handed the value out
// and it is not reused (strictness is about what is handed out, not what
// is used), as with a caller that crashes.
type Sequence struct {
	src  SequenceSource
	name string
	max  int64

	mu      sync.Mutex
	waiting []*seqWaiter
	running bool
}

type seqWaiter struct {
	ctx context.Context
	ch  chan seqResult
}

type seqResult struct {
	v   int64
	err error
}

// NewSequence returns a batching client of the named sequence; a batch holds
// at most maxBatch values (default 1,000).
func NewSequence(src SequenceSource, name string, maxBatch int64) *Sequence {
	if maxBatch <= 0 {
		maxBatch = 1000
	}
	return &Sequence{src: src, name: name, max: maxBatch}
}

// Next returns the next value.
func (s *Sequence) Next(ctx context.Context) (int64, error) {
	w := &seqWaiter{ctx: ctx, ch: make(chan seqResult, 1)}
	s.mu.Lock()
	s.waiting = append(s.waiting, w)
	if !s.running {
		s.running = true
		go s.loop()
	}
	s.mu.Unlock()
	select {
	case r := <-w.ch:
		return r.v, r.err
	case <-ctx.Done():
	}
	// Still queued: leave, so that the batch does not count a value for
	// nobody (a gap in what the callers get).
	s.mu.Lock()
	if i := slices.Index(s.waiting, w); i >= 0 {
		s.waiting = slices.Delete(s.waiting, i, i+1)
		s.mu.Unlock()
		return 0, ctx.Err()
	}
	s.mu.Unlock()
	// Gone from the queue: the loop dropped this waiter, or its batch was
	// sent and its value is spent either way, so take it if it has come.
	select {
	case r := <-w.ch:
		return r.v, r.err
	default:
		return 0, ctx.Err()
	}
}

func (s *Sequence) loop() {
	for {
		s.mu.Lock()
		// Waiters whose ctx ended but who have not left yet are dropped
		// here; they find themselves gone from the queue.
		s.waiting = slices.DeleteFunc(s.waiting, func(w *seqWaiter) bool { return w.ctx.Err() != nil })
		n := min(int64(len(s.waiting)), s.max)
		if n == 0 {
			s.running = false
			s.mu.Unlock()
			return
		}
		batch := s.waiting[:n:n]
		s.waiting = s.waiting[n:]
		s.mu.Unlock()
		first, _, err := s.src.NextSequence(context.Background(), s.name, n)
		for i, w := range batch {
			w.ch <- seqResult{v: first + int64(i), err: err}
		}
	}
}
