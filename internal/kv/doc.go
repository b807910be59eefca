// Package kv is the key-value capability of the state machine: an ordered map
// of immutable items with revisions, multi-key transactions, bounded counters
// and a bounded history of events for watches.
//
// Store is not safe for concurrent use; the state machine serializes writes
// and lets reads run under its read lock. Items are never mutated once
// stored, so a Clone of the tree (lazy copy-on-write) is a consistent
// snapshot that can be written out while writes go on.
package kv
