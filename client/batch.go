package client

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"connectrpc.com/connect"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
)

const (
	// maxBatchCalls bounds the calls of one batch message.
	maxBatchCalls = 512
	// maxBatchBytes roughly bounds the bytes of one batch message.
	maxBatchBytes = 4 << 20
	// unaryAbove sends calls carrying more bytes than this as their own
	// RPC: they would crowd a batch, and the transport holds them to the
	// server's request limit with a clear error.
	unaryAbove = 256 << 10
)

// payload approximates the bytes a call carries: its keys and values.
func payload(call *concordv1.BatchCall) int {
	switch r := call.GetRequest().(type) {
	case *concordv1.BatchCall_Put:
		return len(r.Put.GetKey()) + len(r.Put.GetValue())
	case *concordv1.BatchCall_Txn:
		n := 0
		for _, c := range r.Txn.GetCompare() {
			n += len(c.GetKey()) + len(c.GetValue())
		}
		for _, ops := range [][]*concordv1.RequestOp{r.Txn.GetSuccess(), r.Txn.GetFailure()} {
			for _, op := range ops {
				if p := op.GetPut(); p != nil {
					n += len(p.GetKey()) + len(p.GetValue())
				} else {
					n += 64
				}
			}
		}
		return n
	default:
		return 64
	}
}

// batcher coalesces a client's concurrent KV calls to one member into
// messages on one KV.Batch stream. Nothing waits on a timer: the calls that
// queued while the previous message was being sent go out together, so
// batches grow with concurrency and a lone call goes out at once.
type batcher struct {
	c  *Client
	ep *endpoint

	mu      sync.Mutex
	queue   []*concordv1.BatchCall
	sizes   []int
	waiting map[uint64]chan *concordv1.BatchResult
	nextID  uint64
	gen     uint64
	live    bool
	wake    chan struct{}
}

func newBatcher(c *Client, ep *endpoint) *batcher {
	return &batcher{c: c, ep: ep, waiting: map[uint64]chan *concordv1.BatchResult{}}
}

// errStreamBroke is how a call learns that its stream failed before its
// result came: the outcome is unknown.
var errStreamBroke = connect.NewError(connect.CodeUnavailable, errors.New("batch stream broke before the result came"))

// errBatchNotSent is how a call learns that its stream could not be opened
// (the member refused the connection, say): it was never sent, so it may
// go to another member whatever its kind, and a write is not an unknown
// outcome.
var errBatchNotSent = connect.NewError(connect.CodeUnavailable, notSent{errors.New("the batch stream could not be opened; the call was not sent")})

// notSentResult is the result a call gets when its stream could not be
// opened (compared by address).
var notSentResult = &concordv1.BatchResult{}

// do sends one call and waits for its result. A failed call comes back as
// the *connect.Error a unary call would have returned. Each attempt gets its
// own BatchCall, so a retry never touches a message a failed stream may
// still be marshaling.
func (b *batcher) do(ctx context.Context, req *concordv1.BatchCall) (*concordv1.BatchResult, error) {
	call := &concordv1.BatchCall{Request: req.GetRequest(), TimeoutMs: req.GetTimeoutMs()}
	if d, ok := ctx.Deadline(); ok {
		left := max(1, time.Until(d).Milliseconds())
		if call.TimeoutMs == 0 || left < call.TimeoutMs {
			call.TimeoutMs = left
		}
	}
	ch := make(chan *concordv1.BatchResult, 1)
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	call.Id = id
	b.waiting[id] = ch
	b.queue = append(b.queue, call)
	b.sizes = append(b.sizes, payload(call))
	if !b.live {
		b.start()
	}
	wake := b.wake
	b.mu.Unlock()
	select {
	case wake <- struct{}{}:
	default:
	}
	select {
	case r := <-ch:
		if r == nil {
			return nil, errStreamBroke
		}
		if r == notSentResult {
			return nil, errBatchNotSent
		}
		if e := r.GetError(); e != nil {
			return nil, batchErr(e)
		}
		if !answers(call, r) {
			return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("the member answered a %T call with a %T result", call.GetRequest(), r.GetResponse()))
		}
		return r, nil
	case <-ctx.Done():
		b.mu.Lock()
		delete(b.waiting, id)
		b.mu.Unlock()
		return nil, ctx.Err()
	}
}

// answers reports whether r is a result of call's kind: one of another
// kind, or none, would read as a success with nothing in it (a Put at
// revision 0, no IDs).
func answers(call *concordv1.BatchCall, r *concordv1.BatchResult) bool {
	switch call.GetRequest().(type) {
	case *concordv1.BatchCall_Range:
		return r.GetRange() != nil
	case *concordv1.BatchCall_Put:
		return r.GetPut() != nil
	case *concordv1.BatchCall_DeleteRange:
		return r.GetDeleteRange() != nil
	case *concordv1.BatchCall_Txn:
		return r.GetTxn() != nil
	case *concordv1.BatchCall_Add:
		return r.GetAdd() != nil
	case *concordv1.BatchCall_LockAcquire:
		return r.GetLockAcquire() != nil
	case *concordv1.BatchCall_LockRelease:
		return r.GetLockRelease() != nil
	case *concordv1.BatchCall_NextIds:
		return r.GetNextIds() != nil
	case *concordv1.BatchCall_LockWait:
		return r.GetLockWait() != nil
	}
	return false
}

