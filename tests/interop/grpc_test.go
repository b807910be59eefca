package interop_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/testcluster"
)

// The gRPC full method names of the proto, as any gRPC library calls them.
const (
	kvPut            = "/concord.v1.KV/Put"
	kvRange          = "/concord.v1.KV/Range"
	sessionCreate    = "/concord.v1.Session/Create"
	sessionKeepAlive = "/concord.v1.Session/KeepAlive"
	sessionGet       = "/concord.v1.Session/Get"
	lockAcquire      = "/concord.v1.Lock/Acquire"
	lockRelease      = "/concord.v1.Lock/Release"
	lockInspect      = "/concord.v1.Lock/Inspect"
)

// dial opens a plain grpc-go connection (cleartext HTTP/2, prior
// knowledge) to addr: no Connect code, no concord SDK.
func dial(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// reasonOf returns the gRPC code of err and the reason of its
// concord.v1.ErrorInfo detail, as a grpc-go client reads them.
func reasonOf(t *testing.T, err error) (codes.Code, string) {
	t.Helper()
	st, ok := status.FromError(err)
	require.True(t, ok, "not a gRPC status: %v", err)
	for _, d := range st.Details() {
		if info, ok := d.(*concordv1.ErrorInfo); ok {
			return st.Code(), info.GetReason()
		}
		if e, ok := d.(error); ok {
			t.Fatalf("detail of %v does not decode: %v", err, e)
		}
	}
	return st.Code(), ""
}

func createSession(t *testing.T, ctx context.Context, conn *grpc.ClientConn, ttl time.Duration, opts ...grpc.CallOption) int64 {
	t.Helper()
	var resp concordv1.CreateSessionResponse
	require.NoError(t, conn.Invoke(ctx, sessionCreate, &concordv1.CreateSessionRequest{TtlMs: ttl.Milliseconds(), Name: "grpc-go"}, &resp, opts...))
	require.NotZero(t, resp.GetId())
	return resp.GetId()
}

// acquire opens a Lock.Acquire stream (server streaming).
func acquire(t *testing.T, ctx context.Context, conn *grpc.ClientConn, req *concordv1.AcquireRequest, opts ...grpc.CallOption) grpc.ClientStream {
	t.Helper()
	st, err := conn.NewStream(ctx, &grpc.StreamDesc{StreamName: "Acquire", ServerStreams: true}, lockAcquire, opts...)
	require.NoError(t, err)
	require.NoError(t, st.SendMsg(req))
	require.NoError(t, st.CloseSend())
	return st
}

func recvAcquire(t *testing.T, st grpc.ClientStream) *concordv1.AcquireResponse {
	t.Helper()
	var resp concordv1.AcquireResponse
	require.NoError(t, st.RecvMsg(&resp))
	return &resp
}

func mutex(name string) []*concordv1.LockClaim {
	return []*concordv1.LockClaim{{Name: name, Kind: concordv1.LockKind_LOCK_KIND_MUTEX}}
}

// A grpc-go client puts and ranges, on a follower (which forwards the
// write) and on the leader.
func TestGRPCKVPutRange(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 3})
	leader := c.Leader()
	follower := (leader + 1) % 3
	ctx := ctxT(t, 30*time.Second)
	for _, m := range []int{follower, leader} {
		conn := dial(t, c.Endpoints()[m])
		key := []byte("interop/" + c.Members[m].Name)
		var put concordv1.PutResponse
		require.NoError(t, conn.Invoke(ctx, kvPut, &concordv1.PutRequest{Key: key, Value: []byte("v1")}, &put))
		require.NotZero(t, put.GetHeader().GetRevision())
		var rng concordv1.RangeResponse
		require.NoError(t, conn.Invoke(ctx, kvRange, &concordv1.RangeRequest{Key: key}, &rng))
		require.Len(t, rng.GetKvs(), 1)
		require.Equal(t, "v1", string(rng.GetKvs()[0].GetValue()))
		require.Equal(t, put.GetHeader().GetRevision(), rng.GetKvs()[0].GetModRevision())
	}
	conn := dial(t, c.Endpoints()[leader])
	var rng concordv1.RangeResponse
	require.NoError(t, conn.Invoke(ctx, kvRange, &concordv1.RangeRequest{Key: []byte("interop/"), Prefix: true}, &rng))
	require.Len(t, rng.GetKvs(), 2)
}

