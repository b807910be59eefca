package api

import (
	"context"
	"testing"
	"time"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
)

func callWithTimeout(ms int64) *concordv1.BatchCall { return &concordv1.BatchCall{TimeoutMs: ms} }

func TestMessageContextTakesTheLatestDeadlineAndEndsWithTheLastCall(t *testing.T) {
	calls := []*concordv1.BatchCall{callWithTimeout(5000), callWithTimeout(0), callWithTimeout(4990)}
	before := time.Now()
	ctx, done := messageContext(context.Background(), calls)
	d, ok := ctx.Deadline()
	if !ok || d.Before(before.Add(defaultCallTimeout)) {
		t.Fatalf("deadline %v (set %v), want at least %v from now: a call without a timeout gets the default", d, ok, defaultCallTimeout)
	}
	done()
	done()
	if ctx.Err() != nil {
		t.Fatal("the message context ended before its last call")
	}
	done()
	if ctx.Err() == nil {
		t.Fatal("the message context outlived its last call")
	}

	empty, _ := messageContext(context.Background(), nil)
	if empty.Err() == nil {
		t.Fatal("the context of an empty message must be cancelled at once")
	}
}

func TestCallContextNarrowsOnlyAMuchShorterTimeout(t *testing.T) {
	start := time.Now()
	msg, cancel := context.WithDeadline(context.Background(), start.Add(30*time.Second))
	defer cancel()

	ctx, stop := callContext(msg, callWithTimeout(50), start)
	defer stop()
	if d, _ := ctx.Deadline(); d.After(start.Add(51 * time.Millisecond)) {
		t.Fatalf("a 50 ms call in a 30 s message runs until %v after its start", d.Sub(start))
	}

	same, stop2 := callContext(msg, callWithTimeout(29_000), start)
	defer stop2()
	if same != msg {
		t.Fatal("a call whose timeout is close to its message's should share the message's context")
	}

	bare, stop3 := callContext(context.Background(), callWithTimeout(0), start)
	defer stop3()
	if d, ok := bare.Deadline(); !ok || d.Sub(start) != defaultCallTimeout {
		t.Fatalf("a call with no message deadline: deadline %v after start, want %v", d.Sub(start), defaultCallTimeout)
	}
}
