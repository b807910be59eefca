package daemon_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/testcluster"
)

// h2cClient is an HTTP client of its own connection, in cleartext HTTP/2
// with prior knowledge.
func h2cClient() *http.Client {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &protocols}}
}

// h2cWatchOf opens a watch of key "w" on a connection of its own.
func h2cWatchOf(t *testing.T, ctx context.Context, addr string) *connect.ServerStreamForClient[concordv1.WatchResponse] {
	t.Helper()
	kv := concordv1connect.NewKVClient(h2cClient(), "http://"+addr, connect.WithGRPC())
	watch, err := kv.Watch(ctx, connect.NewRequest(&concordv1.WatchRequest{Key: []byte("w")}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = watch.Close() })
	return watch
}

// h2Start is what an HTTP/2 client sends first: the connection preface
// and an empty SETTINGS frame.
var h2Start = append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 4, 0, 0, 0, 0, 0)

// bareH2C dials addr and sends the h2c preface and an empty SETTINGS
// frame, nothing else.
func bareH2C(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	_, err = conn.Write(h2Start)
	require.NoError(t, err)
	return conn
}

// A graceful stop closes the HTTP/2 connections that have nothing left to
// do instead of waiting for their clients: Go's HTTP/2 server gives a
// client 1 s after its GOAWAY to close a connection that was idle, and Go's
// HTTP/2 client never does. The stream a stop ends still gets its whole
// answer (SHUTTING_DOWN, in the trailers), and a connection that carried
// no request but began with the h2c preface is closed too, as is one
// that never sent a byte.
func TestStopClosesIdleHTTP2ConnectionsAndEndsStreamsCleanly(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	addr := c.Endpoints()[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// An h2c connection left idle after a call.
	idle := concordv1connect.NewKVClient(h2cClient(), "http://"+addr, connect.WithGRPC())
	_, err := idle.Put(ctx, connect.NewRequest(&concordv1.PutRequest{Key: []byte("k"), Value: []byte("v")}))
	require.NoError(t, err)
	// A watch on a connection of its own, which the stop ends.
	watch := h2cWatchOf(t, ctx, addr)
	// A connection that sent the h2c preface and nothing else.
	raw := bareH2C(t, addr)
	// A connection that sent nothing (Shutdown would wait 5 s for it).
	silent, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = silent.Close() })
	// Let the member take the watch's stream before the stop.
	_, err = idle.Put(ctx, connect.NewRequest(&concordv1.PutRequest{Key: []byte("w"), Value: []byte("1")}))
	require.NoError(t, err)
	require.True(t, watch.Receive(), "the watch ended: %v", watch.Err())

	d := c.Members[0].Daemon()
	c.Stop(0)

	require.GreaterOrEqual(t, d.IdleConnsClosedAtStop(), int64(3),
		"the stop left the idle h2c connection, the bare one or the silent one to http.Server")
	for watch.Receive() {
	}
	info, ok := errs.InfoOf(watch.Err())
	require.True(t, ok, "the watch's end lost its trailers: %v", watch.Err())
	require.Equal(t, "SHUTTING_DOWN", info.GetReason())
	// The bare connection was closed: a read ends (with EOF or a reset),
	// it does not time out.
	closedWithin(t, raw, raw, 5*time.Second)
	closedWithin(t, silent, silent, 5*time.Second)
}

// Over TLS, a connection that negotiated HTTP/2 and made no request is
// closed at a stop too (its preface is encrypted: the handshake's ALPN
// tells). Before, the stop waited Go's 1 s for it.
func TestStopClosesTLSHTTP2ConnectionsWithoutARequest(t *testing.T) {
	certFile, keyFile, pool := testcluster.SelfSigned(t, t.TempDir())
	c := testcluster.Start(t, testcluster.Options{Size: 1, Configure: func(_ int, cfg *config.Server) {
		cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
	}})
	addr := c.Endpoints()[0]

	// A connection that negotiated h2 and sent its preface, nothing else.
	tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, NextProtos: []string{"h2"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tc.Close() })
	require.Equal(t, "h2", tc.ConnectionState().NegotiatedProtocol)
	_, err = tc.Write(h2Start)
	require.NoError(t, err)
	// The member acknowledges the empty SETTINGS once it has read the
	// preface: it has taken the connection as HTTP/2 by then.
	fr := http2.NewFramer(tc, tc)
	for {
		f, err := fr.ReadFrame()
		require.NoError(t, err)
		if sf, ok := f.(*http2.SettingsFrame); ok && sf.IsAck() {
			break
		}
	}

	d := c.Members[0].Daemon()
	c.Stop(0)

	require.Equal(t, int64(1), d.IdleConnsClosedAtStop(), "the stop left the h2 TLS connection without a request to http.Server")
	closedWithin(t, tc, tc, 5*time.Second)
}
