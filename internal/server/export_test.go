package server

import "context"

// RemovedCheckInterval is removedCheckInterval, for the tests.
const RemovedCheckInterval = removedCheckInterval

// AskRemoved runs one round of the removal check, as a member that knows
// no leader does, and reports whether it stopped the member.
func (s *Server) AskRemoved(ctx context.Context) bool { return s.askRemoved(ctx) }
