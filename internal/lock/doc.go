// Package lock is the lock capability of the state machine: mutexes,
// read-write locks and counting semaphores as first-class objects, each with
// holders and a FIFO queue of waiters, all bound to sessions.
//
// A grant happens in the same applied command as the change that made it
// possible (a release, a cancelled waiter, a session's end), and its fencing
// token is that command's Raft index: strictly greater than every earlier
// grant of the lock. Waiters are served in the order they queued; a waiter
// that claims several mutexes at once (all or none) holds its place in every
// queue, so two multi-lock waiters can never deadlock each other.
//
// Table is deterministic and not safe for concurrent use; the state machine
// serializes access. Leader-only work (releasing holds whose hold time ran
// out) happens through the HoldTracker, which acts only by proposing
// commands.
package lock