// A session kept alive on the bidirectional KeepAlive stream of a grpc-go
// client outlives several TTLs; once the stream stops, it expires.
func TestGRPCSessionKeepAliveStream(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	conn := dial(t, c.Endpoints()[0])
	ctx := ctxT(t, 60*time.Second)
	// Keep-alives every sixth of the TTL leave 2.5 s for a slow answer
	// on a loaded machine.
	const ttl = 3 * time.Second
	id := createSession(t, ctx, conn, ttl)

	sctx, stop := context.WithCancel(ctx)
	ka, err := conn.NewStream(sctx, &grpc.StreamDesc{StreamName: "KeepAlive", ClientStreams: true, ServerStreams: true}, sessionKeepAlive)
	require.NoError(t, err)
	start := time.Now()
	for time.Since(start) < 3*ttl {
		require.NoError(t, ka.SendMsg(&concordv1.KeepAliveRequest{Id: id}))
		var resp concordv1.KeepAliveResponse
		require.NoError(t, ka.RecvMsg(&resp))
		require.Equal(t, id, resp.GetId())
		require.False(t, resp.GetExpired())
		require.Equal(t, ttl.Milliseconds(), resp.GetTtlMs())
		time.Sleep(ttl / 6)
	}
	var got concordv1.GetSessionResponse
	require.NoError(t, conn.Invoke(ctx, sessionGet, &concordv1.GetSessionRequest{Id: id}, &got), "kept alive for three TTLs")
	stop()

	// Without keep-alives it ends (one TTL, plus the leader's expiry loop).
	deadline := time.Now().Add(10 * ttl)
	for {
		err := conn.Invoke(ctx, sessionGet, &concordv1.GetSessionRequest{Id: id}, &got)
		if err != nil {
			code, reason := reasonOf(t, err)
			require.Equal(t, codes.NotFound, code, "%v", err)
			require.Equal(t, "SESSION_NOT_FOUND", reason)
			break
		}
		require.True(t, time.Now().Before(deadline), "session %d still alive %v after its last keep-alive", id, 10*ttl)
		time.Sleep(100 * time.Millisecond)
	}
}

// Lock.Acquire on a grpc-go stream: the holder is GRANTED at once, a second
// session is QUEUED, and GRANTED is pushed on its stream when the holder
// releases, with a higher fencing token. Inspect shows who holds.
func TestGRPCLockAcquireQueuedThenGranted(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	conn := dial(t, c.Endpoints()[0])
	ctx := ctxT(t, 60*time.Second)
	s1 := createSession(t, ctx, conn, 30*time.Second)
	s2 := createSession(t, ctx, conn, 30*time.Second)

	a := acquire(t, ctx, conn, &concordv1.AcquireRequest{Claims: mutex("m"), Session: s1, Owner: "a", Wait: true})
	first := recvAcquire(t, a)
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, first.GetState())
	require.NotZero(t, first.GetToken())

	b := acquire(t, ctx, conn, &concordv1.AcquireRequest{Claims: mutex("m"), Session: s2, Owner: "b", Wait: true})
	queued := recvAcquire(t, b)
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_QUEUED, queued.GetState())
	require.NotZero(t, queued.GetWaiter())

	var info concordv1.InspectLockResponse
	require.NoError(t, conn.Invoke(ctx, lockInspect, &concordv1.InspectLockRequest{Name: "m"}, &info))
	require.Len(t, info.GetLock().GetHolders(), 1)
	require.Equal(t, "a", info.GetLock().GetHolders()[0].GetOwner())
	require.Equal(t, first.GetToken(), info.GetLock().GetHolders()[0].GetToken())
	require.Len(t, info.GetLock().GetWaiters(), 1)
	require.Equal(t, queued.GetWaiter(), info.GetLock().GetWaiters()[0].GetId())

	var rel concordv1.ReleaseResponse
	require.NoError(t, conn.Invoke(ctx, lockRelease, &concordv1.ReleaseRequest{Names: []string{"m"}, Session: s1, Owner: "a", Token: first.GetToken()}, &rel))
	// A released grant ends the holder's stream without LOST.
	var after concordv1.AcquireResponse
	err := a.RecvMsg(&after)
	require.ErrorIs(t, err, io.EOF, "after release: %v", &after)

	granted := recvAcquire(t, b)
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, granted.GetState())
	require.Greater(t, granted.GetToken(), first.GetToken())

	require.NoError(t, conn.Invoke(ctx, lockInspect, &concordv1.InspectLockRequest{Name: "m"}, &info))
	require.Len(t, info.GetLock().GetHolders(), 1)
	require.Equal(t, "b", info.GetLock().GetHolders()[0].GetOwner())
	require.Empty(t, info.GetLock().GetWaiters())
	require.NoError(t, conn.Invoke(ctx, lockRelease, &concordv1.ReleaseRequest{Names: []string{"m"}, Session: s2, Owner: "b"}, &rel))
	require.ErrorIs(t, b.RecvMsg(&after), io.EOF)
}

