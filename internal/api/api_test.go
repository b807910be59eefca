package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
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
	"github.com/concord-dev/concord/internal/server"
	"github.com/concord-dev/concord/internal/testcluster"
)

func single(t *testing.T, configure func(*config.Server)) (*testcluster.Cluster, *client.Client) {
	c := testcluster.Start(t, testcluster.Options{Size: 1, Configure: func(_ int, cfg *config.Server) {
		cfg.Limits.MaxKeyBytes = 64
		cfg.Limits.MaxValueBytes = 1024
		cfg.Limits.MaxRequestBytes = 4096
		cfg.Limits.MaxTxnOps = 4
		if configure != nil {
			configure(cfg)
		}
	}})
	return c, c.Client()
}

// visible returns what a user can observe: every key with its revisions,
// and every session. (Failed writes that reached the log are remembered for
// deduplication, which the full state hash includes.)
func visible(t *testing.T, cl *client.Client) string {
	ctx := context.Background()
	var b strings.Builder
	for kv, err := range cl.List(ctx, "") {
		require.NoError(t, err)
		b.WriteString(kv.String() + "\n")
	}
	sessions, err := cl.ListSessions(ctx)
	require.NoError(t, err)
	for _, s := range sessions {
		b.WriteString(s.String() + "\n")
	}
	return b.String()
}

func TestBadInputGetsTypedErrorsAndChangesNothing(t *testing.T) {
	_, cl := single(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := cl.Put(ctx, "counter-text", []byte("abc"))
	require.NoError(t, err)
	before := visible(t, cl)

	tests := []struct {
		name   string
		call   func() error
		want   error
		reason string
	}{
		{"empty key", func() error { _, err := cl.Put(ctx, "", []byte("v")); return err }, client.ErrEmptyKey, "EMPTY_KEY"},
		{"key too large", func() error { _, err := cl.Put(ctx, strings.Repeat("k", 65), nil); return err }, client.ErrTooLarge, "KEY_TOO_LARGE"},
		{"value too large", func() error { _, err := cl.Put(ctx, "k", make([]byte, 1025)); return err }, client.ErrTooLarge, "VALUE_TOO_LARGE"},
		{"request too large", func() error { _, err := cl.Put(ctx, "k", make([]byte, 8192)); return err }, client.ErrTooLarge, "REQUEST_TOO_LARGE"},
		{"unknown session", func() error { _, err := cl.Put(ctx, "k", nil, client.WithSessionID(424242)); return err }, client.ErrSessionExpired, "SESSION_NOT_FOUND"},
		{"revoke unknown session", func() error { _, err := cl.RevokeSession(ctx, 424242); return err }, client.ErrSessionExpired, "SESSION_NOT_FOUND"},
		{"keep alive unknown session", func() error { _, err := cl.KeepAliveOnce(ctx, 424242); return err }, client.ErrSessionExpired, "SESSION_NOT_FOUND"},
		{"ttl out of range", func() error { _, err := cl.NewSession(ctx, client.WithTTL(48*time.Hour)); return err }, client.ErrInvalidArgument, "SESSION_TTL_OUT_OF_RANGE"},
		{"not a counter", func() error { _, err := cl.Add(ctx, "counter-text", 1); return err }, client.ErrNotCounter, "NOT_A_COUNTER"},
		{"counter below min", func() error { _, err := cl.Add(ctx, "stock", -1, client.WithMin(0)); return err }, client.ErrOutOfRange, "OUT_OF_RANGE"},
		{"bad range", func() error { _, err := cl.Range(ctx, "b", client.WithRange("a")); return err }, client.ErrInvalidArgument, "INVALID_RANGE"},
		{"too many txn ops", func() error {
			_, err := cl.Txn().Then(client.OpPut("a", nil), client.OpPut("b", nil), client.OpPut("c", nil), client.OpPut("d", nil), client.OpPut("e", nil)).Commit(ctx)
			return err
		}, client.ErrInvalidArgument, "TOO_MANY_OPS"},
		{"txn op fails atomically", func() error {
			_, err := cl.Txn().Then(client.OpPut("partial", []byte("x")), client.OpAdd("counter-text", 1)).Commit(ctx)
			return err
		}, client.ErrNotCounter, "NOT_A_COUNTER"},
		{"release a lock not held", func() error {
			s, err := cl.NewSession(ctx, client.WithTTL(5*time.Second))
			require.NoError(t, err)
			defer s.Close(ctx)
			return cl.ReleaseLocks(ctx, s, "owner", []string{"free"}, 0)
		}, client.ErrNotHeld, "LOCK_NOT_HELD"},
		{"remove unknown member", func() error { return cl.RemoveMember(ctx, "ghost") }, client.ErrNotFound, "MEMBER_NOT_FOUND"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			require.ErrorIs(t, err, tc.want)
			if tc.reason != "" {
				var ce *client.Error
				require.ErrorAs(t, err, &ce)
				require.Equal(t, tc.reason, ce.Reason)
				require.NotEmpty(t, ce.Message)
			}
		})
	}
	require.Equal(t, before, visible(t, cl), "bad input changed the state")
}

