package client

import (
	"context"
	"errors"
	"fmt"
	"net"

	"connectrpc.com/connect"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
)

// Sentinel errors. Every error the SDK returns for a server-side condition
// wraps one of them; test with errors.Is.
var (
	// ErrNotFound: the key (or member) does not exist.
	ErrNotFound = errors.New("concord: not found")
	// ErrCompareFailed: a compare-and-swap or conditional write found the
	// key in another state; nothing was written.
	ErrCompareFailed = errors.New("concord: compare failed")
	// ErrSessionExpired: the session expired, was revoked, or never
	// existed.
	ErrSessionExpired = errors.New("concord: session expired or not found")
	// ErrTooLarge: a key, value or request exceeds the server's limits.
	ErrTooLarge = errors.New("concord: too large")
	// ErrEmptyKey: a key is required.
	ErrEmptyKey = errors.New("concord: empty key")
	// ErrInvalidArgument: the request is malformed (bad range, compare,
	// TTL outside bounds, too many operations, ...).
	ErrInvalidArgument = errors.New("concord: invalid argument")
	// ErrOutOfRange: a bounded counter add would leave its bounds; nothing
	// changed.
	ErrOutOfRange = errors.New("concord: counter out of range")
	// ErrNotCounter: the key does not hold a decimal integer.
	ErrNotCounter = errors.New("concord: value is not a counter")
	// ErrCompacted: a watch asked for a revision no longer in history.
	ErrCompacted = errors.New("concord: revision compacted")
	// ErrQuotaExceeded: the cluster is at its size quota or session limit.
	ErrQuotaExceeded = errors.New("concord: quota exceeded")
	// ErrUnavailable: no member could serve the request in time (no
	// leader, no quorum, members down or shutting down).
	ErrUnavailable = errors.New("concord: unavailable")
	// ErrUnknownOutcome: a write may or may not have been applied, and the
	// SDK could not settle it within the retry window.
	ErrUnknownOutcome = errors.New("concord: write outcome unknown")
	// ErrUnauthenticated: the token is missing or wrong.
	ErrUnauthenticated = errors.New("concord: unauthenticated")
	// ErrMemberExists: a member with that name or address exists.
	ErrMemberExists = errors.New("concord: member exists")
	// ErrUnsupported: the server does not support the request.
	ErrUnsupported = errors.New("concord: unsupported")
	// ErrClosed: the client was closed (or, for a session's Err and the
	// calls made on it, the session was closed or orphaned). Alone it says
	// the call had no effect; a call cut short by Close after an attempt
	// that may have taken effect wraps ErrUnknownOutcome too.
	ErrClosed = errors.New("concord: client closed")
	// ErrNotHeld: the lock is not held by this owner, or under another
	// token (it was lost, or never taken).
	ErrNotHeld = errors.New("concord: lock not held")
	// ErrLockLost: a held lock ended other than by Unlock: its session
	// expired, its hold time ended, or an operator force-released it.
	ErrLockLost = errors.New("concord: lock lost")
	// ErrConversionLost: a conversion (AcquireOptions.Converts: an
	// RWMutex's Upgrade or Downgrade) reached the server after the grant it
	// converts had ended there (force-released, its hold time or its
	// session over) unseen by the SDK: the server answered LOST (reason
	// "converted grant ended") and took nothing. It wraps ErrLockLost, and
	// the converted grant ends with it as its cause. No other error is it:
	// a conversion that fails before reaching the server, or whose outcome
	// is unknown, is not. Needs the cluster at rules version 2.
	ErrConversionLost = fmt.Errorf("%w: converted grant ended", ErrLockLost)
	// ErrLocked: a try-lock found the lock taken (or others queued).
	ErrLocked = errors.New("concord: lock is taken")
	// ErrTooManyPermits: a semaphore request above its capacity.
	ErrTooManyPermits = errors.New("concord: too many permits")
	// ErrWouldDeadlock: a read-to-write upgrade while other readers hold.
	ErrWouldDeadlock = errors.New("concord: would deadlock")
	// ErrAlreadyWaiting: the owner (the lock handle) already waits for the
	// lock with another request (another mode, other permits or locks).
	ErrAlreadyWaiting = errors.New("concord: owner already waits with another request")
	// ErrAlreadyHeld: the owner (the lock handle) already holds the lock
	// with another request (other permits, another hold time).
	ErrAlreadyHeld = errors.New("concord: owner already holds the lock with another request")
	// ErrLockKindMismatch: the lock exists as another kind (or a
	// semaphore of another capacity).
	ErrLockKindMismatch = errors.New("concord: lock exists with another kind")
	// ErrUnknownTag: the segment tag was never created.
	ErrUnknownTag = errors.New("concord: unknown tag")
	// ErrTagExists: the tag exists with other settings.
	ErrTagExists = errors.New("concord: tag exists with other settings")
	// ErrNoWorkerIDs: every worker ID of the pool is leased or guarded.
	ErrNoWorkerIDs = errors.New("concord: no worker ID free")
	// ErrWorkerLost: the generator's worker ID lease ended (its session
	// was lost, or another holder took it).
	ErrWorkerLost = errors.New("concord: worker ID lost")
	// ErrLayoutMismatch: an ID layout does not match the pool's, or does not
	// add up.
	ErrLayoutMismatch = errors.New("concord: ID layout mismatch")
	// ErrExhausted: a tag, sequence or snowflake time field ran out.
	ErrExhausted = errors.New("concord: ID range exhausted")
)