// Bad requests reach a grpc-go client with the documented gRPC code and
// the reason in the ErrorInfo detail (grpc-status-details-bin), on unary
// calls and at the end of a stream; nothing is written.
func TestGRPCErrorsCarryCodeAndReason(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	conn := dial(t, c.Endpoints()[0])
	ctx := ctxT(t, 30*time.Second)
	sess := createSession(t, ctx, conn, 30*time.Second)
	for _, tc := range []struct {
		name   string
		method string
		req    proto.Message
		code   codes.Code
		reason string
	}{
		{"empty key", kvPut, &concordv1.PutRequest{Value: []byte("v")}, codes.InvalidArgument, "EMPTY_KEY"},
		{"key too large", kvPut, &concordv1.PutRequest{Key: []byte(strings.Repeat("k", 5000)), Value: []byte("v")}, codes.InvalidArgument, "KEY_TOO_LARGE"},
		{"bad range", kvRange, &concordv1.RangeRequest{Key: []byte("b"), RangeEnd: []byte("a")}, codes.InvalidArgument, "INVALID_RANGE"},
		{"unknown session", kvPut, &concordv1.PutRequest{Key: []byte("k"), Value: []byte("v"), Session: 987654321}, codes.NotFound, "SESSION_NOT_FOUND"},
		{"ttl out of range", sessionCreate, &concordv1.CreateSessionRequest{TtlMs: 1}, codes.InvalidArgument, "SESSION_TTL_OUT_OF_RANGE"},
		{"release not held", lockRelease, &concordv1.ReleaseRequest{Names: []string{"nobody"}, Session: sess, Owner: "x"}, codes.FailedPrecondition, "LOCK_NOT_HELD"},
		{"inspect no name", lockInspect, &concordv1.InspectLockRequest{}, codes.InvalidArgument, "INVALID_LOCK_REQUEST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := conn.Invoke(ctx, tc.method, tc.req, new(concordv1.PutResponse))
			require.Error(t, err)
			code, reason := reasonOf(t, err)
			require.Equal(t, tc.code, code, "%v", err)
			require.Equal(t, tc.reason, reason, "%v", err)
		})
	}
	// On a stream, the error ends it with its code and reason.
	st := acquire(t, ctx, conn, &concordv1.AcquireRequest{Claims: mutex("m"), Session: 987654321, Owner: "o", Wait: true})
	err := st.RecvMsg(new(concordv1.AcquireResponse))
	code, reason := reasonOf(t, err)
	require.Equal(t, codes.NotFound, code, "%v", err)
	require.Equal(t, "SESSION_NOT_FOUND", reason)
	st = acquire(t, ctx, conn, &concordv1.AcquireRequest{Session: sess, Owner: "o", Wait: true})
	err = st.RecvMsg(new(concordv1.AcquireResponse))
	code, reason = reasonOf(t, err)
	require.Equal(t, codes.InvalidArgument, code, "%v", err)
	require.Equal(t, "INVALID_LOCK_REQUEST", reason)

	// Nothing was written.
	var rng concordv1.RangeResponse
	require.NoError(t, conn.Invoke(ctx, kvRange, &concordv1.RangeRequest{Key: []byte("k")}, &rng))
	require.Empty(t, rng.GetKvs())
}

