package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/api/batchwire"
	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
	"github.com/concord-dev/concord/api/vtcodec"
	"github.com/concord-dev/concord/internal/config"
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

// A call of a KV.Batch stream was held to --max-request-bytes by its own
// size, which also counts its id, its timeout and its request's tag and
// length: a Put of exactly the limit, which the unary call takes, failed
// with REQUEST_TOO_LARGE in a batch, as the SDK sends it. The limit now
// holds for the call's request, on either transport: a request of the
// limit runs, one byte more fails alone, naming the limit and the flag.
func TestBatchCallsAreHeldToMaxRequestBytesAsUnaryCallsAre(t *testing.T) {
	const limit = 4096
	c, _ := single(t, func(cfg *config.Server) { cfg.Limits.MaxValueBytes = limit - 64 })
	key := strings.Repeat("k", 60)
	calls := &concordv1.BatchRequest{Calls: []*concordv1.BatchCall{
		{Id: 1, TimeoutMs: 20000, Request: &concordv1.BatchCall_Put{Put: putOfSize(t, key, limit)}},
		{Id: 2, TimeoutMs: 20000, Request: &concordv1.BatchCall_Put{Put: putOfSize(t, key, limit+1)}},
	}}
	check := func(t *testing.T, results map[uint64]*concordv1.BatchResult) {
		t.Helper()
		require.NotNil(t, results[1].GetPut(), "a request of the limit runs: %.300v", results[1])
		require.Equal(t, "REQUEST_TOO_LARGE", results[2].GetError().GetInfo().GetReason(), "%.300v", results[2])
		require.Contains(t, results[2].GetError().GetMessage(), "the limit is 4096 (--max-request-bytes)")
	}
	collect := func(t *testing.T, next func() *concordv1.BatchResponse) map[uint64]*concordv1.BatchResult {
		results := map[uint64]*concordv1.BatchResult{}
		for len(results) < 2 {
			for _, res := range next().GetResults() {
				results[res.GetId()] = res
			}
		}
		return results
	}

	t.Run("connect", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		stream := concordv1connect.NewKVClient(http2Client(), "http://"+c.Endpoints()[0], connect.WithGRPC()).Batch(ctx)
		require.NoError(t, stream.Send(calls))
		check(t, collect(t, func() *concordv1.BatchResponse {
			resp, err := stream.Receive()
			require.NoError(t, err)
			return resp
		}))
		require.NoError(t, stream.CloseRequest())
	})
	t.Run("framed", func(t *testing.T) {
		conn, br, status := upgrade(t, c.Endpoints()[0], "")
		require.Equal(t, http.StatusSwitchingProtocols, status)
		require.NoError(t, batchwire.NewWriter(conn).WriteMessage(calls))
		r := batchwire.NewReader(br, 1<<20)
		check(t, collect(t, func() *concordv1.BatchResponse {
			typ, payload, err := r.Next()
			require.NoError(t, err)
			require.Equal(t, batchwire.FrameMessage, typ)
			var resp concordv1.BatchResponse
			require.NoError(t, (vtcodec.Codec{}).Unmarshal(payload, &resp))
			return &resp
		}))
	})
}
