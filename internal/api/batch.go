package api

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protowire"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/vtcodec"
	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/server"
)

const (
	// maxBatchInflight bounds the calls one batch stream runs at once;
	// beyond it the stream stops reading, which pushes back on the client.
	maxBatchInflight = 4096
	// maxBatchResults bounds the results of one response message.
	maxBatchResults = 512
	// defaultCallTimeout bounds a call that gives no timeout.
	defaultCallTimeout = 30 * time.Second
	// maxCallTimeout bounds timeout_ms: a call (a lock wait above all)
	// holds its stream's resources that long at most.
	maxCallTimeout = 2 * time.Minute
	// maxBatchMessageBytes bounds one batch message; each call in it is
	// held to the request limit.
	maxBatchMessageBytes = 64 << 20
	// maxBatchWaits bounds the lock_wait calls one stream follows at once.
	// They wait for other clients' releases, so they do not take the
	// slots of maxBatchInflight: a stream full of waits would stop
	// reading the releases that end them.
	maxBatchWaits = 4096
	// maxBatchCalls bounds the calls of one batch message (the SDK sends
	// at most 512). It is checked on the wire, before the message is
	// decoded: a call takes some 100 bytes decoded for 2 on the wire, and
	// a message of 64 MiB of empty calls took gigabytes.
	maxBatchCalls = 4096
)

// batchTooLarge refuses a batch message of more than maxBatchCalls calls.
type batchTooLarge struct{ calls int }

func (e batchTooLarge) Error() string {
	return fmt.Sprintf("%v: a batch message of %d calls; the limit is %d", server.ErrRequestTooLarge, e.calls, maxBatchCalls)
}

func (e batchTooLarge) Unwrap() error { return server.ErrRequestTooLarge }

// checkBatchCalls refuses the encoding of a BatchRequest with more than
// maxBatchCalls calls, without decoding it. What does not parse is left to
// the decoder.
func checkBatchCalls(data []byte) error {
	calls := 0
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return nil
		}
		data = data[n:]
		if n = protowire.ConsumeFieldValue(num, typ, data); n < 0 {
			return nil
		}
		data = data[n:]
		if num == 1 {
			calls++
		}
	}
	if calls > maxBatchCalls {
		return batchTooLarge{calls: calls}
	}
	return nil
}

// batchCodec is vtcodec's codec with a BatchRequest's calls counted
// before it is decoded.
type batchCodec struct{ vtcodec.Codec }

func (c batchCodec) Unmarshal(data []byte, m any) error {
	if _, ok := m.(*concordv1.BatchRequest); ok {
		if err := checkBatchCalls(data); err != nil {
			return err
		}
	}
	return c.Codec.Unmarshal(data, m)
}

// errTooManyWaits is returned for a lock_wait beyond maxBatchWaits.
var errTooManyWaits = errs.New("TOO_MANY_WAITS", "api: too many lock waits on one batch stream")

// Batch serves many KV calls (and lock acquires and releases, and NextIDs)
// over one stream. Each call runs on its own, as
// the unary call would; results are sent as they complete, together with
// whatever else completed meanwhile.
func (k *kvService) Batch(ctx context.Context, stream *connect.BidiStream[concordv1.BatchRequest, concordv1.BatchResponse]) error {
	err := k.serveBatch(ctx, receiveUntil(ctx, stream))
	// Connect reports the codec's refusal as a bare decoding error: the
	// client gets its reason.
	var tl batchTooLarge
	if errors.As(err, &tl) {
		return errs.ToConnect(tl)
	}
	if errors.Is(err, vtcodec.ErrTooManyMessages) {
		return errs.ToConnect(errs.Wrapf(server.ErrRequestTooLarge, "a batch message of more than %d nested messages", k.batchCodec.MaxMessages))
	}
	if err == nil && ctx.Err() != nil {
		err = wire(k.s.StreamEnd(ctx))
	}
	return err
}

// connectBatch is a Connect batch stream whose Receive also ends when the
// call's context does. A Connect stream's own Receive waits for the
// client's next message, which an idle client may never send: a graceful
// stop, which ends calls through their context, waited for it until
// --shutdown-timeout and failed.
type connectBatch struct {
	*connect.BidiStream[concordv1.BatchRequest, concordv1.BatchResponse]
	ctx  context.Context
	msgs chan received
}

type received struct {
	req *concordv1.BatchRequest
	err error
}

