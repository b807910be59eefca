// Package fsm is concord's replicated state machine: it decodes each Raft
// log entry into a command, routes it to the capability that owns it (kv,
// session, member, ...), remembers client request IDs so a retried write is
// applied once, and snapshots and restores every capability's section.
//
// Apply is deterministic: it never reads the clock (the leader stamps its
// time into each command), never draws random numbers, never lets map order
// matter and does no I/O. The same log applied to two state machines gives
// the same Hash.
package fsm
