package ids

import "github.com/concord-dev/concord/internal/errs"

var (
	// ErrUnknownTag is returned for a segment tag that was never created.
	ErrUnknownTag = errs.New("UNKNOWN_TAG", "ids: unknown tag")
	// ErrTagExists is returned when a tag is created again with other
	// settings.
	ErrTagExists = errs.New("TAG_EXISTS", "ids: tag exists with other settings")
	// ErrNoWorkerIDs is returned when every worker ID of a pool is leased
	// or inside its guard interval.
	ErrNoWorkerIDs = errs.New("NO_WORKER_IDS", "ids: no worker ID free")
	// ErrWorkerNotHeld is returned when a session reserves or releases a
	// worker ID it does not hold.
	ErrWorkerNotHeld = errs.New("WORKER_NOT_HELD", "ids: worker ID not held by this session")
	// ErrLayoutMismatch is returned when a pool is used with another number
	// of worker bits than it was created with.
	ErrLayoutMismatch = errs.New("LAYOUT_MISMATCH", "ids: pool exists with another layout")
	// ErrExhausted is returned when a tag or sequence would pass the int64
	// range.
	ErrExhausted = errs.New("IDS_EXHAUSTED", "ids: range exhausted")
	// ErrInvalid is returned for malformed requests: empty names, counts
	// below 1, bad bit counts.
	ErrInvalid = errs.New("INVALID_ID_REQUEST", "ids: invalid request")
)
