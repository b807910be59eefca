// Package errs gives sentinel errors a stable, machine-readable reason.
//
// Sentinels are declared in the package that owns the concept (kv, session,
// server, ...) with New. The reason travels through Raft results, the peer
// protocol and the client API, so a sentinel raised on the leader is still
// errors.Is-comparable after it was forwarded to a follower, and the SDK can
// map it back to its own exported sentinel. internal/api holds the one table
// that maps reasons to gRPC codes and HTTP statuses.
package errs

import (
	"errors"
	"fmt"
	"sync"
)

// Error is a sentinel with a reason. Compare with errors.Is against the
// declared variable; wrap with fmt.Errorf("%w: ...") to add detail.
type Error struct {
	reason string
	msg    string
}

// Error returns the human message.
func (e *Error) Error() string { return e.msg }

// Reason returns the stable reason, for example "KEY_NOT_FOUND".
func (e *Error) Reason() string { return e.reason }

var (
	mu       sync.RWMutex
	registry = map[string]*Error{}
)

// New declares a sentinel. Reasons are unique; declaring one twice panics at
// init time, which a test of any importing package catches.
func New(reason, msg string) *Error {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[reason]; dup {
		panic("errs: duplicate reason " + reason)
	}
	e := &Error{reason: reason, msg: msg}
	registry[reason] = e
	return e
}

// Lookup returns the sentinel declared with reason.
func Lookup(reason string) (*Error, bool) {
	mu.RLock()
	defer mu.RUnlock()
	e, ok := registry[reason]
	return e, ok
}

// Reasons returns every declared reason.
func Reasons() []string {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]string, 0, len(registry))
	for r := range registry {
		out = append(out, r)
	}
	return out
}

// ReasonOf returns the reason of the first sentinel in err's chain, or
// fallback when there is none.
func ReasonOf(err error, fallback string) string {
	var e *Error
	if errors.As(err, &e) {
		return e.reason
	}
	return fallback
}

// Rebuild turns a reason and message received from another node back into an
// error that wraps the local sentinel, so errors.Is keeps working. An unknown
// reason yields a plain error carrying the message.
func Rebuild(reason, message string) error {
	s, ok := Lookup(reason)
	if !ok {
		return errors.New(message)
	}
	if message == "" || message == s.msg {
		return s
	}
	return &rebuilt{sentinel: s, msg: message}
}

type rebuilt struct {
	sentinel *Error
	msg      string
}

func (r *rebuilt) Error() string { return r.msg }
func (r *rebuilt) Unwrap() error { return r.sentinel }

// Wrapf wraps sentinel with a formatted detail: "<sentinel>: <detail>".
func Wrapf(sentinel *Error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}
