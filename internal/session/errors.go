package session

import "github.com/concord-dev/concord/internal/errs"

var (
	// ErrNotFound is returned for a session that does not exist: it never
	// did, it expired, or it was revoked.
	ErrNotFound = errs.New("SESSION_NOT_FOUND", "session: not found (it expired, was revoked or never existed)")
	// ErrTTLOutOfRange is returned when a requested TTL is outside the
	// server's bounds.
	ErrTTLOutOfRange = errs.New("SESSION_TTL_OUT_OF_RANGE", "session: ttl out of range")
	// ErrTooMany is returned when the server holds its maximum number of
	// sessions.
	ErrTooMany = errs.New("TOO_MANY_SESSIONS", "session: too many sessions")
)
