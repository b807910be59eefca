package lock

import "github.com/concord-dev/concord/internal/errs"

var (
	// ErrNotHeld is returned when releasing a lock the caller does not hold,
	// or holds under another token.
	ErrNotHeld = errs.New("LOCK_NOT_HELD", "lock: not held by this owner (or held under another token)")
	// ErrKindMismatch is returned when a lock is claimed as another kind
	// (or a semaphore with another capacity) than it exists as.
	ErrKindMismatch = errs.New("LOCK_KIND_MISMATCH", "lock: exists with another kind or capacity")
	// ErrTooManyPermits is returned for a semaphore request above its
	// capacity, or a capacity below 1.
	ErrTooManyPermits = errs.New("TOO_MANY_PERMITS", "lock: permits requested exceed the semaphore's capacity")
	// ErrWouldDeadlock is returned for an upgrade from read to write while
	// other readers hold the lock: two such upgrades would wait forever.
	ErrWouldDeadlock = errs.New("WOULD_DEADLOCK", "lock: upgrade would deadlock")
	// ErrInvalidClaim is returned for a malformed request: no claims, an
	// empty name, duplicate names, a multi-lock claim on something other
	// than mutexes, no owner.
	ErrInvalidClaim = errs.New("INVALID_LOCK_REQUEST", "lock: invalid request")
	// ErrAlreadyWaiting is returned when an owner that already waits for a
	// lock asks for it again with another request (another mode, other
	// permits, other locks or hold time): answering with the queued wait
	// would grant what it did not ask for.
	ErrAlreadyWaiting = errs.New("LOCK_ALREADY_WAITING", "lock: this owner already waits with another request")
	// ErrAlreadyHeld is returned when an owner that holds a lock asks for
	// it again with another request (other permits, another hold time, or
	// a read-write conversion with another hold time): answering with the
	// grant would leave it believing it has what it did not get.
	ErrAlreadyHeld = errs.New("LOCK_ALREADY_HELD", "lock: this owner already holds the lock under another request")
	// ErrNotWaiting is returned when cancelling a wait that is not queued.
	ErrNotWaiting = errs.New("LOCK_NOT_WAITING", "lock: no such waiter")
)
