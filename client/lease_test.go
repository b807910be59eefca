package client

import (
	"testing"
	"time"
)

// The SDK counts a session's TTL and a grant's hold time 0.5% short of the
// server's count, from the send of the request that started them, so that a
// leader clock running up to 0.5% fast cannot end a hold the SDK vouches
// for (see clockRateMargin).
func TestHoldDeadlineKeepsAClockRateMargin(t *testing.T) {
	sent := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	end, known := holdDeadline(42, AcquireOptions{Hold: 10 * time.Second}, sent, true)
	if !known {
		t.Fatal("the hold end of a fresh grant is unknown")
	}
	if want := sent.Add(10*time.Second - 50*time.Millisecond); !end.Equal(want) {
		t.Fatalf("a 10 s hold sent at %s ends at %s by the SDK's count, want %s (0.5%% short)", sent, end, want)
	}
	if got, want := leaseEnd(sent, 2*time.Second), sent.Add(1990*time.Millisecond); !got.Equal(want) {
		t.Fatalf("a 2 s TTL is counted until %s, want %s", got, want)
	}
	if end, known := holdDeadline(42, AcquireOptions{}, sent, true); !known || !end.IsZero() {
		t.Fatalf("a grant without a hold time has a hold end %s (known %v)", end, known)
	}
}
