package peer

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func listen(t *testing.T, clusterID string, refused func(Stream)) *Mux {
	t.Helper()
	m, err := Listen("127.0.0.1:0", nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	if clusterID != "-" {
		m.SetClusterID(func() string { return clusterID }, func() bool { return true }, refused)
	}
	return m
}

// accepted returns the next Raft stream l accepts within d, or nil.
func accepted(t *testing.T, l net.Listener, d time.Duration) net.Conn {
	t.Helper()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			ch <- c
		}
	}()
	select {
	case c := <-ch:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(d):
		return nil
	}
}

// requireClosed requires the other end to have closed conn: a read ends in
// EOF, or in a reset when bytes were left unread there.
func requireClosed(t *testing.T, conn net.Conn) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := conn.Read(make([]byte, 1))
	require.Error(t, err)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the connection was not closed: %v", err)
}

// A Raft stream or RPC connection passes between members of one cluster
// ID, or when either side has none yet, and carries its bytes untouched
// after the handshake; one from another cluster ID is closed and counted
// under its kind.
func TestPeerConnectionsNameTheirClusterID(t *testing.T) {
	idA, idB := strings.Repeat("a", 32), strings.Repeat("b", 32)
	kinds := []struct {
		stream  Stream
		dial    func(from, to *Mux) (net.Conn, error)
		accept  func(to *Mux) net.Listener
		refused func(to *Mux) uint64
	}{
		{StreamRaft,
			func(from, to *Mux) (net.Conn, error) { return from.Raft().DialTimeout(to.Addr().String(), time.Second) },
			func(to *Mux) net.Listener { return to.Raft() }, (*Mux).RefusedRaftStreams},
		{StreamRPC,
			func(from, to *Mux) (net.Conn, error) { return from.DialRPC(t.Context(), to.Addr().String()) },
			(*Mux).RPC, (*Mux).RefusedRPCConnections},
	}
	for _, k := range kinds {
		for _, tc := range []struct {
			name       string
			dialer, to string // "-": SetClusterID never called
			pass       bool
		}{
			{"same cluster", idA, idA, true},
			{"dialer has none yet", "", idA, true},
			{"dialer never set", "-", idA, true},
			{"acceptor has none yet", idA, "", true},
			{"another cluster", idA, idB, false},
		} {
			t.Run(string(k.stream)+"/"+tc.name, func(t *testing.T) {
				var refused []Stream
				var mu sync.Mutex
				to := listen(t, tc.to, func(s Stream) { mu.Lock(); refused = append(refused, s); mu.Unlock() })
				from := listen(t, tc.dialer, nil)
				l := k.accept(to)
				conn, err := k.dial(from, to)
				require.NoError(t, err)
				defer conn.Close()
				_, err = conn.Write([]byte("peer-bytes"))
				require.NoError(t, err)
				got := accepted(t, l, time.Second)
				if !tc.pass {
					require.Nil(t, got, "a %s connection from another cluster was served", k.stream)
					requireClosed(t, conn)
					require.EqualValues(t, 1, k.refused(to))
					require.EqualValues(t, 1, to.RefusedRaftStreams()+to.RefusedRPCConnections(), "counted under its own kind only")
					mu.Lock()
					defer mu.Unlock()
					require.Equal(t, []Stream{k.stream}, refused, "the hook names the kind")
					return
				}
				require.NotNil(t, got, "the connection is served")
				b := make([]byte, len("peer-bytes"))
				_, err = io.ReadFull(got, b)
				require.NoError(t, err)
				require.Equal(t, "peer-bytes", string(b), "the server reads its own bytes, not the handshake's")
				require.Zero(t, to.RefusedRaftStreams()+to.RefusedRPCConnections())
			})
		}
	}
}

// Until nameRPC says every member knows the named RPC handshake, a member
// with a cluster ID dials its RPC connections unnamed ('P'), as the build
// before it did, while its Raft streams name the ID: a member of that
// build closes a connection whose first byte it does not know, and a
// rolling upgrade of a named cluster cut the upgraded members' forwarded
// writes and status calls off from the others.
func TestRPCConnectionsNamedOnlyOnceEveryMemberKnowsHow(t *testing.T) {
	id := strings.Repeat("a", 32)
	var every atomic.Bool
	from, err := Listen("127.0.0.1:0", nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = from.Close() })
	from.SetClusterID(func() string { return id }, every.Load, nil)

	// A bare listener reads the first bytes as a member of the build
	// before would.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	first := func(n int, dial func() (net.Conn, error)) []byte {
		t.Helper()
		conn, err := dial()
		require.NoError(t, err)
		defer conn.Close()
		got, err := ln.Accept()
		require.NoError(t, err)
		defer got.Close()
		b := make([]byte, n)
		_ = got.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = io.ReadFull(got, b)
		require.NoError(t, err)
		return b
	}
	rpc := func() (net.Conn, error) { return from.DialRPC(t.Context(), ln.Addr().String()) }
	raft := func() (net.Conn, error) { return from.Raft().DialTimeout(ln.Addr().String(), time.Second) }
	require.Equal(t, []byte{kindRPC}, first(1, rpc), "an RPC connection before every member knows the named handshake")
	require.Equal(t, []byte{kindClusterRaft, 32}, first(2, raft), "Raft streams name the ID regardless")
	every.Store(true)
	require.Equal(t, []byte{kindClusterRPC, 32}, first(2, rpc), "once every member knows how")
}

