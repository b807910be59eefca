package server

import (
	"errors"

	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/fsm"
)

var (
	// ErrQuotaExceeded is returned for a write that would grow the state
	// beyond its configured bounds. Deletes are always accepted.
	ErrQuotaExceeded = fsm.ErrQuotaExceeded
	// ErrRequestTooLarge is returned for a request above the size limit.
	ErrRequestTooLarge = errs.New("REQUEST_TOO_LARGE", "server: request too large")
	// ErrInvalidArgument is returned for a malformed request.
	ErrInvalidArgument = errs.New("INVALID_ARGUMENT", "server: invalid argument")
	// ErrTimeout is returned when the server could not complete a request
	// in time; for a write the outcome is unknown.
	ErrTimeout = errs.New("TIMEOUT", "server: request timed out")
	// ErrClockBehind is returned for snowflakes this member cannot issue
	// yet: its clock is behind the high-water mark of the worker ID it
	// holds, by more than its generator waits.
	ErrClockBehind = errs.New("CLOCK_BEHIND", "server: clock behind the worker ID's reservation")
	// ErrTooManyWatches is returned for a watch beyond --max-watches open
	// streams on this member.
	ErrTooManyWatches = errs.New("TOO_MANY_WATCHES", "server: too many watch streams on this member")
)

// ErrSeedMismatch stops a member restored from a backup (`concord snapshot
// restore`) when another voter was seeded with a different state: another
// backup, or another --bump-index or --bump-ids. Such members start at
// the same index with different states and would diverge silently.
// `concord server` exits non-zero. It is a member's fatal error, never an
// API error.
var ErrSeedMismatch = errors.New("this member and another voter were restored with different states")
