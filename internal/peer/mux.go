// Package peer carries the traffic between members on one peer port: Raft's
// streams and the members' internal RPC (forwarded writes, read-index
// requests, keep-alives), told apart by the first byte of each connection.
// Once a member knows its cluster's ID, the connections it dials name it
// and the ones it accepts must not name another.
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
	"sync/atomic"
	"time"
)

const (
	kindRaft byte = 'R'
	kindRPC  byte = 'P'
	// kindClusterRaft is a Raft stream that names its dialer's cluster ID
	// (one length byte, then the ID) before Raft's own bytes. A member
	// dials it once it has applied (or stored) its cluster's ID, which
	// takes a rules version every member of the configuration applies, so
	// no member that does not know it is dialed so.
	kindClusterRaft byte = 'C'
	// kindClusterRPC is an RPC connection that names its dialer's cluster
	// ID, as kindClusterRaft does: a forwarded write, read index,
	// keep-alive or membership change from a member of another cluster
	// would otherwise be served as this cluster's. A member dials it only
	// when told every member knows it (SetClusterID's nameRPC): a cluster
	// already named by a build that knows only kindClusterRaft would
	// refuse it from its upgraded members.
	kindClusterRPC byte = 'Q'
)

// Stream names the two kinds of peer connection in refusals.
type Stream string

const (
	// StreamRaft is a Raft stream.
	StreamRaft Stream = "raft"
	// StreamRPC is an internal RPC connection.
	StreamRPC Stream = "rpc"
)

// maxClusterIDBytes bounds the cluster ID a dialer names.
const maxClusterIDBytes = 64

// refusalLogEvery bounds how often refused connections are logged.
const refusalLogEvery = 10 * time.Second

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

	clusterID  atomic.Pointer[func() string]
	nameRPC    atomic.Pointer[func() bool]
	onRefused  atomic.Pointer[func(Stream)]
	refused    atomic.Uint64 // Raft streams
	refusedRPC atomic.Uint64
	lastLogged atomic.Int64
}

// SetClusterID gives the mux the member's cluster ID, as it stands when a
// connection is made ("" while the member has none). From then on it names
// the ID on the Raft streams it dials, and on the RPC connections it dials
// while nameRPC (when not nil) says every member knows how, and refuses a
// connection of either kind that names another: a member of another cluster, at an address this
// cluster's members know (an address reused, a data dir left from an old
// cluster), would otherwise take part in its elections and replication (a
// leader of either would overwrite the other's log), or have its forwarded
// writes, keep-alives and membership changes served as this cluster's. A
// connection that names no ID (from a member that has never applied its
// cluster's ID, such as one that just joined) is accepted. refused, when
// not nil, is called for every connection refused.
func (m *Mux) SetClusterID(get func() string, nameRPC func() bool, refused func(Stream)) {
	if refused != nil {
		m.onRefused.Store(&refused)
	}
	if nameRPC != nil {
		m.nameRPC.Store(&nameRPC)
	}
	m.clusterID.Store(&get)
}

// RefusedRaftStreams returns how many Raft streams the mux refused for
// naming another cluster ID.
func (m *Mux) RefusedRaftStreams() uint64 { return m.refused.Load() }

// RefusedRPCConnections returns how many RPC connections the mux refused
// for naming another cluster ID.
func (m *Mux) RefusedRPCConnections() uint64 { return m.refusedRPC.Load() }

func (m *Mux) ownClusterID() string {
	if get := m.clusterID.Load(); get != nil {
		return (*get)()
	}
	return ""
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
	var target *subListener
	switch b[0] {
	case kindClusterRaft, kindClusterRPC:
		stream, to := StreamRaft, m.raft
		if b[0] == kindClusterRPC {
			stream, to = StreamRPC, m.rpc
		}
		theirs, err := readClusterID(conn)
		if err != nil {
			m.logger.Warn("peer connection with a malformed cluster ID", "remote", conn.RemoteAddr().String(), "stream", string(stream), "err", err)
			conn.Close()
			return
		}
		if mine := m.ownClusterID(); mine != "" && theirs != mine {
			m.refuse(conn, stream, theirs, mine)
			return
		}
		target = to
	case kindRaft:
		target = m.raft
	case kindRPC:
		target = m.rpc
	default:
		m.logger.Warn("peer connection with unknown kind", "remote", conn.RemoteAddr().String(), "kind", b[0])
		conn.Close()
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	if !target.deliver(conn) {
		conn.Close()
	}
}

// readClusterID reads the cluster ID a kindClusterRaft or kindClusterRPC
// connection names.
func readClusterID(conn net.Conn) (string, error) {
	var n [1]byte
	if _, err := io.ReadFull(conn, n[:]); err != nil {
		return "", err
	}
	if n[0] == 0 || n[0] > maxClusterIDBytes {
		return "", fmt.Errorf("cluster ID of %d bytes (1 to %d)", n[0], maxClusterIDBytes)
	}
	id := make([]byte, n[0])
	if _, err := io.ReadFull(conn, id); err != nil {
		return "", err
	}
	return string(id), nil
}

// refuse closes a connection from a member of another cluster, counts it,
// and logs it at most every refusalLogEvery.
func (m *Mux) refuse(conn net.Conn, stream Stream, theirs, mine string) {
	if stream == StreamRPC {
		m.refusedRPC.Add(1)
	} else {
		m.refused.Add(1)
	}
	if f := m.onRefused.Load(); f != nil {
		(*f)(stream)
	}
	now := time.Now().UnixNano()
	if last := m.lastLogged.Load(); now-last >= int64(refusalLogEvery) && m.lastLogged.CompareAndSwap(last, now) {
		m.logger.Error("refused a peer connection from a member of another cluster: a member of this cluster's configuration is at an address another cluster uses, or a member started on an old cluster's data dir",
			"remote", conn.RemoteAddr().String(), "stream", string(stream), "their_cluster_id", theirs, "cluster_id", mine,
			"raft_refused_so_far", m.refused.Load(), "rpc_refused_so_far", m.refusedRPC.Load())
	}
	conn.Close()
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
	hello := []byte{kind}
	named := kindClusterRaft
	if kind == kindRPC {
		named = kindClusterRPC
		if f := m.nameRPC.Load(); f == nil || !(*f)() {
			named = 0
		}
	}
	if id := m.ownClusterID(); named != 0 && id != "" && len(id) <= maxClusterIDBytes {
		hello = append([]byte{named, byte(len(id))}, id...)
	}
	if _, err := conn.Write(hello); err != nil {
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
