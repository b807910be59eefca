package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
	"github.com/concord-dev/concord/api/vtcodec"
)

// failingKV answers every Put with one reason, and records the attempts.
type failingKV struct {
	concordv1connect.UnimplementedKVHandler
	reason string
	mu     sync.Mutex
	at     []time.Time
	ids    map[uint64]bool
}

func (k *failingKV) Put(_ context.Context, req *connect.Request[concordv1.PutRequest]) (*connect.Response[concordv1.PutResponse], error) {
	k.mu.Lock()
	k.at = append(k.at, time.Now())
	k.ids[req.Msg.GetMeta().GetRequestId()] = true
	k.mu.Unlock()
	e := connect.NewError(connect.CodeUnavailable, nil)
	d, _ := connect.NewErrorDetail(&concordv1.ErrorInfo{Reason: k.reason})
	e.AddDetail(d)
	return nil, e
}

func (k *failingKV) span() (time.Duration, int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.at[len(k.at)-1].Sub(k.at[0]), len(k.ids)
}

// statusRevision is the revision leaderStatus's answers are at.
const statusRevision = 3

// leaderStatus names its own server as the leader.
type leaderStatus struct {
	concordv1connect.UnimplementedClusterHandler
	addr string
}

func (s *leaderStatus) Status(context.Context, *connect.Request[concordv1.StatusRequest]) (*connect.Response[concordv1.StatusResponse], error) {
	m := &concordv1.Member{Id: "m1", Name: "m1", ClientAddr: s.addr, Role: "leader"}
	return connect.NewResponse(&concordv1.StatusResponse{Header: &concordv1.ResponseHeader{Revision: statusRevision},
		Leader: "m1", LeaderId: "m1", Members: []*concordv1.Member{m}, Self: m}), nil
}

func failingMember(t *testing.T, reason string) (*failingKV, *Client) {
	t.Helper()
	kv := &failingKV{reason: reason, ids: map[uint64]bool{}}
	return kv, fakeMember(t, kv, Config{AttemptTimeout: 500 * time.Millisecond})
}

// fakeMember serves kv beside a Status that names the server the leader,
// and returns a client of it (batching off: every KV call is its own RPC).
func fakeMember(t *testing.T, kv concordv1connect.KVHandler, cfg Config) *Client {
	t.Helper()
	cfg.DisableBatching = true
	c, _ := fakeServer(t, cfg, func(mux *http.ServeMux) { mux.Handle(concordv1connect.NewKVHandler(kv, vtcodec.Option())) })
	return c
}

// fakeServer serves what register adds beside a Status that names the
// server the leader, and returns a client of it and the server.
func fakeServer(t *testing.T, cfg Config, register func(*http.ServeMux)) (*Client, *httptest.Server) {
	t.Helper()
	st := &leaderStatus{}
	mux := http.NewServeMux()
	register(mux)
	mux.Handle(concordv1connect.NewClusterHandler(st, vtcodec.Option()))
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	st.addr = strings.TrimPrefix(srv.URL, "http://")
	cfg.Endpoints = []string{st.addr}
	c, err := New(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c, srv
}

// The server recognises a retried write for 30 s (docs/kv.md); the SDK
// resent a write until the caller's deadline, 34.8 s after its first
// attempt when the deadline was 35 s away, where a retry may apply it a
// second time. It now stops within dedupeRetryWindow of the first attempt
// whose outcome it does not know (shortened here), and says the outcome is
// unknown.
func TestWriteRetriesStopWithinTheDedupeGuarantee(t *testing.T) {
	defer func(w time.Duration) { dedupeRetryWindow = w }(dedupeRetryWindow)
	dedupeRetryWindow = 2 * time.Second
	kv, c := failingMember(t, "UNKNOWN_OUTCOME")
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	_, err := c.Put(ctx, "k", []byte("v"))
	require.ErrorIs(t, err, ErrUnknownOutcome)
	require.NoError(t, ctx.Err(), "the call ran to the caller's deadline")
	span, ids := kv.span()
	require.Equal(t, 1, ids, "every attempt carries the same request ID")
	require.LessOrEqual(t, span, dedupeRetryWindow-c.cfg.AttemptTimeout,
		"the SDK resent a write %s after its first attempt", span)
}

// Failures that say nothing was done do not start that clock: such a call
// retries until the caller's deadline.
func TestRetriesOfRefusedWritesRunToTheDeadline(t *testing.T) {
	defer func(w time.Duration) { dedupeRetryWindow = w }(dedupeRetryWindow)
	dedupeRetryWindow = time.Second
	kv, c := failingMember(t, "NO_LEADER")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := c.Put(ctx, "k", []byte("v"))
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrUnknownOutcome)
	span, _ := kv.span()
	require.Greater(t, span, 2*time.Second, "a write refused by every attempt stopped before the caller's deadline")
}

// refusing answers a Put with reason, with the gRPC code the server gives
// it.
func refusing(reason string) error {
	code := connect.CodeUnavailable
	if reason == "QUOTA_EXCEEDED" {
		code = connect.CodeResourceExhausted
	}
	e := connect.NewError(code, nil)
	d, _ := connect.NewErrorDetail(&concordv1.ErrorInfo{Reason: reason})
	e.AddDetail(d)
	return e
}

// A member refuses a write over a quota from its own state, before the
// log: the refusal of a retry says nothing of an earlier attempt whose
// outcome is unknown, which may still be applied. The SDK returned the
// refusal alone, and AcquireLocks took its acquire for one that took
// nothing.
func TestAQuotaRefusalOfARetryLeavesTheOutcomeUnknown(t *testing.T) {
	kv := &scriptedKV{put: func(n int, _ *concordv1.PutRequest) (*concordv1.PutResponse, error) {
		if n == 1 {
			return nil, refusing("UNKNOWN_OUTCOME")
		}
		return nil, refusing("QUOTA_EXCEEDED")
	}}
	c := fakeMember(t, kv, Config{AttemptTimeout: 500 * time.Millisecond})
	_, err := c.Put(context.Background(), "k", []byte("v"))
	require.ErrorIs(t, err, ErrUnknownOutcome)
	require.ErrorIs(t, err, ErrQuotaExceeded)

	kv = &scriptedKV{put: func(int, *concordv1.PutRequest) (*concordv1.PutResponse, error) {
		return nil, refusing("QUOTA_EXCEEDED")
	}}
	c = fakeMember(t, kv, Config{AttemptTimeout: 500 * time.Millisecond})
	_, err = c.Put(context.Background(), "k", []byte("v"))
	require.ErrorIs(t, err, ErrQuotaExceeded)
	require.NotErrorIs(t, err, ErrUnknownOutcome, "a first attempt refused took nothing")
}
