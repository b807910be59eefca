package client

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/concord-dev/concord/api/batchwire"
)

// silentMember accepts the upgrade to the framed protocol and then reads
// frames without ever answering, as a paused member's kernel would. It
// reports the type of every frame it reads.
func silentMember(t *testing.T) (addr string, frames <-chan byte) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan byte, 16)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		if _, err := conn.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + batchwire.Protocol + "\r\n\r\n")); err != nil {
			return
		}
		r := batchwire.NewReader(br, 1<<20)
		for {
			typ, _, err := r.Next()
			if err != nil {
				close(got)
				return
			}
			got <- typ
		}
	}()
	return ln.Addr().String(), got
}

func TestFramedStreamGivesUpOnASilentMember(t *testing.T) {
	defer func(after, timeout time.Duration) { framedPingAfter, framedPingTimeout = after, timeout }(framedPingAfter, framedPingTimeout)
	framedPingAfter, framedPingTimeout = 100*time.Millisecond, 200*time.Millisecond

	addr, frames := silentMember(t)
	c := &Client{cfg: Config{DialTimeout: 5 * time.Second}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := c.dialFramed(ctx, &endpoint{addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := s.Receive()
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Receive returned a message from a member that sent none")
		}
		if took := time.Since(start); took < framedPingAfter {
			t.Fatalf("gave up after %s, before the member was silent for %s", took, framedPingAfter)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream still waits on a member that has not answered a ping for 10 s")
	}
	if typ := <-frames; typ != batchwire.FramePing {
		t.Fatalf("the member got a frame of type %d, want a ping", typ)
	}
}

func TestUpgradeRefusedByAnHTTPServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := &http.Server{Handler: http.NotFoundHandler()}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	c := &Client{cfg: Config{DialTimeout: 5 * time.Second}}
	_, err = c.dialFramed(context.Background(), &endpoint{addr: ln.Addr().String()})
	if !errors.Is(err, errFramedRefused) {
		t.Fatalf("got %v, want errFramedRefused", err)
	}
}