// receiveUntil reads stream on a goroutine of its own, which ends with the
// stream (a handler that returns closes its request body) or ctx.
func receiveUntil(ctx context.Context, stream *connect.BidiStream[concordv1.BatchRequest, concordv1.BatchResponse]) connectBatch {
	s := connectBatch{BidiStream: stream, ctx: ctx, msgs: make(chan received)}
	go func() {
		for {
			req, err := stream.Receive()
			select {
			case s.msgs <- received{req, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return s
}

func (s connectBatch) Receive() (*concordv1.BatchRequest, error) {
	select {
	case r := <-s.msgs:
		return r.req, r.err
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	}
}

// batchStream is a KV.Batch stream as the handler sees it: a Connect
// stream, or a connection switched to the framed protocol (framed.go).
type batchStream interface {
	Receive() (*concordv1.BatchRequest, error)
	Send(*concordv1.BatchResponse) error
}

// serveBatch serves one KV.Batch stream until the client closes it, it
// fails, or ctx ends.
func (k *kvService) serveBatch(ctx context.Context, stream batchStream) error {
	results := make(chan *concordv1.BatchResult, maxBatchResults)
	sent := make(chan error, 1)
	go func() { sent <- sendResults(stream, results, k.m.batchResults, k.s.IsLeader) }()

	sem := make(chan struct{}, maxBatchInflight)
	waits := make(chan struct{}, maxBatchWaits)
	var wg sync.WaitGroup
	var recvErr error
	for {
		req, err := stream.Receive()
		if err != nil {
			if !isEOF(err) && ctx.Err() == nil {
				recvErr = err
			}
			break
		}
		calls := req.GetCalls()
		k.m.batchCalls.Observe(float64(len(calls)))
		mctx, done := messageContext(ctx, calls)
		started := 0
		for _, call := range calls {
			slots := sem
			if call.GetLockWait() != nil {
				slots = waits
				select {
				case waits <- struct{}{}:
				default:
					started++
					done()
					results <- &concordv1.BatchResult{Id: call.GetId(), Response: &concordv1.BatchResult_Error{Error: batchError(
						errs.Wrapf(errTooManyWaits, "%d lock waits are open on this stream", maxBatchWaits))}}
					continue
				}
			} else {
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
				}
			}
			if ctx.Err() != nil {
				if slots == waits {
					<-waits
				}
				break
			}
			started++
			wg.Add(1)
			release := func() {
				done()
				<-slots
				wg.Done()
			}
			if k.start(mctx, call, results, release) {
				continue
			}
			go func() {
				defer release()
				results <- k.run(mctx, call)
			}()
		}
		for range len(calls) - started {
			done()
		}
	}
	wg.Wait()
	close(results)
	return errors.Join(recvErr, <-sent)
}

// sendResults sends results as they come, several per message, each
// message marked forwarded while this member does not lead. After a send
// fails it keeps draining so that no call blocks.
func sendResults(stream batchStream, results <-chan *concordv1.BatchResult, sizes prometheus.Histogram, leading func() bool) error {
	var failed error
	for r := range results {
		// Results of one read-index round or one Raft batch complete
		// together: let them all arrive before sending.
		runtime.Gosched()
		batch := []*concordv1.BatchResult{r}
	more:
		for len(batch) < maxBatchResults {
			select {
			case r, ok := <-results:
				if !ok {
					break more
				}
				batch = append(batch, r)
			default:
				break more
			}
		}
		if failed == nil {
			sizes.Observe(float64(len(batch)))
			failed = stream.Send(&concordv1.BatchResponse{Results: batch, Forwarded: !leading()})
		}
	}
	return failed
}

// callTimeout is how long the server works on a call: its timeout_ms, at
// most maxCallTimeout.
func callTimeout(call *concordv1.BatchCall) time.Duration {
	if ms := call.GetTimeoutMs(); ms > 0 {
		return time.Duration(min(ms, maxCallTimeout.Milliseconds())) * time.Millisecond
	}
	return defaultCallTimeout
}

// messageContext bounds the calls of one message with one deadline, the
// latest of theirs: calls sent together carry nearly the same timeout, and
// one timer per message instead of one per call is a measurable share of a
// put's CPU. run narrows it for a call whose own deadline is much earlier.
// done is called once per call; the last call cancels the context.
func messageContext(ctx context.Context, calls []*concordv1.BatchCall) (context.Context, func()) {
	var longest time.Duration
	for _, c := range calls {
		longest = max(longest, callTimeout(c))
	}
	mctx, cancel := context.WithTimeout(ctx, longest)
	var left atomic.Int64
	left.Store(int64(len(calls)))
	if len(calls) == 0 {
		cancel()
	}
	return mctx, func() {
		if left.Add(-1) == 0 {
			cancel()
		}
	}
}

// callContext bounds a call started at start by its own timeout: it
// keeps ctx (its message's) unless that allows more than an eighth longer.
func callContext(ctx context.Context, call *concordv1.BatchCall, start time.Time) (context.Context, context.CancelFunc) {
	if !ownDeadline(ctx, call, start) {
		return ctx, func() {}
	}
	return context.WithDeadline(ctx, start.Add(callTimeout(call)))
}

// ownDeadline reports whether a call started at start needs a deadline
// of its own, earlier than ctx's.
func ownDeadline(ctx context.Context, call *concordv1.BatchCall, start time.Time) bool {
	timeout := callTimeout(call)
	d, ok := ctx.Deadline()
	return !ok || d.Sub(start) > timeout+timeout/8
}

// start starts a write without a goroutine of its own when the server can
// take it so (it leads; see server.start): the state machine's goroutine
// then sends its result to results and calls release. It reports whether
// it did; if not, the caller runs the call. On one member, a goroutine per
// call waiting for its apply was a quarter of a call's time in the
// scheduler's queues (docs/architecture.md).
func (k *kvService) start(ctx context.Context, call *concordv1.BatchCall, results chan<- *concordv1.BatchResult, release func()) bool {
	begin := time.Now()
	if ownDeadline(ctx, call, begin) || k.tooLarge(call) != nil {
		return false
	}
	finish := func(method string, err error, set func(*concordv1.BatchResult)) {
		out := &concordv1.BatchResult{Id: call.GetId()}
		if err != nil {
			out.Response = &concordv1.BatchResult_Error{Error: batchError(err)}
		} else {
			set(out)
		}
		k.m.observe(method, begin, err)
		select {
		case results <- out:
			release()
		default: // the sender is behind: do not hold up the state machine
			go func() {
				results <- out
				release()
			}()
		}
	}
	switch r := call.GetRequest().(type) {
	case *concordv1.BatchCall_Put:
		return k.s.StartPut(ctx, r.Put, func(resp *concordv1.PutResponse, err error) {
			finish("Put", err, func(out *concordv1.BatchResult) { out.Response = &concordv1.BatchResult_Put{Put: resp} })
		})
	case *concordv1.BatchCall_DeleteRange:
		return k.s.StartDeleteRange(ctx, r.DeleteRange, func(resp *concordv1.DeleteRangeResponse, err error) {
			finish("DeleteRange", err, func(out *concordv1.BatchResult) {
				out.Response = &concordv1.BatchResult_DeleteRange{DeleteRange: resp}
			})
		})
	case *concordv1.BatchCall_Txn:
		return k.s.StartTxn(ctx, r.Txn, func(resp *concordv1.TxnResponse, err error) {
			finish("Txn", err, func(out *concordv1.BatchResult) { out.Response = &concordv1.BatchResult_Txn{Txn: resp} })
		})
	case *concordv1.BatchCall_Add:
		return k.s.StartAdd(ctx, r.Add, func(resp *concordv1.AddResponse, err error) {
			finish("Add", err, func(out *concordv1.BatchResult) { out.Response = &concordv1.BatchResult_Add{Add: resp} })
		})
	case *concordv1.BatchCall_LockAcquire:
		return k.s.StartAcquireNow(ctx, r.LockAcquire, func(resp *concordv1.AcquireResponse, err error) {
			finish("Acquire", err, func(out *concordv1.BatchResult) {
				out.Response = &concordv1.BatchResult_LockAcquire{LockAcquire: resp}
			})
		})
	case *concordv1.BatchCall_LockRelease:
		return k.s.StartRelease(ctx, r.LockRelease, func(resp *concordv1.ReleaseResponse, err error) {
			finish("Release", err, func(out *concordv1.BatchResult) {
				out.Response = &concordv1.BatchResult_LockRelease{LockRelease: resp}
			})
		})
	}
	return false
}

// tooLarge is the answer to a call over the size limit, nil for others.
// The limit holds for the call's request, as it does for the message of
// the unary call: a request of exactly --max-request-bytes passes on
// either path. (The call's size also counts its id, its timeout and the
// request's tag and length; only a call over the limit by that size is
// measured again.)
func (k *kvService) tooLarge(call *concordv1.BatchCall) *concordv1.BatchResult {
	size := call.SizeVT()
	if k.maxCallBytes <= 0 || size <= k.maxCallBytes {
		return nil
	}
	if size = requestSize(call); size <= k.maxCallBytes {
		return nil
	}
	return &concordv1.BatchResult{Id: call.GetId(), Response: &concordv1.BatchResult_Error{Error: batchError(errs.Wrapf(server.ErrRequestTooLarge,
		"the call's request is %d bytes; the limit is %d (--max-request-bytes)", size, k.maxCallBytes))}}
}

// requestSize is the size of call's request on the wire, as the message
// of its unary call.
func requestSize(call *concordv1.BatchCall) int {
	m := call.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("request"))
	if fd == nil {
		return 0
	}
	return m.Get(fd).Message().Interface().(interface{ SizeVT() int }).SizeVT()
}

// run runs one call of a batch, with the metrics of the unary method.
func (k *kvService) run(ctx context.Context, call *concordv1.BatchCall) *concordv1.BatchResult {
	start := time.Now()
	ctx, cancel := callContext(ctx, call, start)
	defer cancel()
	out := &concordv1.BatchResult{Id: call.GetId()}
	var (
		method string
		err    error
	)
	if tl := k.tooLarge(call); tl != nil {
		return tl
	}
	switch r := call.GetRequest().(type) {
	case *concordv1.BatchCall_Range:
		method = "Range"
		var resp *concordv1.RangeResponse
		if resp, err = k.s.Range(ctx, r.Range); err == nil {
			out.Response = &concordv1.BatchResult_Range{Range: resp}
		}
	case *concordv1.BatchCall_Put:
		method = "Put"
		var resp *concordv1.PutResponse
		if resp, err = k.s.Put(ctx, r.Put); err == nil {
			out.Response = &concordv1.BatchResult_Put{Put: resp}
		}
	case *concordv1.BatchCall_DeleteRange:
		method = "DeleteRange"
		var resp *concordv1.DeleteRangeResponse
		if resp, err = k.s.DeleteRange(ctx, r.DeleteRange); err == nil {
			out.Response = &concordv1.BatchResult_DeleteRange{DeleteRange: resp}
		}
	case *concordv1.BatchCall_Txn:
		method = "Txn"
		var resp *concordv1.TxnResponse
		if resp, err = k.s.Txn(ctx, r.Txn); err == nil {
			out.Response = &concordv1.BatchResult_Txn{Txn: resp}
		}
	case *concordv1.BatchCall_Add:
		method = "Add"
		var resp *concordv1.AddResponse
		if resp, err = k.s.Add(ctx, r.Add); err == nil {
			out.Response = &concordv1.BatchResult_Add{Add: resp}
		}
	case *concordv1.BatchCall_LockAcquire:
		method = "Acquire"
		var resp *concordv1.AcquireResponse
		if resp, err = k.s.AcquireNow(ctx, r.LockAcquire); err == nil {
			out.Response = &concordv1.BatchResult_LockAcquire{LockAcquire: resp}
		}
	case *concordv1.BatchCall_LockRelease:
		method = "Release"
		var resp *concordv1.ReleaseResponse
		if resp, err = k.s.ReleaseLock(ctx, r.LockRelease); err == nil {
			out.Response = &concordv1.BatchResult_LockRelease{LockRelease: resp}
		}
	case *concordv1.BatchCall_LockWait:
		method = "AcquireWait"
		var resp *concordv1.AcquireResponse
		if resp, err = k.s.AwaitWaiter(ctx, r.LockWait); err == nil {
			out.Response = &concordv1.BatchResult_LockWait{LockWait: resp}
		}
	case *concordv1.BatchCall_NextIds:
		method = "NextIDs"
		var resp *concordv1.NextIDsResponse
		if resp, err = k.s.NextIDs(ctx, r.NextIds); err == nil {
			out.Response = &concordv1.BatchResult_NextIds{NextIds: resp}
		}
	default:
		method = "Batch"
		err = errs.Wrapf(errEmptyCall, "call %d has no request", call.GetId())
	}
	if err != nil {
		out.Response = &concordv1.BatchResult_Error{Error: batchError(err)}
	}
	k.m.observe(method, start, err)
	return out
}

// errEmptyCall is returned for a batch call without a request.
var errEmptyCall = errs.New("EMPTY_CALL", "api: batch call without a request")

// batchError converts an error as the unary call would send it.
func batchError(err error) *concordv1.BatchError {
	var ce *connect.Error
	if !errors.As(errs.ToConnect(err), &ce) {
		return &concordv1.BatchError{Code: int32(connect.CodeInternal), Message: err.Error()}
	}
	out := &concordv1.BatchError{Code: int32(ce.Code()), Message: ce.Message()}
	if info, ok := errs.InfoOf(ce); ok {
		out.Info = info
	}
	return out
}
