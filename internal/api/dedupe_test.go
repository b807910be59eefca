package api_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
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

// A client restarted with the same Config.ClientID numbered its writes from
// 1 again; the server still remembered the previous process's results under
// those IDs and answered the new writes with them: nothing was written.
// Request IDs now start from the clock at New.
func TestRestartedClientWithFixedIDWritesAnew(t *testing.T) {
	c, _ := single(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := client.Config{Endpoints: c.Endpoints(), ClientID: "orders-service"}

	first, err := client.New(ctx, cfg)
	require.NoError(t, err)
	_, err = first.Put(ctx, "order/1", []byte("placed"))
	require.NoError(t, err)
	first.Close()

	// The process restarts (same configuration).
	second, err := client.New(ctx, cfg)
	require.NoError(t, err)
	defer second.Close()
	_, err = second.Put(ctx, "order/1", []byte("shipped"))
	require.NoError(t, err, "the put is acknowledged")
	kv, err := second.Get(ctx, "order/1")
	require.NoError(t, err)
	require.Equal(t, "shipped", string(kv.Value), "an acknowledged put was never applied")
}

// A retried write gets its first result. A write that was applied was
// refused with QUOTA_EXCEEDED on retry once the state neared its quota,
// because the quota check ran again before the request ID was looked up:
// the caller was told "nothing was applied" (docs/errors.md) although the
// counter had moved.
func TestRetryOfAppliedWritePassesTheQuota(t *testing.T) {
	c, _ := single(t, func(cfg *config.Server) {
		cfg.Limits.QuotaBytes = 71 + 68 + 1000 + 10 // stock + fill + 10 bytes
		cfg.Limits.MaxValueBytes = 2048
		cfg.Limits.MaxRequestBytes = 8192
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kvc := concordv1connect.NewKVClient(http.DefaultClient, "http://"+c.Endpoints()[0])
	lo := int64(0)

	_, err := kvc.Add(ctx, connect.NewRequest(&concordv1.AddRequest{Key: []byte("stock"), Delta: 10}))
	require.NoError(t, err) // "10": 5+2+64 = 71 bytes

	deduct := &concordv1.AddRequest{Key: []byte("stock"), Delta: -5, Min: &lo,
		Meta: &concordv1.WriteMeta{ClientId: "shop", RequestId: 1}}
	res, err := kvc.Add(ctx, connect.NewRequest(deduct))
	require.NoError(t, err)
	require.EqualValues(t, 5, res.Msg.GetValue())

	// Another client fills the state to 10 bytes below the quota.
	_, err = kvc.Put(ctx, connect.NewRequest(&concordv1.PutRequest{Key: []byte("fill"), Value: make([]byte, 1000)}))
	require.NoError(t, err)

	// The response of the deduction was lost: the client retries it with the
	// same request ID, as the SDK does.
	retry := &concordv1.AddRequest{Key: []byte("stock"), Delta: -5, Min: &lo,
		Meta: &concordv1.WriteMeta{ClientId: "shop", RequestId: 1}}
	again, err := kvc.Add(ctx, connect.NewRequest(retry))
	if err != nil {
		info, _ := errs.InfoOf(err)
		t.Fatalf("retry of an applied write failed with %v (reason %s); want the first result (value 5, revision %d)",
			err, info.GetReason(), res.Msg.GetHeader().GetRevision())
	}
	require.EqualValues(t, 5, again.Msg.GetValue())
	require.Equal(t, res.Msg.GetHeader().GetRevision(), again.Msg.GetHeader().GetRevision())
}

// A JSON caller that named a client_id but left request_id out (0) got
// every later write answered with the first one's result: acknowledged,
// never applied. request_id 0 with a client_id is INVALID_ARGUMENT.
func TestClientIDWithoutRequestIDIsRefused(t *testing.T) {
	c, _ := single(t, nil)
	base := "http://" + c.Endpoints()[0] + "/concord.v1.KV/"
	for _, v := range []string{"one", "two"} {
		code, out := post(t, base+"Put", `{"key":"`+b64("k")+`","value":"`+b64(v)+`","meta":{"client_id":"curl"}}`)
		require.Equal(t, http.StatusBadRequest, code, "a write with a client_id and no request_id: %v", out)
		require.Contains(t, fmt.Sprint(out), "INVALID_ARGUMENT")
	}
	code, out := post(t, base+"Range", `{"key":"`+b64("k")+`"}`)
	require.Equal(t, http.StatusOK, code)
	require.Nil(t, out["kvs"], "a refused write changed the state")
	// With a request ID the same write goes through.
	code, out = post(t, base+"Put", `{"key":"`+b64("k")+`","value":"`+b64("one")+`","meta":{"client_id":"curl","request_id":"1"}}`)
	require.Equal(t, http.StatusOK, code, "%v", out)
}

// The same holds for --max-sessions: a retried CreateSession that was
// applied returns its session, not TOO_MANY_SESSIONS.
func TestRetryOfAppliedSessionCreatePassesTheLimit(t *testing.T) {
	c, _ := single(t, func(cfg *config.Server) { cfg.Limits.MaxSessions = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sc := concordv1connect.NewSessionClient(http.DefaultClient, "http://"+c.Endpoints()[0])
	create := func() (*connect.Response[concordv1.CreateSessionResponse], error) {
		return sc.Create(ctx, connect.NewRequest(&concordv1.CreateSessionRequest{TtlMs: 10000,
			Meta: &concordv1.WriteMeta{ClientId: "worker", RequestId: 7}}))
	}
	first, err := create()
	require.NoError(t, err)
	again, err := create()
	require.NoError(t, err, "a retry of a session create that was applied is refused by --max-sessions")
	require.Equal(t, first.Msg.GetId(), again.Msg.GetId())
	// A new create is still refused.
	_, err = sc.Create(ctx, connect.NewRequest(&concordv1.CreateSessionRequest{TtlMs: 10000,
		Meta: &concordv1.WriteMeta{ClientId: "worker", RequestId: 8}}))
	info, _ := errs.InfoOf(err)
	require.Equal(t, "TOO_MANY_SESSIONS", info.GetReason(), "%v", err)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
