package api

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/concord-dev/concord/api/batchwire"
	concordv1 "github.com/concord-dev/concord/api/concord/v1"
)

func TestFramedConnsWaitForTheLastOne(t *testing.T) {
	var f framedConns
	if err := f.wait(context.Background()); err != nil {
		t.Fatalf("no connection open: %v", err)
	}
	a, peerA := net.Pipe()
	b, peerB := net.Pipe()
	defer peerA.Close()
	defer peerB.Close()
	f.add(a)
	f.add(b)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := f.wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("two open, wait ended with %v", err)
	}
	// A wait that runs out closes the connections left: their handlers
	// end (and call done) rather than outlive the member's stop.
	for _, c := range []net.Conn{a, b} {
		if _, err := c.Write([]byte{1}); !errors.Is(err, io.ErrClosedPipe) {
			t.Fatalf("a connection left when the wait ran out is still open: %v", err)
		}
	}
	got := make(chan error, 1)
	go func() { got <- f.wait(context.Background()) }()
	f.done(a)
	select {
	case err := <-got:
		t.Fatalf("one still open, wait ended with %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	f.done(b)
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the last connection closed and wait did not end")
	}
	// A connection switched after a wait ended is counted again.
	f.add(a)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if err := f.wait(ctx2); err == nil {
		t.Fatal("one open, wait returned nil")
	}
	f.done(a)
}

// A framed stream drops a client that sends nothing, and one that reads
// none of its answers, after its idle time; a ping keeps it.
func TestFramedStreamIdleTimeouts(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	cancelled := make(chan struct{})
	s := &framedStream{ctx: context.Background(), conn: server, r: batchwire.NewReader(bufio.NewReader(server), 1<<20), w: batchwire.NewWriter(server),
		gone: func() { close(cancelled) }, idle: 400 * time.Millisecond}
	got := make(chan error, 1)
	go func() {
		_, err := s.Receive()
		got <- err
	}()
	// A ping within the idle time is answered and keeps the stream.
	time.Sleep(250 * time.Millisecond)
	cw := batchwire.NewWriter(client)
	if err := cw.WritePing(batchwire.FramePing, [batchwire.PingSize]byte{1}); err != nil {
		t.Fatal(err)
	}
	typ, _, err := batchwire.NewReader(bufio.NewReader(client), 1<<20).Next()
	if err != nil || typ != batchwire.FramePong {
		t.Fatalf("ping answered with type %d, %v", typ, err)
	}
	start := time.Now()
	select {
	case err := <-got:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("an idle client ended the stream with %v, want a timeout", err)
		}
		// Unrenewed, it would end 150 ms after the ping; renewed, 400 ms.
		if time.Since(start) < 250*time.Millisecond {
			t.Fatalf("the ping did not renew the idle time")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a client that sent nothing was kept")
	}
	select {
	case <-cancelled:
	default:
		t.Fatal("the stream's calls were not ended with it")
	}

	// A client that reads nothing: the answer's write times out.
	server2, client2 := net.Pipe()
	defer client2.Close()
	s2 := &framedStream{conn: server2, w: batchwire.NewWriter(server2), idle: 100 * time.Millisecond}
	werr := make(chan error, 1)
	go func() { werr <- s2.Send(&concordv1.BatchResponse{Results: []*concordv1.BatchResult{{Id: 1}}}) }()
	select {
	case err := <-werr:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("a write nobody reads ended with %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a write nobody reads still blocks")
	}
}