// A member started with --auth-token takes the token as gRPC metadata
// "authorization: Bearer ...", on unary calls and on both kinds of stream,
// and refuses a call without it (or with another) as UNAUTHENTICATED.
func TestGRPCBearerTokenMetadata(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1, Configure: func(_ int, cfg *config.Server) { cfg.AuthToken = "s3cret" }})
	conn := dial(t, c.Endpoints()[0])
	ctx := ctxT(t, 30*time.Second)
	put := &concordv1.PutRequest{Key: []byte("k"), Value: []byte("v")}

	for name, md := range map[string]metadata.MD{
		"none":  nil,
		"wrong": metadata.Pairs("authorization", "Bearer nope"),
		"basic": metadata.Pairs("authorization", "Basic czNjcmV0"),
	} {
		t.Run(name, func(t *testing.T) {
			cctx := metadata.NewOutgoingContext(ctx, md)
			code, reason := reasonOf(t, conn.Invoke(cctx, kvPut, put, new(concordv1.PutResponse)))
			require.Equal(t, codes.Unauthenticated, code)
			require.Equal(t, "UNAUTHENTICATED", reason)
			st := acquire(t, cctx, conn, &concordv1.AcquireRequest{Claims: mutex("m"), Session: 1, Owner: "o"})
			code, reason = reasonOf(t, st.RecvMsg(new(concordv1.AcquireResponse)))
			require.Equal(t, codes.Unauthenticated, code)
			require.Equal(t, "UNAUTHENTICATED", reason)
		})
	}

	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer s3cret")
	require.NoError(t, conn.Invoke(authed, kvPut, put, new(concordv1.PutResponse)))
	// Per-call credentials work as well (grpc.PerRPCCredentials would send
	// the same header).
	sess := createSession(t, authed, conn, 10*time.Second)
	ka, err := conn.NewStream(authed, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, sessionKeepAlive)
	require.NoError(t, err)
	require.NoError(t, ka.SendMsg(&concordv1.KeepAliveRequest{Id: sess}))
	var kar concordv1.KeepAliveResponse
	require.NoError(t, ka.RecvMsg(&kar))
	require.Equal(t, sess, kar.GetId())
	st := acquire(t, authed, conn, &concordv1.AcquireRequest{Claims: mutex("m"), Session: sess, Owner: "o"})
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, recvAcquire(t, st).GetState())
}

// A gRPC message above --max-request-bytes is refused with
// REQUEST_TOO_LARGE, InvalidArgument (docs/kv.md#limits), and the member
// goes on serving; a
// value above --max-value-bytes in a message within the limit is
// VALUE_TOO_LARGE.
func TestGRPCOversizedMessagesAreRefused(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	conn := dial(t, c.Endpoints()[0])
	ctx := ctxT(t, 60*time.Second)
	maxReq := c.Members[0].Cfg.Limits.MaxRequestBytes
	if maxReq == 0 {
		maxReq = 3 << 20
	}

	tooLarge := func(err error) {
		t.Helper()
		code, reason := reasonOf(t, err)
		require.Equal(t, codes.InvalidArgument, code, "%v", err)
		require.Equal(t, "REQUEST_TOO_LARGE", reason, "%v", err)
		require.Contains(t, status.Convert(err).Message(), fmt.Sprintf("the limit is %d (--max-request-bytes)", maxReq))
	}
	tooLarge(conn.Invoke(ctx, kvPut, &concordv1.PutRequest{Key: []byte("big"), Value: make([]byte, maxReq+1)}, new(concordv1.PutResponse)))
	tooLarge(conn.Invoke(ctx, kvPut, &concordv1.PutRequest{Key: []byte("big"), Value: make([]byte, 64<<20)}, new(concordv1.PutResponse)))
	st := acquire(t, ctx, conn, &concordv1.AcquireRequest{Claims: mutex(strings.Repeat("n", maxReq+1)), Session: 1, Owner: "o"})
	tooLarge(st.RecvMsg(new(concordv1.AcquireResponse)))

	err := conn.Invoke(ctx, kvPut, &concordv1.PutRequest{Key: []byte("big"), Value: make([]byte, 2<<20)}, new(concordv1.PutResponse))
	code, reason := reasonOf(t, err)
	require.Equal(t, codes.InvalidArgument, code, "%v", err)
	require.Equal(t, "VALUE_TOO_LARGE", reason)

	// The member still serves, on the same connection, and wrote nothing.
	var rng concordv1.RangeResponse
	require.NoError(t, conn.Invoke(ctx, kvRange, &concordv1.RangeRequest{Key: []byte("big")}, &rng))
	require.Empty(t, rng.GetKvs())
	require.NoError(t, conn.Invoke(ctx, kvPut, &concordv1.PutRequest{Key: []byte("big"), Value: []byte("small")}, new(concordv1.PutResponse)))
}

