package client

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// AfterEnd's function runs in the call that ends the grant, with the cause
// set; a stopped one never runs; one registered after the end runs at once.
func TestGrantAfterEndRunsInTheEndingCall(t *testing.T) {
	g := testGrant(7, "a", "x")
	var got []error
	g.AfterEnd(func() { got = append(got, context.Cause(g.Context())) })
	stop := g.AfterEnd(func() { t.Error("a stopped function ran") })
	if !stop() {
		t.Fatal("stop of a registered function reported false")
	}
	if stop() {
		t.Fatal("a second stop reported true")
	}
	g.lose(ErrLockLost)
	if len(got) != 1 || !errors.Is(got[0], ErrLockLost) {
		t.Fatalf("after lose returned: got %v, want one call with ErrLockLost", got)
	}
	g.lose(ErrNotHeld) // a second end runs nothing again
	ran := false
	stop = g.AfterEnd(func() { ran = true })
	if !ran || stop() {
		t.Fatalf("registered after the end: ran %v, stop %v; want true, false", ran, stop())
	}
	if len(got) != 1 {
		t.Fatalf("the function ran %d times", len(got))
	}
}

// Two calls ending a grant at once both return after its functions ran.
func TestGrantAfterEndConcurrentEnds(t *testing.T) {
	for range 200 {
		g := testGrant(7, "a", "x")
		var mu sync.Mutex
		n := 0
		g.AfterEnd(func() { mu.Lock(); n++; mu.Unlock() })
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g.lose(ErrLockLost)
				mu.Lock()
				defer mu.Unlock()
				if n != 1 {
					t.Errorf("lose returned before the function ran (ran %d times)", n)
				}
			}()
		}
		wg.Wait()
	}
}
