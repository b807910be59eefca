package api

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestFramedConnsWaitForTheLastOne(t *testing.T) {
	var f framedConns
	if err := f.wait(context.Background()); err != nil {
		t.Fatalf("no connection open: %v", err)
	}
	f.add()
	f.add()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := f.wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("two open, wait ended with %v", err)
	}
	got := make(chan error, 1)
	go func() { got <- f.wait(context.Background()) }()
	f.done()
	select {
	case err := <-got:
		t.Fatalf("one still open, wait ended with %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	f.done()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the last connection closed and wait did not end")
	}
	// A connection switched after a wait ended is counted again.
	f.add()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if err := f.wait(ctx2); err == nil {
		t.Fatal("one open, wait returned nil")
	}
	f.done()
}
