package idgen

import (
	"context"
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
// clients; a caller whose ctx ends after its batch was sent may leave its
// value unused (strictness is about what is handed out, not what is used).
type Sequence struct {
	src  SequenceSource
	name string
	max  int64

	mu      sync.Mutex
	waiting []chan seqResult
	running bool
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
	ch := make(chan seqResult, 1)
	s.mu.Lock()
	s.waiting = append(s.waiting, ch)
	if !s.running {
		s.running = true
		go s.loop()
	}
	s.mu.Unlock()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (s *Sequence) loop() {
	for {
		s.mu.Lock()
		n := min(int64(len(s.waiting)), s.max)
		if n == 0 {
			s.running = false
			s.mu.Unlock()
			return
		}
		batch := s.waiting[:n]
		s.waiting = s.waiting[n:]
		s.mu.Unlock()
		first, _, err := s.src.NextSequence(context.Background(), s.name, n)
		for i, ch := range batch {
			ch <- seqResult{v: first + int64(i), err: err}
		}
	}
}
