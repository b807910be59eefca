// Package peer carries the traffic between members on one peer port: Raft's
// streams and the members' internal RPC (forwarded writes, read-index
// requests, keep-alives), told apart by the first byte of each connection.
// Outgoing connections are dialed from the member's own listen address, so a
// test can run members on 127.0.0.1, .2 and .3 and cut one link.
package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

const (
	kindRaft byte = 'R'
	kindRPC  byte = 'P'
)

// handshakeTimeout bounds how long an accepted connection may take to say
// what it carries.
const handshakeTimeout = 5 * time.Second

// Mux accepts peer connections and hands them to Raft or to the RPC server.
type Mux struct {
	ln     net.Listener
	dialer net.Dialer
	raft   *subListener
	rpc    *subListener
	logger *slog.Logger
	wg     sync.WaitGroup
}

// Listen opens the peer port. Outgoing dials bind to the listen address's IP
// unless it is unspecified (0.0.0.0 or ::).
func Listen(addr string, logger *slog.Logger) (*Mux, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("peer listen %s: %w", addr, err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	m := &Mux{ln: ln, logger: logger}
	m.dialer.Timeout = 5 * time.Second
	m.dialer.KeepAlive = 15 * time.Second
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsUnspecified() {
		m.dialer.LocalAddr = &net.TCPAddr{IP: tcp.IP}
	}
	m.raft = newSubListener(ln.Addr(), kindRaft, m)
	m.rpc = newSubListener(ln.Addr(), kindRPC, m)
	m.wg.Add(1)
	go m.serve()
	return m, nil
}

// Addr returns the listening address.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

func (m *Mux) serve() {
	defer m.wg.Done()
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				m.raft.close()
				m.rpc.close()
				return
			}
			m.logger.Warn("peer accept failed", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go m.route(conn)
	}
}

func (m *Mux) route(conn net.Conn) {
	_ = conn.SetReadDeadline(time.Now().Add(handshakeTimeout))
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		conn.Close()
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	var target *subListener
	switch b[0] {
	case kindRaft:
		target = m.raft
	case kindRPC:
		target = m.rpc
	default:
		m.logger.Warn("peer connection with unknown kind", "remote", conn.RemoteAddr().String(), "kind", b[0])
		conn.Close()
		return
	}
	if !target.deliver(conn) {
		conn.Close()
	}
}

// Close stops accepting connections.
func (m *Mux) Close() error {
	err := m.ln.Close()
	m.wg.Wait()
	return err
}

func (m *Mux) dial(ctx context.Context, addr string, kind byte) (net.Conn, error) {
	conn, err := m.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write([]byte{kind}); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// Raft returns the listener and dialer for Raft's transport.
func (m *Mux) Raft() *RaftStreams { return &RaftStreams{subListener: m.raft} }

// RPC returns the listener of internal RPC connections.
func (m *Mux) RPC() net.Listener { return m.rpc }

// DialRPC opens an internal RPC connection to a peer.
func (m *Mux) DialRPC(ctx context.Context, addr string) (net.Conn, error) {
	return m.dial(ctx, addr, kindRPC)
}

// RaftStreams is Raft's view of the mux.
type RaftStreams struct{ *subListener }

// DialTimeout opens a Raft connection to a peer.
func (r *RaftStreams) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return r.mux.dial(ctx, addr, kindRaft)
}

type subListener struct {
	addr   net.Addr
	kind   byte
	mux    *Mux
	conns  chan net.Conn
	done   chan struct{}
	closer sync.Once
}

func newSubListener(addr net.Addr, kind byte, m *Mux) *subListener {
	return &subListener{addr: addr, kind: kind, mux: m, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (s *subListener) deliver(c net.Conn) bool {
	select {
	case s.conns <- c:
		return true
	case <-s.done:
		return false
	}
}

func (s *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

func (s *subListener) close() { s.closer.Do(func() { close(s.done) }) }

// Close closes this sub-listener only; the mux keeps serving the other.
func (s *subListener) Close() error { s.close(); return nil }

func (s *subListener) Addr() net.Addr { return s.addr }
