package server

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/concord-dev/concord/internal/clock"
	"github.com/concord-dev/concord/internal/lock"
)

// A client whose Acquire stream broke resumes its wait on a new stream; the
// old stream's handler may register and unregister after the new one did.
// The grant must still reach the new stream (it used to be dropped, and the
// resumed waiter waited for ever while holding the lock).
func TestLockHubKeepsEveryStreamOfAWaiter(t *testing.T) {
	h := newLockHub(lock.NewHoldTracker(clock.Real{}), newLockMetrics(prometheus.NewRegistry()))
	resumed := h.waitFor(7)
	old := h.waitFor(7)
	h.forgetWaiter(7, old)
	h.Granted(lock.Grant{Name: "l", Token: 9, Waiter: 7})
	select {
	case ev := <-resumed:
		if !ev.granted || ev.token != 9 {
			t.Fatalf("resumed stream got %+v", ev)
		}
	default:
		t.Fatal("the grant did not reach the resumed stream")
	}

	hold := holdKey("l", 9, 1, "o")
	resumedHold := h.watchHold(hold)
	oldHold := h.watchHold(hold)
	h.forgetHold(hold, oldHold)
	h.Released(lock.Release{Name: "l", Token: 9, Session: 1, Owner: "o", Reason: lock.ReasonForced})
	select {
	case ev := <-resumedHold:
		if ev.reason != lock.ReasonForced {
			t.Fatalf("resumed hold got %+v", ev)
		}
	default:
		t.Fatal("the loss did not reach the resumed stream")
	}
	h.forgetWaiter(7, resumed)
	h.forgetHold(hold, resumedHold)
	if len(h.waiters) != 0 || len(h.holders) != 0 {
		t.Fatalf("registrations left behind: %d waiters, %d holders", len(h.waiters), len(h.holders))
	}
}
