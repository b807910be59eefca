package peer

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func listen(t *testing.T, clusterID string, refused *atomic.Int64) *Mux {
	t.Helper()
	m, err := Listen("127.0.0.1:0", nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	if clusterID != "-" {
		var hook func()
		if refused != nil {
			hook = func() { refused.Add(1) }
		}
		m.SetClusterID(func() string { return clusterID }, hook)
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

// A Raft stream passes between members of one cluster ID, or when either
// side has none yet, and carries Raft's bytes untouched after the
// handshake; one from another cluster ID is closed and counted.
func TestRaftStreamsNameTheirClusterID(t *testing.T) {
	idA, idB := strings.Repeat("a", 32), strings.Repeat("b", 32)
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
		t.Run(tc.name, func(t *testing.T) {
			var refused atomic.Int64
			to := listen(t, tc.to, &refused)
			from := listen(t, tc.dialer, nil)
			raft := to.Raft()
			conn, err := from.Raft().DialTimeout(to.Addr().String(), time.Second)
			require.NoError(t, err)
			defer conn.Close()
			_, err = conn.Write([]byte("raft-bytes"))
			require.NoError(t, err)
			got := accepted(t, raft, time.Second)
			if !tc.pass {
				require.Nil(t, got, "a stream from another cluster reaches Raft")
				requireClosed(t, conn)
				require.EqualValues(t, 1, to.RefusedRaftStreams())
				require.EqualValues(t, 1, refused.Load(), "the hook counts it")
				return
			}
			require.NotNil(t, got, "the stream reaches Raft")
			b := make([]byte, len("raft-bytes"))
			_, err = io.ReadFull(got, b)
			require.NoError(t, err)
			require.Equal(t, "raft-bytes", string(b), "Raft reads its own bytes, not the handshake's")
			require.Zero(t, to.RefusedRaftStreams())
		})
	}
}

// RPC connections are not checked: the removal and seed checks ask members
// whatever cluster they are of, and judge the answer themselves.
func TestRPCConnectionsNameNoCluster(t *testing.T) {
	to := listen(t, strings.Repeat("b", 32), nil)
	from := listen(t, strings.Repeat("a", 32), nil)
	conn, err := from.DialRPC(t.Context(), to.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	require.NotNil(t, accepted(t, to.RPC(), time.Second))
}

// A malformed cluster ID ends the connection before Raft sees it.
func TestMalformedClusterIDIsRefused(t *testing.T) {
	to := listen(t, strings.Repeat("b", 32), nil)
	for _, hello := range [][]byte{{kindClusterRaft, 0}, {kindClusterRaft, maxClusterIDBytes + 1}, {kindClusterRaft, 5, 'a', 'b'}} {
		conn, err := net.Dial("tcp", to.Addr().String())
		require.NoError(t, err)
		_, err = conn.Write(hello)
		require.NoError(t, err)
		if len(hello) > 2 {
			// A short ID: the handshake's deadline ends it; close our
			// side instead of waiting for it.
			require.NoError(t, conn.(*net.TCPConn).CloseWrite())
		}
		require.Nil(t, accepted(t, to.Raft(), 500*time.Millisecond), "%v reached Raft", hello)
		requireClosed(t, conn)
		conn.Close()
	}
	require.Zero(t, to.RefusedRaftStreams(), "a malformed ID is not another cluster's")
}

// FuzzHandshake feeds arbitrary first bytes to the peer port: the
// connection reaches Raft only after a well-formed Raft handshake (a bare
// 'R', or 'C' with this member's cluster ID), reaches the RPC server only
// after 'P', and is closed otherwise, without a panic or a hang.
func FuzzHandshake(f *testing.F) {
	own := strings.Repeat("c", 32)
	for _, seed := range [][]byte{{kindRaft}, {kindRPC}, append([]byte{kindClusterRaft, 32}, own...),
		append([]byte{kindClusterRaft, 32}, strings.Repeat("d", 32)...), {kindClusterRaft, 0}, {kindClusterRaft, 255}, {'x'}, {}} {
		f.Add(seed)
	}
	m := &Mux{logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	m.raft = newSubListener(nil, kindRaft, m)
	m.rpc = newSubListener(nil, kindRPC, m)
	m.SetClusterID(func() string { return own }, nil)
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
		case len(hello) >= 2 && hello[0] == kindClusterRaft && int(hello[1]) == len(own) && len(hello) >= 2+len(own) && string(hello[2:2+len(own)]) == own:
			want = kindRaft
		}
		require.Equal(t, want, got, "%q", hello)
	})
}
