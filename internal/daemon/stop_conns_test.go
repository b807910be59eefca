package daemon_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
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

// bareH2C dials addr and sends the h2c preface and an empty SETTINGS
// frame, nothing else.
func bareH2C(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	_, err = conn.Write(append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 4, 0, 0, 0, 0, 0))
	require.NoError(t, err)
	return conn
}

// A graceful stop closes the HTTP/2 connections that have nothing left to
// do instead of waiting for their clients: Go's HTTP/2 server gives a
// client 1 s after its GOAWAY to close a connection that was idle, and Go's
// HTTP/2 client never does. The stream a stop ends still gets its whole
// answer (SHUTTING_DOWN, in the trailers), and a connection that carried
// no request but began with the h2c preface is closed too.
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
	// Let the member take the watch's stream before the stop.
	_, err = idle.Put(ctx, connect.NewRequest(&concordv1.PutRequest{Key: []byte("w"), Value: []byte("1")}))
	require.NoError(t, err)
	require.True(t, watch.Receive(), "the watch ended: %v", watch.Err())

	d := c.Members[0].Daemon()
	c.Stop(0)

	require.GreaterOrEqual(t, d.IdleConnsClosedAtStop(), int64(2),
		"the stop closed neither the idle h2c connection nor the bare one, or only one of them")
	for watch.Receive() {
	}
	info, ok := errs.InfoOf(watch.Err())
	require.True(t, ok, "the watch's end lost its trailers: %v", watch.Err())
	require.Equal(t, "SHUTTING_DOWN", info.GetReason())
	// The bare connection was closed: a read ends (with EOF or a reset),
	// it does not time out.
	closedWithin(t, raw, raw, 5*time.Second)
}
