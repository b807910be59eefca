package lock

import (
	"errors"
	"testing"
)

// FuzzValidateAgreesWithAcquire: members refuse an acquire's shape with
// Validate before proposing it, so the state machine must agree exactly. On
// an empty table (nothing held, the session live), Acquire fails for its
// shape (ErrInvalidClaim, ErrTooManyPermits) exactly when Validate does,
// with the same error, and never panics on what Validate lets through.
func FuzzValidateAgreesWithAcquire(f *testing.F) {
	f.Add("a", uint8(1), uint8(0), int64(1), int64(1), "b", uint8(1), uint8(0), int64(1), int64(1), true, "o", int64(0))
	f.Add("s", uint8(3), uint8(0), int64(2), int64(3), "", uint8(0), uint8(0), int64(0), int64(0), false, "o", int64(100))
	f.Add("rw", uint8(2), uint8(2), int64(1), int64(0), "rw", uint8(2), uint8(1), int64(1), int64(0), true, "", int64(-1))
	f.Add("s", uint8(3), uint8(0), int64(0), int64(1<<31), "m", uint8(1), uint8(0), int64(0), int64(0), true, "o", int64(5))
	f.Fuzz(func(t *testing.T, n1 string, k1, m1 uint8, p1, c1 int64, n2 string, k2, m2 uint8, p2, c2 int64, two bool, owner string, holdMs int64) {
		claims := []Claim{{Name: n1, Kind: Kind(k1), Mode: Mode(m1), Permits: p1, Capacity: c1}}
		if two {
			claims = append(claims, Claim{Name: n2, Kind: Kind(k2), Mode: Mode(m2), Permits: p2, Capacity: c2})
		}
		r := Request{Claims: claims, Session: 1, Owner: owner, Wait: true, HoldMs: holdMs}
		verr := Validate(r)
		tb := NewTable(liveSessions{1: true})
		_, aerr := tb.Acquire(10, 1000, r)
		shape := errors.Is(aerr, ErrInvalidClaim) || errors.Is(aerr, ErrTooManyPermits)
		if (verr == nil) == shape {
			t.Fatalf("Validate: %v; Acquire on an empty table: %v", verr, aerr)
		}
		if verr != nil && verr.Error() != aerr.Error() {
			t.Fatalf("Validate refused with %q, Acquire with %q", verr, aerr)
		}
		if verr == nil && aerr != nil {
			t.Fatalf("Acquire on an empty table refused a request Validate accepts: %v", aerr)
		}
	})
}
