package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/errs"
)

// A unary request of more nested messages (and elements of repeated
// fields) than a request holds, refused before it is decoded, got
// invalid_argument with no reason and Connect's message ("unmarshal
// message: unmarshal into *concordv1.TxnRequest: too many nested
// messages"), unlike every other refusal. It now gets REQUEST_TOO_LARGE,
// as a KV.Batch message over its own bound does, with a message that
// names the bound, in every protocol and encoding; and so does a
// server-streaming call's request. Nothing runs.
func TestRequestsOverTheDecodingBoundGetATypedError(t *testing.T) {
	c, cl := single(t, func(cfg *config.Server) { cfg.Limits.MaxRequestBytes = config.DefaultMaxRequestBytes })
	before := visible(t, cl)
	base := "http://" + c.Endpoints()[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const over = 1<<16 + 1 // the single member's bound is 65,536 (8 × --max-txn-ops 4 is less)
	txn := &concordv1.TxnRequest{Success: []*concordv1.RequestOp{{Request: &concordv1.RequestOp_Put{Put: &concordv1.PutRequest{Key: []byte("k")}}}}}
	for range over {
		txn.Compare = append(txn.Compare, &concordv1.Compare{})
	}
	acquire := &concordv1.AcquireRequest{}
	for range over {
		acquire.Claims = append(acquire.Claims, &concordv1.LockClaim{})
	}
	check := func(t *testing.T, err error) {
		t.Helper()
		require.Error(t, err)
		require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "%v", err)
		require.Equal(t, "REQUEST_TOO_LARGE", errs.ReasonOf(errs.FromConnect(err), ""), "%v", err)
		require.Contains(t, err.Error(), "more than 65536 nested messages", "%v", err)
	}
	for name, opts := range map[string][]connect.ClientOption{
		"connect proto": nil,
		"connect json":  {connect.WithProtoJSON()},
		"grpc":          {connect.WithGRPC()},
		"grpc-web":      {connect.WithGRPCWeb()},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := concordv1connect.NewKVClient(http2Client(), base, opts...).Txn(ctx, connect.NewRequest(txn))
			check(t, err)
			stream, err := concordv1connect.NewLockClient(http2Client(), base, opts...).Acquire(ctx, connect.NewRequest(acquire))
			require.NoError(t, err)
			for stream.Receive() {
				t.Fatalf("Acquire answered %v", stream.Msg())
			}
			check(t, stream.Err())
			require.NoError(t, stream.Close())
		})
	}

	// curl: a JSON body posted to the unary path gets the typed error as
	// JSON, with 400.
	body := `{"compare":[{}` + strings.Repeat(`,{}`, over) + `],"success":[{"put":{"key":"aw=="}}]}`
	resp, err := http2Client().Post(base+concordv1connect.KVTxnProcedure, "application/json", bytes.NewReader([]byte(body)))
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s", out)
	require.Contains(t, string(out), `"reason":"REQUEST_TOO_LARGE"`, "%s", out)
	require.Contains(t, string(out), "nested messages", "%s", out)

	require.Equal(t, before, visible(t, cl), "a refused request changed the state")

	// A request within the bound is unaffected, and its errors (invalid
	// argument too) keep their own reason and message.
	for _, opts := range [][]connect.ClientOption{nil, {connect.WithProtoJSON()}, {connect.WithGRPC()}, {connect.WithGRPCWeb()}} {
		_, err = concordv1connect.NewKVClient(http2Client(), base, opts...).Txn(ctx, connect.NewRequest(&concordv1.TxnRequest{Compare: txn.Compare[:5]}))
		require.Equal(t, "TOO_MANY_OPS", errs.ReasonOf(errs.FromConnect(err), ""), "%v", err)
		require.NotContains(t, err.Error(), "nested messages", "%v", err)
		_, err = concordv1connect.NewKVClient(http2Client(), base, opts...).Put(ctx, connect.NewRequest(&concordv1.PutRequest{Key: []byte("k")}))
		require.NoError(t, err)
	}
}

// putOfSize is a Put whose message is size bytes on the wire.
func putOfSize(t *testing.T, key string, size int) *concordv1.PutRequest {
	t.Helper()
	put := &concordv1.PutRequest{Key: []byte(key), Value: make([]byte, size-len(key)-5)}
	require.Equal(t, size, put.SizeVT())
	return put
}

