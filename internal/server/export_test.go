package server

import (
	"context"
	"testing"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
)

// RemovedCheckInterval is removedCheckInterval, for the tests.
const RemovedCheckInterval = removedCheckInterval

// AskRemoved runs one round of the removal check, as a member that knows
// no leader does, and reports whether it stopped the member.
func (s *Server) AskRemoved(ctx context.Context) bool { return s.askRemoved(ctx) }

// SetBeforeGrantJudged makes f run when an acquire answered GRANTED is
// about to be checked against this member's applied state; nil removes it.
// f runs on the goroutine that answers: on a leader's batch stream, the
// state machine's, which f must then not block.
func (s *Server) SetBeforeGrantJudged(f func(*concordv1.AcquireRequest)) {
	if f == nil {
		s.beforeGrantJudged.Store(nil)
		return
	}
	s.beforeGrantJudged.Store(&f)
}

// HoldLearners keeps the leaders of the process from promoting learners
// until t ends.
func HoldLearners(t testing.TB) {
	learnersHeld.Store(true)
	t.Cleanup(func() { learnersHeld.Store(false) })
}
