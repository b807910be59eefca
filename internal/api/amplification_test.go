package api_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"runtime"
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

// allocated returns the bytes the process allocated while f ran.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A message of empty sub-messages decodes to some 50 times its size (2
// bytes on the wire, a struct decoded): a request of 3 MiB of empty
// compares took some 150 MB before --max-txn-ops judged it, and a JSON one
// as much. Requests of more nested messages than a client sends are
// refused before they are decoded, in either encoding.
func TestRequestsOfManyEmptyMessagesAreRefusedBeforeTheyAreDecoded(t *testing.T) {
	c, _ := single(t, func(cfg *config.Server) { cfg.Limits.MaxRequestBytes = config.DefaultMaxRequestBytes })
	base := "http://" + c.Endpoints()[0]
	const size = config.DefaultMaxRequestBytes - 16
	post := func(contentType, path string, body []byte) (int, string) {
		resp, err := http2Client().Post(base+path, contentType, bytes.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	binaryTxn := bytes.Repeat([]byte{0x0a, 0x00}, size/2) // compare: {}
	jsonTxn := []byte(`{"compare":[{}` + strings.Repeat(`,{}`, size/3-6) + `]}`)
	for _, tc := range []struct {
		name, contentType, path string
		body                    []byte
	}{
		{"binary", "application/proto", concordv1connect.KVTxnProcedure, binaryTxn},
		{"json", "application/json", concordv1connect.KVTxnProcedure, jsonTxn},
		// Elements of repeated fields count too: a JSON array of a
		// million empty strings took some 100 MB.
		{"binary strings", "application/proto", concordv1connect.LockReleaseProcedure, binaryTxn},
		{"json strings", "application/json", concordv1connect.LockReleaseProcedure, []byte(`{"names":[""` + strings.Repeat(`,""`, size/3-6) + `]}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var status int
			var out string
			n := allocated(func() { status, out = post(tc.contentType, tc.path, tc.body) })
			require.Equal(t, http.StatusBadRequest, status, "%.300s", out)
			require.Less(t, n, uint64(48<<20), "a request of %d bytes took %d MB to refuse", len(tc.body), n>>20)
			require.Contains(t, out, "nested messages", "%.300s", out)
		})
	}

	// A transaction as large as --max-txn-ops allows passes.
	var txn concordv1.TxnRequest
	for i := range config.DefaultMaxTxnOps {
		key := []byte{'k', byte(i)}
		txn.Compare = append(txn.Compare, &concordv1.Compare{Key: key, Target: concordv1.Compare_TARGET_VERSION, Result: concordv1.Compare_RESULT_EQUAL})
		txn.Success = append(txn.Success, &concordv1.RequestOp{Request: &concordv1.RequestOp_Put{Put: &concordv1.PutRequest{Key: key}}})
		txn.Failure = append(txn.Failure, &concordv1.RequestOp{Request: &concordv1.RequestOp_Put{Put: &concordv1.PutRequest{Key: key}}})
	}
	kv := concordv1connect.NewKVClient(http2Client(), base, connect.WithGRPC())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := kv.Txn(ctx, connect.NewRequest(&txn))
	require.Equal(t, "TOO_MANY_OPS", errs.ReasonOf(errs.FromConnect(err), ""), "%v: the single member's --max-txn-ops is 4", err) // judged once decoded
}

// A JSON batch message is held to the limits of a binary one: more than
// 4096 calls, or more nested messages than a batch of the SDK's holds, and
// the message is refused before it is decoded; none of its calls run.
func TestAJSONBatchMessageIsBoundedAsABinaryOne(t *testing.T) {
	c, cl := single(t, nil)
	before := visible(t, cl)
	envelope := func(msg string) []byte {
		b := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
		return append(b, msg...)
	}
	for name, msg := range map[string]string{
		"too many calls":    `{"calls":[{"put":{"key":"aw=="}}` + strings.Repeat(`,{"put":{"key":"aw=="}}`, 4096) + `]}`,
		"too many messages": `{"calls":[{"txn":{"compare":[{}` + strings.Repeat(`,{}`, 1<<20) + `]}}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, "http://"+c.Endpoints()[0]+concordv1connect.KVBatchProcedure, bytes.NewReader(envelope(msg)))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/connect+json")
			resp, err := http2Client().Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Contains(t, string(b), "REQUEST_TOO_LARGE", "%.300s", b)
			require.NotContains(t, string(b), `"results"`, "calls ran: %.300s", b)
		})
	}
	require.Equal(t, before, visible(t, cl), "a refused message ran calls")
}

// A binary batch message of more nested messages than a batch of the SDK's
// holds is refused before it is decoded, with its reason; the SDK's
// largest batch (512 transactions of --max-txn-ops operations) passes.
func TestABinaryBatchMessageOfTooManyMessagesIsRefused(t *testing.T) {
	c, _ := single(t, func(cfg *config.Server) {
		cfg.Limits.MaxTxnOps = config.DefaultMaxTxnOps
		cfg.Limits.MaxRequestBytes = config.DefaultMaxRequestBytes
	})
	kv := concordv1connect.NewKVClient(http2Client(), "http://"+c.Endpoints()[0], connect.WithGRPC())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	empty := &concordv1.BatchRequest{}
	for i := range 1024 {
		txn := &concordv1.TxnRequest{Compare: make([]*concordv1.Compare, 1024)}
		for j := range txn.Compare {
			txn.Compare[j] = &concordv1.Compare{}
		}
		empty.Calls = append(empty.Calls, &concordv1.BatchCall{Id: uint64(i + 1), Request: &concordv1.BatchCall_Txn{Txn: txn}})
	}
	stream := kv.Batch(ctx)
	require.NoError(t, stream.Send(empty))
	resp, err := stream.Receive()
	require.Error(t, err, "%d calls ran", len(resp.GetResults()))
	require.Equal(t, "REQUEST_TOO_LARGE", errs.ReasonOf(errs.FromConnect(err), ""), "%v", err)
	// The message says what was refused, once ("request too large:
	// request too large: ..." repeated the sentinel's text).
	require.Equal(t, 1, strings.Count(err.Error(), "request too large"), "%v", err)
	require.Contains(t, err.Error(), "nested messages", "%v", err)

	largest := &concordv1.BatchRequest{}
	for i := range 512 {
		var txn concordv1.TxnRequest
		for j := range config.DefaultMaxTxnOps {
			key := []byte{'k', byte(i), byte(j)}
			txn.Compare = append(txn.Compare, &concordv1.Compare{Key: key, Target: concordv1.Compare_TARGET_VERSION, Result: concordv1.Compare_RESULT_EQUAL})
			txn.Success = append(txn.Success, &concordv1.RequestOp{Request: &concordv1.RequestOp_Put{Put: &concordv1.PutRequest{Key: key}}})
			txn.Failure = append(txn.Failure, &concordv1.RequestOp{Request: &concordv1.RequestOp_Put{Put: &concordv1.PutRequest{Key: key}}})
		}
		largest.Calls = append(largest.Calls, &concordv1.BatchCall{Id: uint64(i + 1), Request: &concordv1.BatchCall_Txn{Txn: &txn}})
	}
	stream = kv.Batch(ctx)
	require.NoError(t, stream.Send(largest))
	got := 0
	for got < 512 {
		resp, err = stream.Receive()
		require.NoError(t, err)
		for _, res := range resp.GetResults() {
			require.NotNil(t, res.GetTxn(), "%v", res)
			got++
		}
	}
	require.NoError(t, stream.CloseRequest())
}
