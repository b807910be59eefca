package raft

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDeferErrorErrorContext(t *testing.T) {
	var d deferError
	d.init()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.ErrorContext(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("unanswered future with a done context: %v, want context.Canceled", err)
	}
	want := errors.New("boom")
	d.respond(want)
	if err := d.ErrorContext(ctx); err != want {
		t.Fatalf("answered future: %v, want %v", err, want)
	}
	if err := d.Error(); err != want {
		t.Fatalf("Error after ErrorContext: %v, want %v", err, want)
	}

	var s deferError
	s.init()
	s.ShutdownCh = make(chan struct{})
	close(s.ShutdownCh)
	if err := s.ErrorContext(context.Background()); err != ErrRaftShutdown {
		t.Fatalf("future of a shut down node: %v, want ErrRaftShutdown", err)
	}
}

func TestApplyAfterShutdownFails(t *testing.T) {
	c := MakeCluster(1, t, nil)
	defer c.Close()
	r := c.Leader()
	if err := r.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if err := r.Apply([]byte("x"), 0).Error(); err != ErrRaftShutdown {
			t.Fatalf("apply after shutdown: %v, want ErrRaftShutdown", err)
		}
	}
}

// TestApplyNotify: a leader calls done once per accepted command, after the
// apply, in log order; a follower settles it with ErrNotLeader; a shut
// down node accepts nothing.
func TestApplyNotify(t *testing.T) {
	c := MakeCluster(3, t, nil)
	defer c.Close()
	leader := c.Leader()

	const n = 200
	type outcome struct {
		index uint64
		resp  any
		err   error
	}
	got := make(chan outcome, 2*n)
	for i := range n {
		ok := leader.ApplyNotify([]byte{byte(i)}, func(f ApplyFuture) {
			got <- outcome{f.Index(), f.Response(), f.Error()}
		})
		if !ok {
			// The apply queue was full: what a caller falls back from.
			if err := leader.Apply([]byte{byte(i)}, 0).Error(); err != nil {
				t.Fatalf("apply %d: %v", i, err)
			}
			got <- outcome{index: ^uint64(0)}
		}
	}
	var last uint64
	for i := range n {
		o := <-got
		if o.index == ^uint64(0) {
			continue
		}
		if o.err != nil {
			t.Fatalf("command %d: %v", i, o.err)
		}
		if o.index <= last {
			t.Fatalf("command %d settled at index %d after index %d", i, o.index, last)
		}
		last = o.index
		if _, ok := o.resp.(int); !ok {
			t.Fatalf("command %d: response %v, want the FSM's answer", i, o.resp)
		}
	}
	select {
	case o := <-got:
		t.Fatalf("a command was settled twice: %+v", o)
	case <-time.After(100 * time.Millisecond):
	}

	follower := c.Followers()[0]
	errc := make(chan error, 2)
	// concord: without BatchApplyCh the apply channel is unbuffered, so a
	// follower whose loop is busy (storing the appends above) refuses the
	// hand-over, as a leader's full queue does; it takes one once free.
	deadline := time.Now().Add(5 * time.Second)
	for !follower.ApplyNotify([]byte("x"), func(f ApplyFuture) { errc <- f.Error() }) {
		if time.Now().After(deadline) {
			t.Fatal("a follower refused every command for 5 s instead of settling one")
		}
		time.Sleep(time.Millisecond)
	}
	if err := <-errc; err != ErrNotLeader {
		t.Fatalf("command on a follower: %v, want ErrNotLeader", err)
	}

	if err := follower.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	if follower.ApplyNotify([]byte("x"), func(ApplyFuture) { t.Error("done called on a shut down node") }) {
		t.Fatal("a shut down node accepted a command")
	}
}
