package api_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
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
