package client

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
)

// A batched call whose stream could not be opened (the member refused the
// connection) was never sent. It failed as a broken stream, an unknown
// outcome: a write then counted as "may have been applied", and a
// membership-style call could not go elsewhere. It is now "not sent".
func TestABatchStreamThatNeverOpenedSendsNothing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connections are refused

	c := &Client{cfg: Config{DialTimeout: time.Second}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	defer c.cancel()
	ep := &endpoint{addr: addr, kv: concordv1connect.NewKVClient(http.DefaultClient, "http://"+addr)}
	b := newBatcher(c, ep)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = b.do(ctx, &concordv1.BatchCall{Request: &concordv1.BatchCall_Put{Put: &concordv1.PutRequest{Key: []byte("k")}}})
	require.Error(t, err)
	err = fromWire(err)
	require.ErrorIs(t, err, ErrUnavailable)
	require.True(t, certainlyNotApplied(err), "a call never sent may have been applied: %v", err)
	require.True(t, retryable(err, false))
}
