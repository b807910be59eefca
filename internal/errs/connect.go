package errs

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
)

// Codes is the one table that maps every reason to a gRPC (Connect) code.
// HTTP statuses follow from the code as the Connect protocol defines them:
// InvalidArgument, FailedPrecondition and OutOfRange are 400, NotFound 404,
// AlreadyExists 409, ResourceExhausted 429, Unauthenticated 401,
// Unavailable 503, DeadlineExceeded 504, Unimplemented 501, Internal 500.
// docs/errors.md lists them all; a test keeps it complete.
var Codes = map[string]connect.Code{
	"EMPTY_KEY":                connect.CodeInvalidArgument,
	"KEY_TOO_LARGE":            connect.CodeInvalidArgument,
	"VALUE_TOO_LARGE":          connect.CodeInvalidArgument,
	"REQUEST_TOO_LARGE":        connect.CodeInvalidArgument,
	"TOO_MANY_OPS":             connect.CodeInvalidArgument,
	"INVALID_RANGE":            connect.CodeInvalidArgument,
	"INVALID_COMPARE":          connect.CodeInvalidArgument,
	"EMPTY_OP":                 connect.CodeInvalidArgument,
	"INVALID_ARGUMENT":         connect.CodeInvalidArgument,
	"SESSION_TTL_OUT_OF_RANGE": connect.CodeInvalidArgument,
	"BAD_COMMAND":              connect.CodeInvalidArgument,
	"REQUEST_ID_REUSED":        connect.CodeInvalidArgument,
	"OUT_OF_RANGE":             connect.CodeFailedPrecondition,
	"NOT_A_COUNTER":            connect.CodeFailedPrecondition,
	"COMPACTED":                connect.CodeOutOfRange,
	"SESSION_NOT_FOUND":        connect.CodeNotFound,
	"MEMBER_NOT_FOUND":         connect.CodeNotFound,
	"MEMBER_EXISTS":            connect.CodeAlreadyExists,
	"QUOTA_EXCEEDED":           connect.CodeResourceExhausted,
	"TOO_MANY_SESSIONS":        connect.CodeResourceExhausted,
	"NOT_LEADER":               connect.CodeUnavailable,
	"NO_LEADER":                connect.CodeUnavailable,
	"SHUTTING_DOWN":            connect.CodeUnavailable,
	"UNKNOWN_OUTCOME":          connect.CodeUnavailable,
	"TRANSFER_FAILED":          connect.CodeUnavailable,
	"TIMEOUT":                  connect.CodeDeadlineExceeded,
	"UNAUTHENTICATED":          connect.CodeUnauthenticated,
	"LOCK_COMPARE_UNSUPPORTED": connect.CodeUnimplemented,
	"INTERNAL":                 connect.CodeInternal,
	"LOCK_NOT_HELD":            connect.CodeFailedPrecondition,
	"LOCK_KIND_MISMATCH":       connect.CodeFailedPrecondition,
	"TOO_MANY_PERMITS":         connect.CodeInvalidArgument,
	"WOULD_DEADLOCK":           connect.CodeFailedPrecondition,
	"INVALID_LOCK_REQUEST":     connect.CodeInvalidArgument,
	"LOCK_NOT_WAITING":         connect.CodeFailedPrecondition,
	"LOCK_ALREADY_WAITING":     connect.CodeFailedPrecondition,
	"LOCK_ALREADY_HELD":        connect.CodeFailedPrecondition,
	"UNKNOWN_TAG":              connect.CodeNotFound,
	"TAG_EXISTS":               connect.CodeAlreadyExists,
	"NO_WORKER_IDS":            connect.CodeResourceExhausted,
	"WORKER_NOT_HELD":          connect.CodeFailedPrecondition,
	"LAYOUT_MISMATCH":          connect.CodeFailedPrecondition,
	"IDS_EXHAUSTED":            connect.CodeResourceExhausted,
	"INVALID_ID_REQUEST":       connect.CodeInvalidArgument,
	"EMPTY_CALL":               connect.CodeInvalidArgument,
	"TOO_MANY_WAITS":           connect.CodeResourceExhausted,
	"CLOCK_BEHIND":             connect.CodeUnavailable,
	"TOO_MANY_WATCHES":         connect.CodeResourceExhausted,
}

// ToConnect converts an error for the wire: a sentinel's reason travels as
// an ErrorInfo detail with the code from Codes; context errors become
// Canceled or DeadlineExceeded; errors already of type *connect.Error pass.
func ToConnect(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	var info *concordv1.ErrorInfo
	code := connect.CodeInternal
	var e *Error
	switch {
	case errors.As(err, &e):
		info = &concordv1.ErrorInfo{Reason: e.reason}
		if c, ok := Codes[e.reason]; ok {
			code = c
		}
	case errors.Is(err, context.DeadlineExceeded):
		code = connect.CodeDeadlineExceeded
		info = &concordv1.ErrorInfo{Reason: "TIMEOUT"}
	case errors.Is(err, context.Canceled):
		code = connect.CodeCanceled
	default:
		info = &concordv1.ErrorInfo{Reason: "INTERNAL"}
	}
	out := connect.NewError(code, errors.New(err.Error()))
	var rev interface{ Revision() uint64 }
	if info != nil && errors.As(err, &rev) {
		info.Revision = rev.Revision()
	}
	if info != nil {
		if d, derr := connect.NewErrorDetail(info); derr == nil {
			out.AddDetail(d)
		}
	}
	return out
}

// InfoOf returns the ErrorInfo detail of a Connect error, if any.
func InfoOf(err error) (*concordv1.ErrorInfo, bool) {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return nil, false
	}
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr != nil {
			continue
		}
		if info, ok := v.(*concordv1.ErrorInfo); ok {
			return info, true
		}
	}
	return nil, false
}

// FromConnect turns an error received from another member back into an
// error wrapping the local sentinel of its reason.
func FromConnect(err error) error {
	if err == nil {
		return nil
	}
	info, ok := InfoOf(err)
	if !ok || info.GetReason() == "" {
		return err
	}
	var ce *connect.Error
	msg := err.Error()
	if errors.As(err, &ce) {
		msg = ce.Message()
	}
	return Rebuild(info.GetReason(), msg)
}