// A request message over --max-request-bytes, which Connect refuses before
// decoding it, got resource_exhausted (429) with no reason and Connect's
// message ("message size N is larger than configured max M"), unlike
// every other refusal of a request's size. It now gets REQUEST_TOO_LARGE,
// with a message that names the limit and the flag, in every protocol and
// encoding, for a unary call and a streaming call's request alike (a call
// of a KV.Batch stream, on either transport, already got it, alone); the
// SDK returns ErrTooLarge with the reason. A request of exactly the limit
// is served. Nothing runs.
func TestRequestsOverMaxRequestBytesGetATypedError(t *testing.T) {
	const limit = 4096
	c, cl := single(t, func(cfg *config.Server) { cfg.Limits.MaxValueBytes = limit - 64 })
	before := visible(t, cl)
	base := "http://" + c.Endpoints()[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	key := strings.Repeat("k", 60)
	over := putOfSize(t, key, limit+1)
	acquire := &concordv1.AcquireRequest{Owner: strings.Repeat("o", limit)}
	check := func(t *testing.T, err error) {
		t.Helper()
		require.Error(t, err)
		require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "%v", err)
		require.Equal(t, "REQUEST_TOO_LARGE", errs.ReasonOf(errs.FromConnect(err), ""), "%v", err)
		require.Contains(t, err.Error(), "the limit is 4096 (--max-request-bytes)", "%v", err)
	}
	for name, opts := range map[string][]connect.ClientOption{
		"connect proto": nil,
		"connect json":  {connect.WithProtoJSON()},
		"connect gzip":  {connect.WithSendGzip()},
		"grpc":          {connect.WithGRPC()},
		"grpc gzip":     {connect.WithGRPC(), connect.WithSendGzip()},
		"grpc-web":      {connect.WithGRPCWeb()},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := concordv1connect.NewKVClient(http2Client(), base, opts...).Put(ctx, connect.NewRequest(over))
			check(t, err)
			stream, err := concordv1connect.NewLockClient(http2Client(), base, opts...).Acquire(ctx, connect.NewRequest(acquire))
			require.NoError(t, err)
			for stream.Receive() {
				t.Fatalf("Acquire answered %v", stream.Msg())
			}
			check(t, stream.Err())
			require.NoError(t, stream.Close())
		})
	}

	// curl: a JSON body of one byte over the limit gets the typed error as
	// JSON, with 400.
	json := func(size int) string {
		body := fmt.Sprintf(`{"key":%q,"value":"aGk="}`, base64.StdEncoding.EncodeToString([]byte("curl")))
		return body + strings.Repeat(" ", size-len(body))
	}
	resp, err := http2Client().Post(base+concordv1connect.KVPutProcedure, "application/json", strings.NewReader(json(limit+1)))
	require.NoError(t, err)
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s", out)
	require.Contains(t, string(out), `"reason":"REQUEST_TOO_LARGE"`, "%s", out)
	require.Contains(t, string(out), "a request message of 4097 bytes; the limit is 4096 (--max-request-bytes)", "%s", out)
	// Connect refused the unary Puts before any interceptor ran; each is
	// counted under its method and code all the same (six protocols and
	// curl).
	require.True(t, metric(t, c.Endpoints()[0], `concord_api_requests_total{code="invalid_argument",method="KV/Put"} 7`+"\n"),
		"the refused Puts are counted")

	// The SDK returns ErrTooLarge, with the reason.
	_, err = cl.Put(ctx, key, make([]byte, limit))
	require.ErrorIs(t, err, client.ErrTooLarge)
	var ce *client.Error
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "REQUEST_TOO_LARGE", ce.Reason)

	require.Equal(t, before, visible(t, cl), "a refused request changed the state")

	// A message of exactly the limit is served, in every protocol.
	for _, opts := range [][]connect.ClientOption{nil, {connect.WithGRPC()}, {connect.WithGRPCWeb()}} {
		_, err := concordv1connect.NewKVClient(http2Client(), base, opts...).Put(ctx, connect.NewRequest(putOfSize(t, key, limit)))
		require.NoError(t, err)
	}
	resp, err = http2Client().Post(base+concordv1connect.KVPutProcedure, "application/json", strings.NewReader(json(limit)))
	require.NoError(t, err)
	out, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", out)
}

// A KV.Batch message larger than its own bound (64 MiB; each call in it is
// held to --max-request-bytes) ends the stream with REQUEST_TOO_LARGE
// naming that bound, not resource_exhausted with no reason. (A length
// prefix is enough: Connect refuses the message from it.)
func TestABatchMessageOverItsBoundGetsATypedError(t *testing.T) {
	c, _ := single(t, nil)
	body := []byte{0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(body[1:], 64<<20+1)
	req, err := http.NewRequest(http.MethodPost, "http://"+c.Endpoints()[0]+concordv1connect.KVBatchProcedure, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	resp, err := http2Client().Do(req)
	require.NoError(t, err)
	_, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, "3", resp.Trailer.Get("Grpc-Status"), "%v", resp.Trailer)
	require.Contains(t, resp.Trailer.Get("Grpc-Message"), "a KV.Batch message of 67108865 bytes; the limit is 67108864", "%v", resp.Trailer)
	require.NotEmpty(t, resp.Trailer.Get("Grpc-Status-Details-Bin"), "no ErrorInfo")
}