// reasons maps the server's stable reasons to sentinels.
var reasons = map[string]error{
	"KEY_NOT_FOUND":            ErrNotFound,
	"MEMBER_NOT_FOUND":         ErrNotFound,
	"SESSION_NOT_FOUND":        ErrSessionExpired,
	"EMPTY_KEY":                ErrEmptyKey,
	"KEY_TOO_LARGE":            ErrTooLarge,
	"VALUE_TOO_LARGE":          ErrTooLarge,
	"REQUEST_TOO_LARGE":        ErrTooLarge,
	"TOO_MANY_OPS":             ErrInvalidArgument,
	"INVALID_RANGE":            ErrInvalidArgument,
	"INVALID_COMPARE":          ErrInvalidArgument,
	"EMPTY_OP":                 ErrInvalidArgument,
	"INVALID_ARGUMENT":         ErrInvalidArgument,
	"SESSION_TTL_OUT_OF_RANGE": ErrInvalidArgument,
	"BAD_COMMAND":              ErrInvalidArgument,
	"REQUEST_ID_REUSED":        ErrInvalidArgument,
	"OUT_OF_RANGE":             ErrOutOfRange,
	"NOT_A_COUNTER":            ErrNotCounter,
	"COMPACTED":                ErrCompacted,
	"QUOTA_EXCEEDED":           ErrQuotaExceeded,
	"TOO_MANY_SESSIONS":        ErrQuotaExceeded,
	"NOT_LEADER":               ErrUnavailable,
	"NO_LEADER":                ErrUnavailable,
	"SHUTTING_DOWN":            ErrUnavailable,
	"UNKNOWN_OUTCOME":          ErrUnknownOutcome,
	"TRANSFER_FAILED":          ErrUnavailable,
	"TIMEOUT":                  ErrUnknownOutcome,
	"UNAUTHENTICATED":          ErrUnauthenticated,
	"MEMBER_EXISTS":            ErrMemberExists,
	"LOCK_COMPARE_UNSUPPORTED": ErrUnsupported,
	"LOCK_NOT_HELD":            ErrNotHeld,
	"LOCK_NOT_WAITING":         ErrNotHeld,
	"LOCK_ALREADY_WAITING":     ErrAlreadyWaiting,
	"LOCK_ALREADY_HELD":        ErrAlreadyHeld,
	"LOCK_KIND_MISMATCH":       ErrLockKindMismatch,
	"TOO_MANY_PERMITS":         ErrTooManyPermits,
	"WOULD_DEADLOCK":           ErrWouldDeadlock,
	"INVALID_LOCK_REQUEST":     ErrInvalidArgument,
	"UNKNOWN_TAG":              ErrUnknownTag,
	"TAG_EXISTS":               ErrTagExists,
	"NO_WORKER_IDS":            ErrNoWorkerIDs,
	"WORKER_NOT_HELD":          ErrWorkerLost,
	"LAYOUT_MISMATCH":          ErrLayoutMismatch,
	"IDS_EXHAUSTED":            ErrExhausted,
	"INVALID_ID_REQUEST":       ErrInvalidArgument,
	"EMPTY_CALL":               ErrInvalidArgument,
	"TOO_MANY_WAITS":           ErrQuotaExceeded,
	"CLOCK_BEHIND":             ErrUnavailable,
	"TOO_MANY_WATCHES":         ErrQuotaExceeded,
}

// Reasons lists the server reasons the SDK maps to sentinels.
func Reasons() []string {
	out := make([]string, 0, len(reasons))
	for r := range reasons {
		out = append(out, r)
	}
	return out
}

// Error is a server error: its stable reason, the server's message, and the
// sentinel it wraps.
type Error struct {
	// Reason is the server's stable reason, e.g. "KEY_TOO_LARGE".
	Reason string
	// Message is the server's message for people.
	Message string
	// Code is the gRPC code.
	Code connect.Code
	// Revision is set where it explains the error (the compacted
	// revision of a watch).
	Revision uint64
	sentinel error
}

func (e *Error) Error() string { return "concord: " + e.Message }

// Unwrap returns the sentinel.
func (e *Error) Unwrap() error { return e.sentinel }

// fromWire converts an error received from a member.
func fromWire(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr != nil {
			continue
		}
		info, ok := v.(*concordv1.ErrorInfo)
		if !ok {
			continue
		}
		sentinel := reasons[info.GetReason()]
		if sentinel == nil {
			sentinel = errors.New("concord: " + info.GetReason())
		}
		return &Error{Reason: info.GetReason(), Message: ce.Message(), Code: ce.Code(), Revision: info.GetRevision(), sentinel: sentinel}
	}
	// Every error a member raises carries an ErrorInfo; one without it
	// came from the transport or the protocol layer.
	switch ce.Code() {
	case connect.CodeCanceled:
		return context.Canceled
	case connect.CodeDeadlineExceeded:
		return context.DeadlineExceeded
	case connect.CodeUnauthenticated:
		return fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	case connect.CodeResourceExhausted:
		return fmt.Errorf("%w: %v", ErrTooLarge, err)
	case connect.CodeInvalidArgument:
		return fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	case connect.CodeUnimplemented:
		return fmt.Errorf("%w: %v", ErrUnsupported, err)
	default:
		if errors.As(err, new(notSent)) {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if notDialed(err) {
			return fmt.Errorf("%w: %w", ErrUnavailable, notSent{err})
		}
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
}

// notSent marks an error of a call that never left this process: the
// connection to the member could not be made.
type notSent struct{ error }

// notDialed reports whether err is a failure to connect (refused, no
// route, a dial timeout): the request was never written.
func notDialed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// reasonOf returns the server reason of a converted error.
func reasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}
