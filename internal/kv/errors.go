package kv

import "github.com/concord-dev/concord/internal/errs"

var (
	// ErrEmptyKey is returned when a request that names one key gives none.
	ErrEmptyKey = errs.New("EMPTY_KEY", "kv: key is empty")
	// ErrKeyTooLarge is returned for a key above the configured limit.
	ErrKeyTooLarge = errs.New("KEY_TOO_LARGE", "kv: key too large")
	// ErrValueTooLarge is returned for a value above the configured limit.
	ErrValueTooLarge = errs.New("VALUE_TOO_LARGE", "kv: value too large")
	// ErrTooManyOps is returned for a transaction with more compares or
	// operations than the configured limit.
	ErrTooManyOps = errs.New("TOO_MANY_OPS", "kv: too many operations in transaction")
	// ErrInvalidRange is returned when range_end sorts before key, or when
	// prefix and range_end are both set.
	ErrInvalidRange = errs.New("INVALID_RANGE", "kv: invalid range")
	// ErrInvalidCompare is returned for a compare without a target or an
	// operator.
	ErrInvalidCompare = errs.New("INVALID_COMPARE", "kv: invalid compare")
	// ErrEmptyOp is returned for a transaction operation that is empty.
	ErrEmptyOp = errs.New("EMPTY_OP", "kv: empty transaction operation")
	// ErrOutOfRange is returned when a counter add would leave its bounds
	// or overflow int64; nothing is changed.
	ErrOutOfRange = errs.New("OUT_OF_RANGE", "kv: counter result out of bounds")
	// ErrNotCounter is returned when Add targets a key whose value is not a
	// decimal int64.
	ErrNotCounter = errs.New("NOT_A_COUNTER", "kv: value is not an integer counter")
	// ErrCompacted is returned for a watch that starts at a revision no
	// longer kept in the event history.
	ErrCompacted = errs.New("COMPACTED", "kv: revision compacted")
	// ErrLockUnsupported is returned for a lock-token compare when no lock
	// module is wired in.
	ErrLockUnsupported = errs.New("LOCK_COMPARE_UNSUPPORTED", "kv: lock compares are not supported")
)
