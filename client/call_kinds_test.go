package client

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
)

// scriptedKV answers Put, Range and Watch as its funcs say.
type scriptedKV struct {
	concordv1connect.UnimplementedKVHandler
	mu       sync.Mutex
	puts     int
	put      func(n int, req *concordv1.PutRequest) (*concordv1.PutResponse, error)
	ranges   int
	rng      func(n int) (*concordv1.RangeResponse, error)
	watches  []*concordv1.WatchRequest
	watch    func(n int, req *concordv1.WatchRequest, s *connect.ServerStream[concordv1.WatchResponse]) error
	putsSeen []uint64
}

func (k *scriptedKV) Put(ctx context.Context, req *connect.Request[concordv1.PutRequest]) (*connect.Response[concordv1.PutResponse], error) {
	k.mu.Lock()
	k.puts++
	n := k.puts
	k.putsSeen = append(k.putsSeen, req.Msg.GetMeta().GetRequestId())
	k.mu.Unlock()
	resp, err := k.put(n, req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(resp), nil
}

func (k *scriptedKV) Range(ctx context.Context, req *connect.Request[concordv1.RangeRequest]) (*connect.Response[concordv1.RangeResponse], error) {
	k.mu.Lock()
	k.ranges++
	n := k.ranges
	k.mu.Unlock()
	resp, err := k.rng(n)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(resp), nil
}

func (k *scriptedKV) Watch(ctx context.Context, req *connect.Request[concordv1.WatchRequest], s *connect.ServerStream[concordv1.WatchResponse]) error {
	k.mu.Lock()
	k.watches = append(k.watches, req.Msg)
	n := len(k.watches)
	k.mu.Unlock()
	return k.watch(n, req.Msg, s)
}

func reasonErr(code connect.Code, reason string) error {
	e := connect.NewError(code, errors.New(strings.ToLower(reason)))
	d, _ := connect.NewErrorDetail(&concordv1.ErrorInfo{Reason: reason})
	e.AddDetail(d)
	return e
}

// A write whose attempt went unanswered (the member paused: the SDK's
// AttemptTimeout) has an unknown outcome. When the dedupe window ended the
// call, it returned ErrUnavailable, not the ErrUnknownOutcome docs/kv.md
// promises.
func TestWriteWhoseAttemptsWentUnansweredEndsAsUnknownOutcome(t *testing.T) {
	defer func(w time.Duration) { dedupeRetryWindow = w }(dedupeRetryWindow)
	dedupeRetryWindow = 1500 * time.Millisecond
	kv := &scriptedKV{put: func(n int, _ *concordv1.PutRequest) (*concordv1.PutResponse, error) {
		time.Sleep(600 * time.Millisecond) // past AttemptTimeout: unanswered
		return &concordv1.PutResponse{}, nil
	}}
	c := fakeMember(t, kv, Config{AttemptTimeout: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Put(ctx, "k", []byte("v"))
	require.Error(t, err)
	require.NoError(t, ctx.Err(), "the window, not the deadline, ended the call")
	require.ErrorIs(t, err, ErrUnknownOutcome, "a write whose attempts went unanswered ended with %v", err)
}

// A killed member cancels the requests it serves and may answer a write
// with a bare Canceled before its connections drop. The SDK took that for
// the caller's cancellation and returned "context canceled" to a caller
// whose ctx was live, for a write that may have been applied: neither
// retried under its request ID nor ErrUnknownOutcome.
func TestWriteTheMemberCancelledIsRetriedUnderItsRequestID(t *testing.T) {
	kv := &scriptedKV{put: func(n int, _ *concordv1.PutRequest) (*concordv1.PutResponse, error) {
		if n == 1 {
			return nil, connect.NewError(connect.CodeCanceled, context.Canceled)
		}
		return &concordv1.PutResponse{Header: &concordv1.ResponseHeader{Revision: 7}}, nil
	}}
	c := fakeMember(t, kv, Config{AttemptTimeout: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Put(ctx, "k", []byte("v"))
	require.NoError(t, err, "a write the member cancelled ended the call")
	require.Equal(t, uint64(7), res.Revision)
	kv.mu.Lock()
	defer kv.mu.Unlock()
	require.Len(t, kv.putsSeen, 2)
	require.Equal(t, kv.putsSeen[0], kv.putsSeen[1], "the retry must carry the first attempt's request ID")
}

// The first attempt's outcome is unknown (UNKNOWN_OUTCOME); the later ones
// are refused by members without a leader (NO_LEADER). When the window
// ended, the call returned the last error, NO_LEADER: "nothing was applied"
// (docs/errors.md), although the first attempt may have been.
func TestWriteUnknownThenNoLeaderEndsAsUnknownOutcome(t *testing.T) {
	defer func(w time.Duration) { dedupeRetryWindow = w }(dedupeRetryWindow)
	dedupeRetryWindow = 1500 * time.Millisecond
	kv := &scriptedKV{put: func(n int, _ *concordv1.PutRequest) (*concordv1.PutResponse, error) {
		if n == 1 {
			return nil, reasonErr(connect.CodeUnavailable, "UNKNOWN_OUTCOME")
		}
		return nil, reasonErr(connect.CodeUnavailable, "NO_LEADER")
	}}
	c := fakeMember(t, kv, Config{AttemptTimeout: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Put(ctx, "k", []byte("v"))
	require.Error(t, err)
	require.ErrorIs(t, err, ErrUnknownOutcome, "after an attempt of unknown outcome the call ended with %v (reason %s)", err, reasonOf(err))
}

// The server forgets a result once the client has written 65,536 times
// since (counted by request ID: it evicts the lowest). The SDK counted the
// writes from the counter's value when the attempt failed, not from the
// call's own request ID: writes issued while the first attempt was in
// flight were not counted, and the call was resent past the server's
// window.
func TestWriteCountStartsAtTheCallsRequestID(t *testing.T) {
	var c *Client
	kv := &scriptedKV{put: func(n int, _ *concordv1.PutRequest) (*concordv1.PutResponse, error) {
		if n == 1 {
			// While this attempt is in flight the process issues
			// 70,000 other writes (all applied: the server, which keeps
			// at most 65,536 results per client, has dropped this one).
			c.seq.Add(70000)
			return nil, reasonErr(connect.CodeUnavailable, "UNKNOWN_OUTCOME")
		}
		return &concordv1.PutResponse{Header: &concordv1.ResponseHeader{Revision: 9}}, nil
	}}
	c = fakeMember(t, kv, Config{AttemptTimeout: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Put(ctx, "k", []byte("v"))
	// 70,000 newer request IDs than the call's own: the SDK must not resend it.
	kv.mu.Lock()
	puts := kv.puts
	kv.mu.Unlock()
	require.Equal(t, 1, puts, "the write was resent after %d newer request IDs (err %v)", 70000, err)
	require.ErrorIs(t, err, ErrUnknownOutcome)
}

// A read has no dedupe window, yet its retries stopped dedupeRetryWindow
// after its first failure, before the caller's deadline.
func TestReadRetriesRunToTheDeadline(t *testing.T) {
	defer func(w time.Duration) { dedupeRetryWindow = w }(dedupeRetryWindow)
	dedupeRetryWindow = 1 * time.Second
	var first atomic.Int64
	kv := &scriptedKV{rng: func(n int) (*concordv1.RangeResponse, error) {
		if n == 1 {
			first.Store(time.Now().UnixNano())
		}
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("member restarting"))
	}}
	c := fakeMember(t, kv, Config{AttemptTimeout: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := c.Get(ctx, "k")
	require.Error(t, err)
	require.Greater(t, time.Since(time.Unix(0, first.Load())), 2500*time.Millisecond,
		"a read stopped retrying %s before its deadline (%v)", time.Until(func() time.Time { d, _ := ctx.Deadline(); return d }()), err)
}

// A watch from now whose first stream fails before its opening header must
// not skip writes made after Watch was called. A client that had made no
// call yet (LastRevision 0, the usual case for a watch set up right after
// New) resumed "from now" again, on a member that had moved on. New now
// counts the revision of the members' Status answers as seen.
func TestWatchFromNowOfAFreshClientResumesAfterWhatNewSaw(t *testing.T) {
	kv := &scriptedKV{watch: func(n int, req *concordv1.WatchRequest, s *connect.ServerStream[concordv1.WatchResponse]) error {
		if n == 1 {
			// The member fails before its header; meanwhile revision 5
			// is written by another client.
			return connect.NewError(connect.CodeUnavailable, errors.New("connection reset"))
		}
		<-time.After(100 * time.Millisecond)
		return connect.NewError(connect.CodeCanceled, errors.New("done"))
	}}
	c := fakeMember(t, kv, Config{})
	require.EqualValues(t, statusRevision, c.LastRevision(), "New saw the members' revision")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ch := c.Watch(ctx, "k")
	require.Eventually(t, func() bool { kv.mu.Lock(); defer kv.mu.Unlock(); return len(kv.watches) >= 2 }, 2*time.Second, 10*time.Millisecond)
	cancel()
	for range ch {
	}
	kv.mu.Lock()
	defer kv.mu.Unlock()
	require.EqualValues(t, statusRevision+1, kv.watches[1].GetStartRevision(),
		"the watch resumed from now (start_revision 0) after its first stream failed before the header: writes in between are skipped")
}

// A definitive refusal (QUOTA_EXCEEDED: nothing applied) that arrived after
// Close was reported as ErrUnknownOutcome with ErrClosed.
func TestDefinitiveRefusalAfterCloseIsNotUnknownOutcome(t *testing.T) {
	release := make(chan struct{})
	kv := &scriptedKV{put: func(n int, _ *concordv1.PutRequest) (*concordv1.PutResponse, error) {
		<-release
		return nil, reasonErr(connect.CodeResourceExhausted, "QUOTA_EXCEEDED")
	}}
	c := fakeMember(t, kv, Config{AttemptTimeout: 5 * time.Second})
	done := make(chan error, 1)
	go func() {
		_, err := c.Put(context.Background(), "k", []byte("v"))
		done <- err
	}()
	require.Eventually(t, func() bool { kv.mu.Lock(); defer kv.mu.Unlock(); return kv.puts == 1 }, 2*time.Second, 5*time.Millisecond)
	require.NoError(t, c.Close())
	close(release)
	err := <-done
	require.ErrorIs(t, err, ErrQuotaExceeded, "the server's refusal became %v", err)
	require.NotErrorIs(t, err, ErrUnknownOutcome)
}

// A member that could not be connected to got nothing: a membership change
// (sent at most once) goes to another member instead of failing, and a
// write that only met refused connections has no unknown outcome. Both
// used to count a refused connection as "may have been applied": `cluster
// add` failed whenever the SDK's first pick was a stopped member.
func TestARefusedConnectionIsNotAnUnknownOutcome(t *testing.T) {
	dial := connect.NewError(connect.CodeUnavailable, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
	err := fromWire(dial)
	require.ErrorIs(t, err, ErrUnavailable)
	require.True(t, retryable(err, false), "a call that never left may go to another member")
	require.True(t, certainlyNotApplied(err))

	reset := connect.NewError(connect.CodeUnavailable, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET})
	err = fromWire(reset)
	require.ErrorIs(t, err, ErrUnavailable)
	require.False(t, retryable(err, false), "a connection reset after the request was written may have applied it")
	require.False(t, certainlyNotApplied(err))
	require.True(t, retryable(err, true))
}