// batchErr rebuilds the error a unary call would have returned.
func batchErr(e *concordv1.BatchError) error {
	ce := connect.NewError(connect.Code(e.GetCode()), errors.New(e.GetMessage()))
	if e.GetInfo() != nil {
		if d, err := connect.NewErrorDetail(e.GetInfo()); err == nil {
			ce.AddDetail(d)
		}
	}
	return ce
}

// start starts a stream generation; b.mu is held. Its goroutine opens the
// stream and sends, another receives.
func (b *batcher) start() {
	b.live = true
	b.gen++
	gen := b.gen
	b.wake = make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(b.c.ctx)
	go b.run(ctx, gen, b.wake, cancel)
}

func (b *batcher) run(ctx context.Context, gen uint64, wake <-chan struct{}, cancel context.CancelFunc) {
	stream, err := b.c.openBatch(ctx, b.ep)
	if err != nil {
		b.c.log.Debug("cannot open the batch stream", "endpoint", b.ep.addr, "err", err)
		b.failWith(gen, cancel, notSentResult)
		return
	}
	go b.receive(gen, stream, cancel)
	b.send(ctx, gen, stream, wake, cancel)
	// The generation is over: end its request too (see keepAliver.stream:
	// a cancelled context alone leaves a Connect stream, and the receiver
	// blocked on it, open).
	cancel()
	_ = stream.CloseRequest()
}

// send sends the queued calls of generation gen until it ends: ctx (the
// generation's) ends when the client closes or the receiver fails.
func (b *batcher) send(ctx context.Context, gen uint64, stream batchStream, wake <-chan struct{}, cancel context.CancelFunc) {
	for {
		select {
		case <-wake:
		case <-ctx.Done():
			b.fail(gen, cancel)
			return
		}
		// Let the callers that are already runnable queue their calls
		// first: under load this turns many small messages into a few
		// large ones, and when idle it costs a scheduler round trip.
		runtime.Gosched()
		for {
			b.mu.Lock()
			if b.gen != gen {
				b.mu.Unlock()
				return
			}
			n, bytes := 0, 0
			for n < len(b.queue) && n < maxBatchCalls && (n == 0 || bytes+b.sizes[n] <= maxBatchBytes) {
				bytes += b.sizes[n]
				n++
			}
			calls := b.queue[:n:n]
			b.queue, b.sizes = b.queue[n:], b.sizes[n:]
			b.mu.Unlock()
			if n == 0 {
				break
			}
			if err := stream.Send(&concordv1.BatchRequest{Calls: calls}); err != nil {
				b.fail(gen, cancel)
				return
			}
		}
	}
}

func (b *batcher) receive(gen uint64, stream batchStream, cancel context.CancelFunc) {
	for {
		resp, err := stream.Receive()
		if err != nil {
			b.fail(gen, cancel)
			return
		}
		if resp.GetForwarded() {
			b.c.relearnLeader()
		}
		b.mu.Lock()
		for _, r := range resp.GetResults() {
			if ch, ok := b.waiting[r.GetId()]; ok {
				delete(b.waiting, r.GetId())
				ch <- r
			}
		}
		b.mu.Unlock()
	}
}

// fail ends a stream generation: every call sent or queued on it fails as
// a broken connection (its outcome unknown), and the next call opens a new
// stream.
func (b *batcher) fail(gen uint64, cancel context.CancelFunc) { b.failWith(gen, cancel, nil) }

// failWith ends generation gen, answering every call waiting on it with r:
// nil when the stream broke (the outcome is unknown), notSentResult when
// it never opened.
func (b *batcher) failWith(gen uint64, cancel context.CancelFunc, r *concordv1.BatchResult) {
	cancel()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gen != gen {
		return
	}
	b.live = false
	b.gen++
	for id, ch := range b.waiting {
		ch <- r
		delete(b.waiting, id)
	}
	b.queue, b.sizes = nil, nil
}

// kvCall runs one KV call, batched with others unless batching is off.
func (c *Client) kvCall(ctx context.Context, call *concordv1.BatchCall, unary func(context.Context, *endpoint) (*concordv1.BatchResult, error)) (*concordv1.BatchResult, error) {
	var out *concordv1.BatchResult
	kind := callWrite
	switch call.GetRequest().(type) {
	case *concordv1.BatchCall_Range, *concordv1.BatchCall_NextIds:
		kind = callRead // NextIds carries no request ID: a retry only skips numbers
	}
	err := c.call(ctx, kind, func(ctx context.Context, ep *endpoint) error {
		var r *concordv1.BatchResult
		var err error
		if c.cfg.DisableBatching || payload(call) > unaryAbove {
			r, err = unary(ctx, ep)
		} else {
			r, err = ep.batcher.do(ctx, call)
		}
		if err != nil {
			return err
		}
		out = r
		return nil
	})
	return out, err
}
