package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// stopQuiet is how long an HTTP/2 client connection must have been silent
// both ways, with no call in progress, before a graceful stop closes it
// (connTracker.closeIdle).
var stopQuiet = 100 * time.Millisecond

// connTracker follows the client API's connections, so that a graceful
// stop can close the HTTP/2 ones that have nothing left to do.
//
// Why: after http.Server.Shutdown sends an HTTP/2 connection its GOAWAY,
// Go's HTTP/2 server waits 1 s (its goAwayTimeout, not configurable) for
// the client to close the connection once no stream is open, and
// Shutdown waits for that. Go's HTTP/2 client closes a connection after a
// GOAWAY only when its last stream ends: one that was idle when the GOAWAY
// came (an SDK's, between calls) stays open, and every graceful stop took
// about 1.1 s instead of a few milliseconds.
//
// A connection is closed only when it is idle by three measures: no
// handler of it runs (the count is kept around the API's handler), none
// has returned for stopQuiet (after a handler returns, the HTTP/2 server
// writes the stream's last frames and trailers), and no byte went either
// way for stopQuiet (the GOAWAY itself has been written; a new request's
// frames were read before its handler started). A connection counts as
// HTTP/2 once it carried an HTTP/2 request, began with the cleartext
// HTTP/2 preface, or negotiated "h2" in its TLS handshake: the last two
// may carry no request before the stop, and would hold it up as long.
// HTTP/1.1 connections are left to http.Server (one between requests is
// closed by Shutdown at once; one switched to the framed batch protocol
// belongs to the API), but for those that never sent a byte: Shutdown
// waits 5 s for a new connection to become idle, and one that said
// nothing in stopQuiet has no request to lose.
type connTracker struct {
	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed atomic.Int64 // connections closeIdle closed
}

func newConnTracker() *connTracker {
	return &connTracker{conns: make(map[*trackedConn]struct{})}
}

// trackedConn is an accepted client connection with what the tracker
// needs to know of it. Times are monotonic nanoseconds (sinceStart).
type trackedConn struct {
	net.Conn
	t        *connTracker
	lastIO   atomic.Int64 // the last read or write that moved bytes
	lastDone atomic.Int64 // the last handler's return
	active   atomic.Int32 // handlers running
	h2       atomic.Bool  // carried an HTTP/2 request, began with the h2c preface, or negotiated h2 over TLS
	read     atomic.Bool  // read anything yet
	alpn     atomic.Bool  // its TLS handshake's protocol was looked at
	once     sync.Once
}

var processStart = time.Now()

// sinceStart is a monotonic clock reading in nanoseconds.
func sinceStart() int64 { return int64(time.Since(processStart)) }

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.lastIO.Store(sinceStart())
		if !c.read.Swap(true) && bytes.HasPrefix(p[:n], h2cPreface) {
			c.h2.Store(true)
		}
	}
	return n, err
}

func (c *trackedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.lastIO.Store(sinceStart())
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.t.mu.Lock()
		delete(c.t.conns, c)
		c.t.mu.Unlock()
	})
	return c.Conn.Close()
}

// listener wraps ln so that the tracker follows every connection it
// accepts.
func (t *connTracker) listener(ln net.Listener) net.Listener {
	return &trackingListener{Listener: ln, t: t}
}

type trackingListener struct {
	net.Listener
	t *connTracker
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, t: l.t}
	tc.lastIO.Store(sinceStart())
	l.t.mu.Lock()
	l.t.conns[tc] = struct{}{}
	l.t.mu.Unlock()
	return tc, nil
}

// h2cPreface begins a cleartext HTTP/2 connection with prior knowledge
// (RFC 9113, section 3.4): such a connection may carry no request before
// the stop, and Shutdown would wait for it as for any. It is the part
// http.Server's first read takes (14 bytes, as much as an HTTP/1.x request
// line of that length), which no HTTP/1.x request begins with.
var h2cPreface = []byte("PRI * HTTP/2.0")

type connKey struct{}

// connContext is http.Server's ConnContext: it gives each request the
// connection it came on (under TLS, the one the TLS connection wraps).
func (t *connTracker) connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if tc, ok := c.(*trackedConn); ok {
		return context.WithValue(ctx, connKey{}, tc)
	}
	return ctx
}

// connState is http.Server's ConnState hook. Under TLS it marks a
// connection HTTP/2 when its handshake negotiated "h2": the HTTP/2 server
// reports such a connection active once it has read the client's
// preface, request or not.
func (t *connTracker) connState(c net.Conn, s http.ConnState) {
	tc, ok := c.(*tls.Conn)
	if !ok || s != http.StateActive {
		return
	}
	if inner, ok := tc.NetConn().(*trackedConn); ok && !inner.alpn.Swap(true) &&
		tc.ConnectionState().NegotiatedProtocol == "h2" {
		inner.h2.Store(true)
	}
}

// handler counts the HTTP/2 calls in progress on each connection around
// next.
func (t *connTracker) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tc, _ := r.Context().Value(connKey{}).(*trackedConn)
		if tc == nil || r.ProtoMajor != 2 {
			next.ServeHTTP(w, r)
			return
		}
		tc.h2.Store(true)
		tc.active.Add(1)
		defer func() {
			tc.lastDone.Store(sinceStart())
			tc.active.Add(-1)
		}()
		next.ServeHTTP(w, r)
	})
}

// closeIdle closes, until ctx ends, every HTTP/2 connection that has been
// idle for stopQuiet, and every connection that has read nothing in that
// time (see connTracker). It runs while http.Server.Shutdown
// waits for the connections to end, after Shutdown sent them its GOAWAY.
func (t *connTracker) closeIdle(ctx context.Context) {
	tick := time.NewTicker(stopQuiet / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := sinceStart()
		quiet := int64(stopQuiet)
		var idle []*trackedConn
		t.mu.Lock()
		for c := range t.conns {
			if (c.h2.Load() || !c.read.Load()) && c.active.Load() == 0 && now-c.lastDone.Load() >= quiet && now-c.lastIO.Load() >= quiet {
				idle = append(idle, c)
			}
		}
		t.mu.Unlock()
		for _, c := range idle {
			if c.Close() == nil {
				t.closed.Add(1)
			}
		}
	}
}
