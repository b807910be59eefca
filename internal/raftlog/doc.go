// Package raftlog is concord's Raft log store: a segmented, append-only log
// that costs one write and one fdatasync per append (raft-boltdb pays two
// fsyncs and a B+tree update), reads entries by offset, and compacts by
// dropping whole segments. It implements hashicorp/raft's LogStore and
// MonotonicLogStore; the stable store (term and vote) stays in bbolt.
//
// Crash safety: an append is acknowledged only after its fdatasync; a torn
// tail of the newest segment is cut off at open; a deleted prefix is
// recorded in a small meta file before segments are removed, and a suffix is
// removed newest segment first, so a crash at any point leaves a prefix of
// the log, never a hole. See docs/architecture.md, "The log store".
package raftlog