// A range page may be larger than the 4 MiB most gRPC libraries accept by
// default (pages hold up to 8 MiB, docs/kv.md#limits): with grpc-go's
// defaults the client refuses it, with a larger receive limit, or with a
// smaller page (limit), it reads it. docs/kv.md says so.
func TestGRPCLargeRangeNeedsTheClientsReceiveLimit(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	conn := dial(t, c.Endpoints()[0])
	ctx := ctxT(t, 60*time.Second)
	value := make([]byte, 1<<20-64)
	for i := range 6 {
		require.NoError(t, conn.Invoke(ctx, kvPut, &concordv1.PutRequest{Key: fmt.Appendf(nil, "big/%d", i), Value: value}, new(concordv1.PutResponse)))
	}
	all := &concordv1.RangeRequest{Key: []byte("big/"), Prefix: true}
	var rng concordv1.RangeResponse
	err := conn.Invoke(ctx, kvRange, all, &rng)
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "grpc-go's default receive limit is 4 MiB: %v", err)

	require.NoError(t, conn.Invoke(ctx, kvRange, all, &rng, grpc.MaxCallRecvMsgSize(16<<20)))
	require.Len(t, rng.GetKvs(), 6)
	require.NoError(t, conn.Invoke(ctx, kvRange, &concordv1.RangeRequest{Key: []byte("big/"), Prefix: true, Limit: 3}, &rng))
	require.Len(t, rng.GetKvs(), 3)
	require.True(t, rng.GetMore())
}

// A waiting Lock.Acquire call that the client gives up (its deadline, a
// cancel, a broken connection) leaves its wait queued, so that a client
// whose stream broke re-attaches by calling Acquire again with the same
// session and owner, keeping its place. A client that gives up for good
// cancels the wait with Lock/Cancel (docs/locks.md, "Other languages").
func TestGRPCAbandonedWaitStaysQueuedUntilCancelled(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	conn := dial(t, c.Endpoints()[0])
	ctx := ctxT(t, 60*time.Second)
	s1 := createSession(t, ctx, conn, 30*time.Second)
	s2 := createSession(t, ctx, conn, 30*time.Second)
	held := acquire(t, ctx, conn, &concordv1.AcquireRequest{Claims: mutex("m"), Session: s1, Owner: "a"})
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, recvAcquire(t, held).GetState())

	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st := acquire(t, short, conn, &concordv1.AcquireRequest{Claims: mutex("m"), Session: s2, Owner: "b", Wait: true})
	queued := recvAcquire(t, st)
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_QUEUED, queued.GetState())
	err := st.RecvMsg(new(concordv1.AcquireResponse))
	require.Equal(t, codes.DeadlineExceeded, status.Code(err), "%v", err)

	var info concordv1.InspectLockResponse
	require.NoError(t, conn.Invoke(ctx, lockInspect, &concordv1.InspectLockRequest{Name: "m"}, &info))
	require.Len(t, info.GetLock().GetWaiters(), 1, "the wait outlives its stream")
	require.Equal(t, queued.GetWaiter(), info.GetLock().GetWaiters()[0].GetId())

	// Acquire again: the same wait, in the same place.
	again := acquire(t, ctx, conn, &concordv1.AcquireRequest{Claims: mutex("m"), Session: s2, Owner: "b", Wait: true})
	requeued := recvAcquire(t, again)
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_QUEUED, requeued.GetState())
	require.Equal(t, queued.GetWaiter(), requeued.GetWaiter())

	// Lock/Cancel ends it: the stream following it ends, the queue is empty.
	require.NoError(t, conn.Invoke(ctx, "/concord.v1.Lock/Cancel", &concordv1.CancelWaitRequest{Waiter: queued.GetWaiter(), Session: s2, Owner: "b"}, new(concordv1.CancelWaitResponse)))
	code, reason := reasonOf(t, again.RecvMsg(new(concordv1.AcquireResponse)))
	require.Equal(t, codes.FailedPrecondition, code)
	require.Equal(t, "LOCK_NOT_WAITING", reason)
	require.NoError(t, conn.Invoke(ctx, lockInspect, &concordv1.InspectLockRequest{Name: "m"}, &info))
	require.Empty(t, info.GetLock().GetWaiters())
	require.Equal(t, "a", info.GetLock().GetHolders()[0].GetOwner())
}

