package raft

import (
	"context"
	"errors"
	"testing"
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
