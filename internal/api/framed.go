package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/concord-dev/concord/api/batchwire"
	concordv1 "github.com/concord-dev/concord/api/concord/v1"
)

// framedMethod labels the framed batch streams in the API's metrics
// (Connect's KV.Batch streams are "KV/Batch").
const framedMethod = "KV/BatchFramed"

// framedConns counts the connections switched to the framed batch
// protocol: http.Server.Shutdown does not wait for a hijacked connection.
// (Not a WaitGroup: a handler may still be switching one while Stop
// waits.)
type framedConns struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	zero  chan struct{} // closed when none is left; nil when nobody waits
}

func (f *framedConns) add(c net.Conn) {
	f.mu.Lock()
	if f.conns == nil {
		f.conns = map[net.Conn]struct{}{}
	}
	f.conns[c] = struct{}{}
	f.mu.Unlock()
}

func (f *framedConns) done(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	if len(f.conns) == 0 && f.zero != nil {
		close(f.zero)
		f.zero = nil
	}
	f.mu.Unlock()
}

// serveFramed switches r's connection to the framed batch protocol
// (api/batchwire) and serves a KV.Batch stream on it until the client
// closes it, it breaks, or r's context ends (the member shuts down).
func (k *kvService) serveFramed(w http.ResponseWriter, r *http.Request) {
	if !tokenOK(k.token, r.Header.Get("Authorization")) {
		http.Error(w, ErrUnauthenticated.Error(), http.StatusUnauthorized)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "the framed batch protocol needs an HTTP/1.1 connection: "+err.Error(), http.StatusBadRequest)
		return
	}
	k.framed.add(conn)
	defer k.framed.done(conn)
	defer conn.Close()
	// The server's header timeout may have left a deadline on the
	// connection; from here the protocol's own idle timeout applies.
	_ = conn.SetDeadline(time.Time{})
	if _, err := brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + batchwire.Protocol + "\r\n\r\n"); err != nil {
		return
	}
	if err := brw.Flush(); err != nil {
		return
	}
	// A client that goes away ends its calls, as on an HTTP/2 stream. When
	// ctx ends (the client went away, or the member shuts down), the
	// stream stops reading: its calls in flight end through ctx, and their
	// answers go out before the connection closes (a graceful stop closes
	// what is left when --shutdown-timeout runs out: WaitFramed).
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	g := k.m.streams.WithLabelValues(framedMethod)
	g.Inc()
	defer g.Dec()
	s := &framedStream{ctx: ctx, conn: conn, r: batchwire.NewReader(brw.Reader, maxBatchMessageBytes), w: batchwire.NewWriter(conn), gone: cancel,
		idle: batchwire.IdleTimeout, codec: k.batchCodec}
	err = k.serveBatch(ctx, s)
	switch {
	case s.bad != nil:
		// The results of the calls it had started are out; say why the
		// connection ends before it does.
		_ = s.w.WriteGoAway(s.bad.Error())
		err = s.bad
	case ctx.Err() != nil && k.s.Stopping():
		// The member's shutdown ended the stream: calls the client sent
		// after the last answer were not read.
		err = k.s.StreamEnd(ctx)
		_ = s.w.WriteGoAway(err.Error())
	}
	k.m.requests.WithLabelValues(framedMethod, codeOf(wire(err))).Inc()
}

// errBadFrame wraps what a client sent that the protocol refuses.
var errBadFrame = errors.New("api: bad frame on a framed batch stream")

// framedStream is a KV.Batch stream on a connection switched to the framed
// protocol.
type framedStream struct {
	// ctx ends the stream's input.
	ctx  context.Context
	conn net.Conn
	r    *batchwire.Reader
	w    *batchwire.Writer
	// bad is the protocol error that ended the stream, if one did.
	bad error
	// gone ends the stream's calls when the connection fails.
	gone context.CancelFunc
	// idle is batchwire.IdleTimeout (shorter in tests).
	idle time.Duration
	// codec decodes the messages.
	codec batchCodec
}

// Receive returns the next BatchRequest, answering pings on the way. A
// connection that sends nothing for batchwire.IdleTimeout is dropped.
func (s *framedStream) Receive() (*concordv1.BatchRequest, error) {
	for {
		_ = s.conn.SetReadDeadline(time.Now().Add(s.idle))
		// (After the deadline: ctx's end sets one in the past.)
		if err := s.ctx.Err(); err != nil {
			return nil, err
		}
		typ, payload, err := s.r.Next()
		if err != nil {
			if errors.Is(err, batchwire.ErrFrameTooLarge) || errors.Is(err, batchwire.ErrUnknownFrame) {
				s.refuse(err)
			} else {
				s.gone()
			}
			return nil, err
		}
		switch typ {
		case batchwire.FrameMessage:
			req := &concordv1.BatchRequest{}
			if err := s.codec.Unmarshal(payload, req); err != nil {
				s.refuse(err)
				return nil, s.bad
			}
			return req, nil
		case batchwire.FramePing:
			if err := s.w.WritePing(batchwire.FramePong, [batchwire.PingSize]byte(payload)); err != nil {
				s.gone()
				return nil, err
			}
		}
		// A pong needs nothing: every frame counts as a sign of life.
	}
}

// refuse ends the stream's input after a frame the protocol refuses. The
// calls already started finish, and their results go out before the
// GoAway; the connection is still read, and the bytes dropped, so that a
// client that goes away (or falls silent for the idle timeout) meanwhile
// still ends those calls, a lock wait above all.
func (s *framedStream) refuse(err error) {
	s.bad = fmt.Errorf("%w: %w", errBadFrame, err)
	go func() {
		buf := make([]byte, 4096)
		for {
			_ = s.conn.SetReadDeadline(time.Now().Add(s.idle))
			if _, err := s.conn.Read(buf); err != nil {
				s.gone()
				return
			}
		}
	}()
}

// Send writes one response as one frame. A client that stops reading for
// batchwire.IdleTimeout loses the connection.
func (s *framedStream) Send(resp *concordv1.BatchResponse) error {
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.idle))
	return s.w.WriteMessage(resp)
}

// closeAll closes every framed connection at once, answering nothing, as
// a crash would.
func (f *framedConns) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		c.Close()
	}
}

// wait waits until every framed connection has closed or ctx ends; then
// it closes those left (their calls' answers are lost: the client's
// stream breaks).
func (f *framedConns) wait(ctx context.Context) error {
	f.mu.Lock()
	if len(f.conns) == 0 {
		f.mu.Unlock()
		return nil
	}
	if f.zero == nil {
		f.zero = make(chan struct{})
	}
	zero := f.zero
	f.mu.Unlock()
	select {
	case <-zero:
		return nil
	case <-ctx.Done():
		f.mu.Lock()
		n := len(f.conns)
		for c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		return fmt.Errorf("%d framed batch connections still open, closed: %w", n, ctx.Err())
	}
}