// A malformed cluster ID ends the connection before Raft or the RPC server
// sees it.
func TestMalformedClusterIDIsRefused(t *testing.T) {
	to := listen(t, strings.Repeat("b", 32), nil)
	var hellos [][]byte
	for _, kind := range []byte{kindClusterRaft, kindClusterRPC} {
		hellos = append(hellos, []byte{kind, 0}, []byte{kind, maxClusterIDBytes + 1}, []byte{kind, 5, 'a', 'b'})
	}
	for _, hello := range hellos {
		conn, err := net.Dial("tcp", to.Addr().String())
		require.NoError(t, err)
		_, err = conn.Write(hello)
		require.NoError(t, err)
		if len(hello) > 2 {
			// A short ID: the handshake's deadline ends it; close our
			// side instead of waiting for it.
			require.NoError(t, conn.(*net.TCPConn).CloseWrite())
		}
		var served net.Listener = to.Raft()
		if hello[0] == kindClusterRPC {
			served = to.RPC()
		}
		require.Nil(t, accepted(t, served, 500*time.Millisecond), "%v was served", hello)
		requireClosed(t, conn)
		conn.Close()
	}
	require.Zero(t, to.RefusedRaftStreams()+to.RefusedRPCConnections(), "a malformed ID is not another cluster's")
}

// FuzzHandshake feeds arbitrary first bytes to the peer port: the
// connection reaches Raft only after a well-formed Raft handshake (a bare
// 'R', or 'C' with this member's cluster ID), reaches the RPC server only
// after 'P' or 'Q' with this member's cluster ID, and is closed otherwise,
// without a panic or a hang.
func FuzzHandshake(f *testing.F) {
	own := strings.Repeat("c", 32)
	for _, seed := range [][]byte{{kindRaft}, {kindRPC}, append([]byte{kindClusterRaft, 32}, own...),
		append([]byte{kindClusterRaft, 32}, strings.Repeat("d", 32)...), {kindClusterRaft, 0}, {kindClusterRaft, 255},
		append([]byte{kindClusterRPC, 32}, own...), append([]byte{kindClusterRPC, 32}, strings.Repeat("d", 32)...), {kindClusterRPC, 0}, {'x'}, {}} {
		f.Add(seed)
	}
	m := &Mux{logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	m.raft = newSubListener(nil, kindRaft, m)
	m.rpc = newSubListener(nil, kindRPC, m)
	m.SetClusterID(func() string { return own }, nil, nil)
	f.Fuzz(func(t *testing.T, hello []byte) {
		server, client := net.Pipe()
		defer client.Close()
		done := make(chan struct{})
		go func() { defer close(done); m.route(server) }()
		go func() {
			_, _ = client.Write(hello)
			_ = client.Close() // the handshake ends with the input
		}()
		var got byte
		select {
		case c := <-m.raft.conns:
			got = kindRaft
			c.Close()
		case c := <-m.rpc.conns:
			got = kindRPC
			c.Close()
		case <-done:
		case <-time.After(handshakeTimeout + time.Second):
			t.Fatalf("route hung on %q", hello)
		}
		<-done
		want := byte(0)
		switch {
		case len(hello) >= 1 && hello[0] == kindRaft:
			want = kindRaft
		case len(hello) >= 1 && hello[0] == kindRPC:
			want = kindRPC
		case len(hello) >= 2+len(own) && hello[0] == kindClusterRaft && int(hello[1]) == len(own) && string(hello[2:2+len(own)]) == own:
			want = kindRaft
		case len(hello) >= 2+len(own) && hello[0] == kindClusterRPC && int(hello[1]) == len(own) && string(hello[2:2+len(own)]) == own:
			want = kindRPC
		}
		require.Equal(t, want, got, "%q", hello)
	})
}