func TestWatchFromCompactedRevision(t *testing.T) {
	_, cl := single(t, func(cfg *config.Server) { cfg.HistoryEvents = 10 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, err := cl.Put(ctx, "w", []byte("0"))
	require.NoError(t, err)
	for i := 0; i < 30; i++ {
		_, err := cl.Put(ctx, "w", []byte("x"))
		require.NoError(t, err)
	}
	resp := <-cl.Watch(ctx, "w", client.WithRevision(first.Revision))
	require.ErrorIs(t, resp.Err, client.ErrCompacted)
	var ce *client.Error
	require.ErrorAs(t, resp.Err, &ce)
	require.Greater(t, ce.Revision, first.Revision, "the error names the compacted revision")
}

// TestAWatchFromNowWithProgressConfirmsItsStart pins what docs/kv.md tells
// a user who must not miss a write made right after Watch: with
// WithProgressNotify, the first response is a progress report sent once the
// member has fixed where "now" is, and a write made after it is delivered.
func TestAWatchFromNowWithProgressConfirmsItsStart(t *testing.T) {
	_, cl := single(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before, err := cl.Put(ctx, "p/before", []byte("0"))
	require.NoError(t, err)
	w := cl.Watch(ctx, "p/", client.WithPrefix(), client.WithProgressNotify())
	first := <-w
	require.NoError(t, first.Err)
	require.True(t, first.Progress, "the first response confirms the start")
	require.Empty(t, first.Events)
	require.GreaterOrEqual(t, first.Revision, before.Revision, "now is at or after the last write the client saw")
	after, err := cl.Put(ctx, "p/after", []byte("1"))
	require.NoError(t, err)
	for resp := range w {
		require.NoError(t, resp.Err)
		if resp.Progress {
			continue
		}
		require.Len(t, resp.Events, 1)
		require.Equal(t, "p/after", string(resp.Events[0].GetKv().GetKey()))
		require.Equal(t, after.Revision, resp.Revision)
		return
	}
	t.Fatal("the watch ended without the write made after its first response")
}

func TestQuotaRefusesGrowthButAllowsDeletes(t *testing.T) {
	_, cl := single(t, func(cfg *config.Server) { cfg.Limits.QuotaBytes = 2000 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = cl.Put(ctx, "q/"+strings.Repeat("x", i%10)+string(rune('a'+i%26)), make([]byte, 200))
	}
	require.ErrorIs(t, err, client.ErrQuotaExceeded)
	_, err = cl.Delete(ctx, "q/", client.WithPrefix())
	require.NoError(t, err)
	_, err = cl.Put(ctx, "q/again", make([]byte, 200))
	require.NoError(t, err)
}

func TestAuthToken(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1, Configure: func(_ int, cfg *config.Server) { cfg.AuthToken = "s3cret" }})
	ep := c.Endpoints()
	_, err := client.New(context.Background(), client.Config{Endpoints: ep, DialTimeout: 2 * time.Second})
	require.ErrorIs(t, err, client.ErrUnauthenticated)
	cl, err := client.New(context.Background(), client.Config{Endpoints: ep, Token: "s3cret"})
	require.NoError(t, err)
	defer cl.Close()
	_, err = cl.Put(context.Background(), "k", []byte("v"))
	require.NoError(t, err)

	resp, err := http.Get("http://" + ep[0] + "/debug/hash")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, err = http.Get("http://" + ep[0] + "/metrics")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "metrics tell who does what: they need the token too")
	req, err := http.NewRequest(http.MethodGet, "http://"+ep[0]+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, err = http.Get("http://" + ep[0] + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "health checks need no token")
}

func post(t *testing.T, url, body string) (int, map[string]any) {
	resp, err := http.Post(url, "application/json", bytes.NewBufferString(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func TestHTTPJSONErrorsCarryReasonsAndStatuses(t *testing.T) {
	c, _ := single(t, nil)
	base := "http://" + c.Endpoints()[0] + "/concord.v1.KV/"
	tests := []struct {
		name       string
		method     string
		body       string
		wantStatus int
		wantCode   string
		wantReason string
	}{
		{"ok", "Put", `{"key":"aGk=","value":"dA=="}`, 200, "", ""},
		{"empty key", "Put", `{"key":""}`, 400, "invalid_argument", "EMPTY_KEY"},
		{"malformed json", "Put", `{"key":`, 400, "invalid_argument", ""},
		{"unknown field", "Put", `{"nope":1}`, 400, "invalid_argument", ""},
		{"counter out of range", "Add", `{"key":"Yw==","delta":"-1","min":"0"}`, 400, "failed_precondition", "OUT_OF_RANGE"},
		{"unknown session", "Put", `{"key":"aw==","session":"99999"}`, 404, "not_found", "SESSION_NOT_FOUND"},
		{"client id too long", "Put", `{"key":"bG9uZw==","meta":{"clientId":"` + strings.Repeat("c", server.MaxClientIDBytes+1) + `","requestId":"1"}}`,
			400, "invalid_argument", "INVALID_ARGUMENT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, out := post(t, base+tc.method, tc.body)
			require.Equal(t, tc.wantStatus, status, "%v", out)
			if tc.wantCode != "" {
				require.Equal(t, tc.wantCode, out["code"])
			}
			if tc.wantReason != "" {
				details, _ := out["details"].([]any)
				require.NotEmpty(t, details)
				debug := details[0].(map[string]any)["debug"].(map[string]any)
				require.Equal(t, tc.wantReason, debug["reason"])
			}
		})
	}
	// The refused put changed nothing.
	status, out := post(t, base+"Range", `{"key":"bG9uZw=="}`)
	require.Equal(t, 200, status, "%v", out)
	require.Empty(t, out["kvs"], "the put with a long client ID was applied")
}

func TestShuttingDownMemberRefusesWithTypedError(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	srv := c.Members[0].Daemon().Server()
	srv.BeginShutdown(context.Background())
	_, err := srv.Put(context.Background(), nil)
	require.Error(t, err)
	require.Equal(t, "SHUTTING_DOWN", errs.ReasonOf(srv.Barrier(context.Background()), ""))
}

// Every reason the server can return has a wire code and an SDK sentinel.
func TestEveryReasonIsMapped(t *testing.T) {
	sdk := client.Reasons()
	for _, r := range errs.Reasons() {
		if strings.HasPrefix(r, "TEST_") {
			continue
		}
		_, coded := errs.Codes[r]
		require.True(t, coded, "reason %s has no code in errs.Codes", r)
		if r == "INTERNAL" {
			continue
		}
		require.True(t, slices.Contains(sdk, r), "reason %s has no SDK sentinel", r)
	}
	for r := range errs.Codes {
		_, declared := errs.Lookup(r)
		require.True(t, declared || r == "TIMEOUT", "errs.Codes maps %s, which nothing declares", r)
	}
	require.False(t, errors.Is(nil, client.ErrNotFound))
}

// docs/errors.md lists every reason.
func TestErrorsDocListsEveryReason(t *testing.T) {
	doc, err := os.ReadFile("../../docs/errors.md")
	require.NoError(t, err)
	for _, r := range errs.Reasons() {
		if strings.HasPrefix(r, "TEST_") {
			continue
		}
		require.True(t, strings.Contains(string(doc), "`"+r+"`"), "docs/errors.md does not list %s", r)
	}
}

// A batch message carries independent calls: one bad call gets its own
// typed error and the others succeed; the stream stays up.
func TestBatchCallsFailAlone(t *testing.T) {
	c, _ := single(t, nil)
	kv := concordv1connect.NewKVClient(http2Client(), "http://"+c.Endpoints()[0], connect.WithGRPC())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream := kv.Batch(ctx)
	calls := []*concordv1.BatchCall{
		{Id: 1, Request: &concordv1.BatchCall_Put{Put: &concordv1.PutRequest{Key: []byte("a"), Value: []byte("1")}}},
		{Id: 2, Request: &concordv1.BatchCall_Put{Put: &concordv1.PutRequest{Key: []byte("b"), Value: make([]byte, 8192)}}},
		{Id: 3},
		{Id: 4, Request: &concordv1.BatchCall_Range{Range: &concordv1.RangeRequest{Key: []byte("a")}}},
	}
	require.NoError(t, stream.Send(&concordv1.BatchRequest{Calls: calls[:3]}))
	got := map[uint64]*concordv1.BatchResult{}
	for len(got) < 3 {
		resp, err := stream.Receive()
		require.NoError(t, err)
		for _, r := range resp.GetResults() {
			got[r.GetId()] = r
		}
	}
	require.NotNil(t, got[1].GetPut())
	require.Equal(t, "REQUEST_TOO_LARGE", got[2].GetError().GetInfo().GetReason())
	require.Equal(t, "EMPTY_CALL", got[3].GetError().GetInfo().GetReason())
	require.NoError(t, stream.Send(&concordv1.BatchRequest{Calls: calls[3:]}))
	resp, err := stream.Receive()
	require.NoError(t, err)
	require.Equal(t, "1", string(resp.GetResults()[0].GetRange().GetKvs()[0].GetValue()), "the stream still serves after bad calls")
	require.NoError(t, stream.CloseRequest())
}

func http2Client() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}

// The quotas hold for every write that grows the state, counted as the
// state machine counts it: transactions of counters, transaction puts of
// new keys past --max-keys, and the per-item overhead of new keys.
func TestQuotasHoldForTransactionsAndCounters(t *testing.T) {
	_, cl := single(t, func(cfg *config.Server) { cfg.Limits.MaxKeys = 3 })
	ctx := context.Background()
	_, err := cl.Txn().Then(client.OpPut("a", nil), client.OpPut("b", nil), client.OpPut("c", nil), client.OpPut("d", nil)).Commit(ctx)
	require.ErrorIs(t, err, client.ErrQuotaExceeded, "four new keys in one transaction past --max-keys 3")
	_, err = cl.Txn().Then(client.OpPut("a", nil), client.OpPut("b", nil), client.OpPut("c", nil)).Commit(ctx)
	require.NoError(t, err)
	_, err = cl.Txn().Then(client.OpAdd("counter", 1)).Commit(ctx)
	require.ErrorIs(t, err, client.ErrQuotaExceeded, "a counter created by a transaction is a new key")
	_, err = cl.Txn().Then(client.OpPut("a", []byte("overwrite"))).Commit(ctx)
	require.NoError(t, err, "overwriting a key adds none")
	_, err = cl.Txn().If(client.ValueEquals("a", []byte("x"))).
		Then(client.OpPut("a", nil)).Else(client.OpPut("e", nil)).Commit(ctx)
	require.ErrorIs(t, err, client.ErrQuotaExceeded, "either branch may run: the larger one counts")
	_, err = cl.Txn().Then(client.OpDelete("a"), client.OpPut("e", nil)).Commit(ctx)
	require.NoError(t, err, "a rename at --max-keys keeps the count: the delete is credited")
	_, err = cl.Txn().Then(client.OpPut("f", nil), client.OpDelete("f")).Commit(ctx)
	require.NoError(t, err, "a key put and deleted in one transaction adds none")
	keys := 0
	for _, err := range cl.List(ctx, "") {
		require.NoError(t, err)
		keys++
	}
	require.Equal(t, 3, keys)

	_, cl = single(t, func(cfg *config.Server) { cfg.Limits.QuotaBytes = 200 })
	_, err = cl.Put(ctx, "k1", make([]byte, 100))
	require.NoError(t, err) // 2 + 100 + 64 = 166 bytes
	_, err = cl.Put(ctx, "k2", make([]byte, 30))
	require.ErrorIs(t, err, client.ErrQuotaExceeded, "166 + 96 > 200: a new item costs its overhead too")
	for i := range 3 {
		_, err = cl.Txn().Then(client.OpAdd(fmt.Sprintf("n%d", i), 1)).Commit(ctx)
		require.ErrorIs(t, err, client.ErrQuotaExceeded, "a transaction of counters grows the state")
	}
	_, err = cl.Put(ctx, "k1", make([]byte, 10))
	require.NoError(t, err, "a write that shrinks the state passes")
}

// A session read at a revision the cluster has not reached is refused at
// once, not waited on until the caller gives up (a raw HTTP client without
// a deadline held its request, and a goroutine, open for good).
func TestASessionReadBeyondTheClusterIsRefused(t *testing.T) {
	c, cl := single(t, nil)
	_, err := cl.Put(context.Background(), "k", []byte("v"))
	require.NoError(t, err)
	start := time.Now()
	status, out := post(t, "http://"+c.Endpoints()[0]+"/concord.v1.KV/Range",
		`{"key":"aw==","consistency":"CONSISTENCY_SESSION","min_revision":"18446744073709551615"}`)
	require.Equal(t, 400, status, "%v", out)
	require.Contains(t, out["message"], "beyond the cluster's revision")
	require.Less(t, time.Since(start), 5*time.Second)
	// A revision the member has reached is served as before.
	status, out = post(t, "http://"+c.Endpoints()[0]+"/concord.v1.KV/Range", `{"key":"aw==","consistency":"CONSISTENCY_SESSION","min_revision":"1"}`)
	require.Equal(t, 200, status, "%v", out)
}

// --max-watches bounds the watch streams a member serves: one more is
// refused with TOO_MANY_WATCHES (ErrQuotaExceeded in the SDK), and a
// stream that ends makes room.
func TestMaxWatchesBoundsTheStreamsAMemberServes(t *testing.T) {
	c, cl := single(t, func(cfg *config.Server) { cfg.Limits.MaxWatches = 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addr := c.Endpoints()[0]
	// The watches that must deliver w/k name their start: the stream
	// gauge counts a stream before the member fixes where "now" is, so a
	// watch from now could start after the Put.
	before, err := cl.Put(ctx, "before", []byte("x"))
	require.NoError(t, err)
	from := client.WithRevision(before.Revision + 1)
	first, stopFirst := context.WithCancel(ctx)
	w1 := cl.Watch(first, "w/", client.WithPrefix())
	w2 := cl.Watch(ctx, "w/", client.WithPrefix(), from)
	require.Eventually(t, func() bool { return metric(t, addr, `concord_api_open_streams{method="KV/Watch"} 2`) },
		10*time.Second, 20*time.Millisecond)
	select {
	case resp := <-cl.Watch(ctx, "w/", client.WithPrefix()):
		require.ErrorIs(t, resp.Err, client.ErrQuotaExceeded, "a third watch on a member that serves 2")
	case <-time.After(10 * time.Second):
		t.Fatal("the third watch was neither served nor refused")
	}
	stopFirst()
	for range w1 {
	}
	require.Eventually(t, func() bool { return metric(t, addr, `concord_api_open_streams{method="KV/Watch"} 1`) },
		10*time.Second, 20*time.Millisecond)
	w3 := cl.Watch(ctx, "w/", client.WithPrefix(), from)
	require.Eventually(t, func() bool { return metric(t, addr, `concord_api_open_streams{method="KV/Watch"} 2`) },
		10*time.Second, 20*time.Millisecond)
	_, err = cl.Put(ctx, "w/k", []byte("v"))
	require.NoError(t, err)
	for _, w := range []<-chan client.WatchResponse{w2, w3} {
		resp := <-w
		require.NoError(t, resp.Err)
		require.Len(t, resp.Events, 1, "a watch within the bound is served")
	}
}
