package daemon_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/api/batchwire"
	"github.com/concord-dev/concord/internal/daemon"
	"github.com/concord-dev/concord/internal/testcluster"
)

// closedWithin reads conn until the member closes it, and fails if it has
// not within d.
func closedWithin(t *testing.T, conn net.Conn, r io.Reader, d time.Duration) {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(d)))
	_, err := io.Copy(io.Discard, r)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the member kept an idle connection open for %s", d)
}

// Idle connections, HTTP/1.1 keep-alive and h2c alike, are closed after
// the idle timeout: they stayed open forever. Connections with a call in
// progress stay open however long it lasts: a watch, and a batch
// connection switched to the framed protocol.
func TestIdleConnectionsAreClosedAndStreamsAreNot(t *testing.T) {
	defer daemon.SetIdleTimeout(300 * time.Millisecond)()
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	addr := c.Endpoints()[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A watch on an h2c connection of its own, and a framed batch
	// connection.
	watch := h2cWatchOf(t, ctx, addr)
	framed, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer framed.Close()
	_, err = framed.Write([]byte("GET /concord.v1.KV/Batch HTTP/1.1\r\nHost: " + addr + "\r\nConnection: Upgrade\r\nUpgrade: " + batchwire.Protocol + "\r\n\r\n"))
	require.NoError(t, err)
	framedR := bufio.NewReader(framed)
	resp, err := http.ReadResponse(framedR, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)

	// An HTTP/1.1 connection after its request.
	h1, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer h1.Close()
	_, err = h1.Write([]byte("GET /healthz HTTP/1.1\r\nHost: " + addr + "\r\n\r\n"))
	require.NoError(t, err)
	h1R := bufio.NewReader(h1)
	resp, err = http.ReadResponse(h1R, nil)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	closedWithin(t, h1, h1R, 10*time.Second)

	// An h2c connection that opens no stream.
	h2 := bareH2C(t, addr)
	closedWithin(t, h2, h2, 10*time.Second)

	// The idle timeout passed for the streams' connections too: they
	// still serve.
	_, err = c.Client().Put(ctx, "w", []byte("v"))
	require.NoError(t, err)
	for len(watch.Msg().GetEvents()) == 0 {
		require.True(t, watch.Receive(), "the watch ended: %v", watch.Err())
	}
	require.Equal(t, "w", string(watch.Msg().GetEvents()[0].GetKv().GetKey()))
	require.NoError(t, batchwire.NewWriter(framed).WritePing(batchwire.FramePing, [8]byte{1}))
	require.NoError(t, framed.SetReadDeadline(time.Now().Add(10*time.Second)))
	typ, _, err := batchwire.NewReader(framedR, 1<<20).Next()
	require.NoError(t, err, "the framed connection was closed")
	require.Equal(t, batchwire.FramePong, typ)
}