// A gRPC client keeps one HTTP/2 connection per member and queues the
// streams the member's SETTINGS_MAX_CONCURRENT_STREAMS does not let it
// open (grpc-go, gRPC C-core and grpc-java do; Go's net/http transport,
// which the SDK uses, dials another connection instead). Streams of
// concord last: a watch, a waiting or held Lock.Acquire, a keep-alive.
// With Go's default of 250 streams per connection, a client watching 250
// prefixes could not acquire a lock on the same connection: its Acquire
// was never sent. A member takes many more.
func TestGRPCOneConnectionCarriesManyLongStreams(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	conn := dial(t, c.Endpoints()[0])
	ctx := ctxT(t, 120*time.Second)
	sess := createSession(t, ctx, conn, 60*time.Second)
	const watches = 300
	// open opens a stream, sends req and reads the first answer, within
	// 15 s: a stream the client holds back never gets there.
	open := func(method string, req proto.Message, resp proto.Message) error {
		got := make(chan error, 1)
		go func() {
			st, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, method)
			if err == nil {
				err = st.SendMsg(req)
			}
			if err == nil {
				err = st.CloseSend()
			}
			if err == nil {
				err = st.RecvMsg(resp)
			}
			got <- err
		}()
		select {
		case err := <-got:
			return err
		case <-time.After(15 * time.Second):
			return errors.New("no answer in 15 s")
		}
	}
	for i := range watches {
		err := open("/concord.v1.KV/Watch", &concordv1.WatchRequest{Key: fmt.Appendf(nil, "w/%d/", i), Prefix: true}, new(concordv1.WatchResponse))
		require.NoError(t, err, "watch %d, with %d streams open on the connection", i, i)
	}
	// And a lock, on the same connection.
	var granted concordv1.AcquireResponse
	err := open(lockAcquire, &concordv1.AcquireRequest{Claims: mutex("m"), Session: sess, Owner: "o", Wait: true}, &granted)
	require.NoError(t, err, "Acquire with %d watches open on the connection", watches)
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, granted.GetState())
}

// Over TLS (--tls-cert), a grpc-go client with TLS credentials negotiates
// HTTP/2 by ALPN, as grpc-go requires, and sends its token over it.
func TestGRPCOverTLS(t *testing.T) {
	certFile, keyFile, pool := testcluster.SelfSigned(t, t.TempDir())
	c := testcluster.Start(t, testcluster.Options{Size: 1, Configure: func(_ int, cfg *config.Server) {
		cfg.TLSCertFile, cfg.TLSKeyFile, cfg.AuthToken = certFile, keyFile, "s3cret"
	}})
	conn := dial(t, c.Endpoints()[0], grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	ctx := metadata.AppendToOutgoingContext(ctxT(t, 30*time.Second), "authorization", "Bearer s3cret")
	require.NoError(t, conn.Invoke(ctx, kvPut, &concordv1.PutRequest{Key: []byte("tls"), Value: []byte("v")}, new(concordv1.PutResponse)))
	sess := createSession(t, ctx, conn, 10*time.Second)
	st := acquire(t, ctx, conn, &concordv1.AcquireRequest{Claims: mutex("m"), Session: sess, Owner: "o"})
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, recvAcquire(t, st).GetState())
}

