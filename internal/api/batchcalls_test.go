package api_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/api/batchwire"
	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
	"github.com/concord-dev/concord/internal/errs"
)

// manyCalls is a batch message of n puts.
func manyCalls(n int) *concordv1.BatchRequest {
	req := &concordv1.BatchRequest{}
	for i := range n {
		req.Calls = append(req.Calls, &concordv1.BatchCall{Id: uint64(i + 1),
			Request: &concordv1.BatchCall_Put{Put: &concordv1.PutRequest{Key: fmt.Appendf(nil, "k%d", i)}}})
	}
	return req
}

// A batch message is decoded whole before its calls run, and a call takes
// some 100 bytes decoded for 2 on the wire: a message of 64 MiB of empty
// calls took gigabytes. A message of more than 4096 calls (the SDK sends
// at most 512) is refused before it is decoded, on either transport, and
// runs none of them.
func TestABatchMessageOfTooManyCallsIsRefused(t *testing.T) {
	c, cl := single(t, nil)
	before := visible(t, cl)

	kv := concordv1connect.NewKVClient(http2Client(), "http://"+c.Endpoints()[0], connect.WithGRPC())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream := kv.Batch(ctx)
	require.NoError(t, stream.Send(manyCalls(4097)))
	resp, err := stream.Receive()
	require.Error(t, err, "%d calls ran", len(resp.GetResults()))
	require.Equal(t, "REQUEST_TOO_LARGE", errs.ReasonOf(errs.FromConnect(err), ""), "%v", err)
	require.Contains(t, err.Error(), "the limit is 4096")

	conn, br, status := upgrade(t, c.Endpoints()[0], "")
	require.Equal(t, http.StatusSwitchingProtocols, status)
	require.NoError(t, batchwire.NewWriter(conn).WriteMessage(manyCalls(4097)))
	_, _, err = batchwire.NewReader(br, 64<<20).Next()
	require.ErrorIs(t, err, batchwire.ErrGoAway, "calls ran")
	require.Contains(t, err.Error(), "the limit is 4096")
	require.Equal(t, before, visible(t, cl), "a refused message ran calls")

	// 4096 calls pass.
	stream = kv.Batch(ctx)
	require.NoError(t, stream.Send(manyCalls(4096)))
	got := 0
	for got < 4096 {
		resp, err = stream.Receive()
		require.NoError(t, err)
		for _, res := range resp.GetResults() {
			require.NotNil(t, res.GetPut(), "%v", res)
			got++
		}
	}
	require.NoError(t, stream.CloseRequest())
}

// The bound holds for a batch message in JSON too (a Connect stream with
// the JSON codec): counted only in the binary encoding, a JSON message of
// 64 MiB of empty calls ({},) was decoded whole, into gigabytes.
func TestAJSONBatchMessageOfTooManyCallsIsRefused(t *testing.T) {
	c, cl := single(t, nil)
	before := visible(t, cl)
	kv := concordv1connect.NewKVClient(http2Client(), "http://"+c.Endpoints()[0], connect.WithProtoJSON())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream := kv.Batch(ctx)
	require.NoError(t, stream.Send(manyCalls(4097)))
	resp, err := stream.Receive()
	require.Error(t, err, "%d calls ran", len(resp.GetResults()))
	require.Equal(t, "REQUEST_TOO_LARGE", errs.ReasonOf(errs.FromConnect(err), ""), "%v", err)
	require.Contains(t, err.Error(), "the limit is 4096")
	require.Equal(t, before, visible(t, cl), "a refused message ran calls")

	// 4096 calls pass.
	stream = kv.Batch(ctx)
	require.NoError(t, stream.Send(manyCalls(4096)))
	got := 0
	for got < 4096 {
		resp, err = stream.Receive()
		require.NoError(t, err)
		for _, res := range resp.GetResults() {
			require.NotNil(t, res.GetPut(), "%v", res)
			got++
		}
	}
	require.NoError(t, stream.CloseRequest())
}
