// Package robustness is concord's fault-injection and model-checking
// harness: its Jepsen. A run starts a real cluster of 3 or 5 concord
// processes built from the tree (package cluster), drives client workloads
// against it from goroutines that record every call and return on one
// monotonic clock (packages workload and history), injects faults on a
// schedule drawn from a seed (package nemesis), heals everything, and then
// checks what the clients saw (package checker):
//
//   - linearizability of the key-value operations with porcupine,
//     partitioned per key, with an HTML visualization on failure;
//   - watch streams: in order, without gaps, nothing invented;
//   - sessions: nothing expired while kept alive on time, nothing outlives
//     its session;
//   - locks: mutexes checked with porcupine against a model whose grants
//     carry increasing fencing tokens and may end when their session may
//     have expired; a shared list appended to through fenced writes loses
//     nothing, and its tokens never go back;
//   - lock loss is not silent: no lock is granted to a client while another
//     client's grant that conflicts with it is still held as its holder
//     saw it (its Lost not closed, nor due by the SDK's own deadline or
//     hold time), and a grant's Lost closes within a bound of that
//     deadline;
//   - IDs: segment allocations behave as a counter, every stream of IDs
//     (a client, a member's buffer, a generator) increases, and no ID is
//     returned twice;
//   - liveness after the heal (one ready leader, a write succeeds) and
//     convergence (every member at the same applied index and state hash).
//
// A run is reproducible from its profile and seed: the same seed draws the
// same fault schedule and the same client choices. A failed run prints its
// seed, the command that replays it, its fault timeline, and where it kept
// the history, the visualizations and the members' data dirs and logs.
//
// See docs/robustness.md for the faults, the workloads, the checkers and
// how to run the campaigns.
package robustness
