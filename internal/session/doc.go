// Package session is the session (lease) capability: the state machine's
// table of live sessions, and the leader's expiry tracker that decides when a
// session's TTL has run out.
//
// The table is deterministic state. Expiry is not: only the leader measures
// time, and it ends a session by proposing a command. A new leader starts
// every TTL afresh before it expires anything, so a leader change never cuts
// a session short.
package session