// rwClaim is a claim of read-write lock name in mode.
func rwClaim(name string, mode concordv1.LockMode) []*concordv1.LockClaim {
	return []*concordv1.LockClaim{{Name: name, Kind: concordv1.LockKind_LOCK_KIND_RWLOCK, Mode: mode}}
}

// A grpc-go client sees what a conversion did: converted names the grant an
// upgrade or a downgrade converted in place (0 for a grant made anew), and
// an acquire sent with conversion whose grant had ended (force-released)
// answers LOST, reason "converted grant ended", and takes nothing; the
// same acquire without conversion is granted anew, converted 0.
func TestGRPCLockConversionSaysWhatItConverted(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	conn := dial(t, c.Endpoints()[0])
	ctx := ctxT(t, 60*time.Second)
	s := createSession(t, ctx, conn, 30*time.Second)
	shared, exclusive := concordv1.LockMode_LOCK_MODE_SHARED, concordv1.LockMode_LOCK_MODE_EXCLUSIVE
	once := func(req *concordv1.AcquireRequest) *concordv1.AcquireResponse {
		t.Helper()
		req.Session, req.Owner = s, "o"
		return recvAcquire(t, acquire(t, ctx, conn, req))
	}

	read := once(&concordv1.AcquireRequest{Claims: rwClaim("rw", shared)})
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, read.GetState())
	require.Zero(t, read.GetConverted(), "granted anew")
	up := once(&concordv1.AcquireRequest{Claims: rwClaim("rw", exclusive), Conversion: true})
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, up.GetState())
	require.Equal(t, read.GetToken(), up.GetConverted(), "an upgrade names the read grant it converted")
	require.Greater(t, up.GetToken(), read.GetToken(), "an upgrade's write grant has a token of its own")
	down := once(&concordv1.AcquireRequest{Claims: rwClaim("rw", shared), Conversion: true})
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, down.GetState())
	require.Equal(t, up.GetToken(), down.GetToken(), "a downgrade keeps the token")
	require.Equal(t, up.GetToken(), down.GetConverted())

	var fr concordv1.ForceReleaseResponse
	require.NoError(t, conn.Invoke(ctx, "/concord.v1.Lock/ForceRelease", &concordv1.ForceReleaseRequest{Name: "rw", Reason: "drill"}, &fr))
	require.EqualValues(t, 1, fr.GetReleased())
	lost := once(&concordv1.AcquireRequest{Claims: rwClaim("rw", exclusive), Conversion: true})
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_LOST, lost.GetState())
	require.Equal(t, "converted grant ended", lost.GetReason())
	var info concordv1.InspectLockResponse
	require.NoError(t, conn.Invoke(ctx, lockInspect, &concordv1.InspectLockRequest{Name: "rw"}, &info))
	require.Empty(t, info.GetLock().GetHolders(), "a conversion of an ended grant took the lock")

	fresh := once(&concordv1.AcquireRequest{Claims: rwClaim("rw", exclusive)})
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, fresh.GetState())
	require.Zero(t, fresh.GetConverted(), "a grant made anew converted nothing")

	// A conversion needs one read-write claim.
	st := acquire(t, ctx, conn, &concordv1.AcquireRequest{Claims: mutex("m"), Session: s, Owner: "o", Conversion: true})
	code, reason := reasonOf(t, st.RecvMsg(new(concordv1.AcquireResponse)))
	require.Equal(t, codes.InvalidArgument, code)
	require.Equal(t, "INVALID_LOCK_REQUEST", reason)
}
