// Package server runs one concord member: the Raft node and state machine,
// the write path (propose on the leader, forward from followers), the read
// barriers behind each consistency level, the leader's duties (session
// expiry, promotion of caught-up learners) and membership changes.
//
// Handlers in internal/api call the Server's methods; every method takes a
// ctx, validates its input against the configured limits before anything is
// proposed, and returns errors that wrap the owning package's sentinels.
package server
