// Package ids is the distributed-ID capability of the state machine.
//
//   - Worker IDs for snowflake generators, leased per pool and bound to the
//     generator's session. Each worker ID carries a time high-water mark: a
//     generator may issue timestamps only below the mark it has reserved, and
//     the next holder of the ID starts above it, so no two incarnations of a
//     worker ID ever issue the same timestamp, whatever their clocks say. A
//     freed ID is leased again only after a guard interval.
//   - Segments (Meituan Leaf): per business tag, [next, next+count) handed
//     out atomically and durably; the tag never moves backwards.
//   - Strict sequences: gap-free counters, one command per batch.
//
// Table is deterministic and not safe for concurrent use.
package ids
