package client

import (
	"context"
	"iter"

	"connectrpc.com/connect"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
)

// KeyValue is a stored key with its revisions.
type KeyValue = concordv1.KeyValue

// Consistency selects how a read is served.
type Consistency = concordv1.Consistency

// Consistency levels.
const (
	// Linearizable reads reflect every write acknowledged before the read
	// began. The default.
	Linearizable = concordv1.Consistency_CONSISTENCY_LINEARIZABLE
	// SessionRead reads reflect at least every write this client has seen
	// (read-your-writes), served by any member without a leader round trip.
	SessionRead = concordv1.Consistency_CONSISTENCY_SESSION
	// Stale reads are served from any member's local state.
	Stale = concordv1.Consistency_CONSISTENCY_STALE
)

// OpOption adjusts a KV request.
type OpOption func(*opOptions)

type opOptions struct {
	consistency Consistency
	limit       int64
	keysOnly    bool
	countOnly   bool
	prefix      bool
	rangeEnd    []byte
	session     int64
	prevKV      bool
	min, max    *int64
	startRev    uint64
	progress    bool
}

func applyOpts(opts []OpOption) opOptions {
	o := opOptions{consistency: Linearizable}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// WithConsistency sets a read's consistency.
func WithConsistency(c Consistency) OpOption { return func(o *opOptions) { o.consistency = c } }

// WithLimit caps the keys a range returns.
func WithLimit(n int64) OpOption { return func(o *opOptions) { o.limit = n } }

// WithKeysOnly omits values.
func WithKeysOnly() OpOption { return func(o *opOptions) { o.keysOnly = true } }

// WithCountOnly returns only the number of keys.
func WithCountOnly() OpOption { return func(o *opOptions) { o.countOnly = true } }

// WithPrefix makes the key a prefix (for Range, Delete, Watch).
func WithPrefix() OpOption { return func(o *opOptions) { o.prefix = true } }

// WithRange makes the request cover [key, end).
func WithRange(end string) OpOption { return func(o *opOptions) { o.rangeEnd = []byte(end) } }

// WithSession binds a written key to a session: it is deleted when the
// session ends.
func WithSession(s *Session) OpOption { return func(o *opOptions) { o.session = s.ID() } }

// WithSessionID binds a written key to a session by ID.
func WithSessionID(id int64) OpOption { return func(o *opOptions) { o.session = id } }

// WithPrevKV returns the previous key-value of a write (or with events).
func WithPrevKV() OpOption { return func(o *opOptions) { o.prevKV = true } }

// WithMin bounds a counter from below.
func WithMin(v int64) OpOption { return func(o *opOptions) { o.min = &v } }

// WithMax bounds a counter from above.
func WithMax(v int64) OpOption { return func(o *opOptions) { o.max = &v } }

// WithRevision starts a watch at a revision.
func WithRevision(rev uint64) OpOption { return func(o *opOptions) { o.startRev = rev } }

// WithProgressNotify asks a watch for periodic progress responses. The
// first response of such a watch is a progress report, sent once the member
// has fixed where the watch starts: every write made after it is received
// is delivered (a watch without WithRevision starts "now", which Watch's
// return does not yet fix).
func WithProgressNotify() OpOption { return func(o *opOptions) { o.progress = true } }

func (c *Client) rangeRequest(key string, o opOptions) *concordv1.RangeRequest {
	req := &concordv1.RangeRequest{
		Key: []byte(key), RangeEnd: o.rangeEnd, Prefix: o.prefix, Limit: o.limit,
		KeysOnly: o.keysOnly, CountOnly: o.countOnly, Consistency: o.consistency,
	}
	if o.consistency == SessionRead {
		req.MinRevision = c.maxRev.Load()
	}
	return req
}

// RangeResult is one page of a range read.
type RangeResult struct {
	KVs []*KeyValue
	// More is true when keys remain after the last one returned.
	More bool
	// Count is len(KVs); with WithCountOnly, the number of keys in the
	// whole range (KVs is then empty).
	Count int64
	// Revision is the state's revision when read.
	Revision uint64
}

// Get reads one key; ErrNotFound if it does not exist.
func (c *Client) Get(ctx context.Context, key string, opts ...OpOption) (*KeyValue, error) {
	o := applyOpts(opts)
	o.prefix, o.rangeEnd = false, nil
	res, err := c.Range(ctx, key, func(x *opOptions) { *x = o })
	if err != nil {
		return nil, err
	}
	if len(res.KVs) == 0 {
		return nil, &Error{Reason: "KEY_NOT_FOUND", Message: "key " + quote(key) + " not found", Code: connect.CodeNotFound, sentinel: ErrNotFound}
	}
	return res.KVs[0], nil
}

// Range reads one page of keys: the key, or with WithPrefix or WithRange a
// range of keys in order.
func (c *Client) Range(ctx context.Context, key string, opts ...OpOption) (*RangeResult, error) {
	o := applyOpts(opts)
	req := c.rangeRequest(key, o)
	r, err := c.kvCall(ctx, &concordv1.BatchCall{Request: &concordv1.BatchCall_Range{Range: req}},
		func(ctx context.Context, ep *endpoint) (*concordv1.BatchResult, error) {
			resp, err := ep.kv.Range(ctx, connect.NewRequest(req))
			if err != nil {
				return nil, err
			}
			return &concordv1.BatchResult{Response: &concordv1.BatchResult_Range{Range: resp.Msg}}, nil
		})
	if err != nil {
		return nil, err
	}
	resp := r.GetRange()
	c.observe(resp.GetHeader())
	return &RangeResult{KVs: resp.GetKvs(), More: resp.GetMore(), Count: resp.GetCount(), Revision: resp.GetHeader().GetRevision()}, nil
}

// List iterates over every key with the given prefix, page by page, in key
// order. Each page is read at the requested consistency; pages may reflect
// different revisions.
func (c *Client) List(ctx context.Context, prefix string, opts ...OpOption) iter.Seq2[*KeyValue, error] {
	return func(yield func(*KeyValue, error) bool) {
		o := applyOpts(opts)
		end := prefixEnd([]byte(prefix))
		start := prefix
		for {
			po := o
			po.prefix = false
			po.rangeEnd = end
			if end == nil {
				po.rangeEnd = []byte{0}
			}
			res, err := c.Range(ctx, start, func(x *opOptions) { *x = po })
			if err != nil {
				yield(nil, err)
				return
			}
			for _, kv := range res.KVs {
				if !yield(kv, nil) {
					return
				}
			}
			if !res.More || len(res.KVs) == 0 {
				return
			}
			start = string(res.KVs[len(res.KVs)-1].GetKey()) + "\x00"
		}
	}
}

// PutResult is the outcome of a put.
type PutResult struct {
	Revision uint64
	PrevKV   *KeyValue
}

// Put writes a key. It is retried safely across failures.
func (c *Client) Put(ctx context.Context, key string, value []byte, opts ...OpOption) (*PutResult, error) {
	o := applyOpts(opts)
	req := &concordv1.PutRequest{Key: []byte(key), Value: value, Session: o.session, PrevKv: o.prevKV, Meta: c.meta()}
	r, err := c.kvCall(ctx, &concordv1.BatchCall{Request: &concordv1.BatchCall_Put{Put: req}},
		func(ctx context.Context, ep *endpoint) (*concordv1.BatchResult, error) {
			resp, err := ep.kv.Put(ctx, connect.NewRequest(req))
			if err != nil {
				return nil, err
			}
			return &concordv1.BatchResult{Response: &concordv1.BatchResult_Put{Put: resp.Msg}}, nil
		})
	if err != nil {
		return nil, err
	}
	resp := r.GetPut()
	c.observe(resp.GetHeader())
	return &PutResult{Revision: resp.GetHeader().GetRevision(), PrevKV: resp.GetPrevKv()}, nil
}

// DeleteResult is the outcome of a delete.
type DeleteResult struct {
	Revision uint64
	Deleted  int64
	PrevKVs  []*KeyValue
}

// Delete deletes a key, or with WithPrefix or WithRange a range of keys.
func (c *Client) Delete(ctx context.Context, key string, opts ...OpOption) (*DeleteResult, error) {
	o := applyOpts(opts)
	req := &concordv1.DeleteRangeRequest{Key: []byte(key), RangeEnd: o.rangeEnd, Prefix: o.prefix, PrevKv: o.prevKV, Meta: c.meta()}
	r, err := c.kvCall(ctx, &concordv1.BatchCall{Request: &concordv1.BatchCall_DeleteRange{DeleteRange: req}},
		func(ctx context.Context, ep *endpoint) (*concordv1.BatchResult, error) {
			resp, err := ep.kv.DeleteRange(ctx, connect.NewRequest(req))
			if err != nil {
				return nil, err
			}
			return &concordv1.BatchResult{Response: &concordv1.BatchResult_DeleteRange{DeleteRange: resp.Msg}}, nil
		})
	if err != nil {
		return nil, err
	}
	resp := r.GetDeleteRange()
	c.observe(resp.GetHeader())
	return &DeleteResult{Revision: resp.GetHeader().GetRevision(), Deleted: resp.GetDeleted(), PrevKVs: resp.GetPrevKvs()}, nil
}

// Add adds delta to the integer counter at key (a missing key counts as 0)
// and returns the new value. With WithMin or WithMax the add is applied
// only if the result stays within bounds; otherwise ErrOutOfRange and
// nothing changes. This is the inventory-deduction primitive:
//
//	left, err := c.Add(ctx, "stock/sku-1", -1, client.WithMin(0))
func (c *Client) Add(ctx context.Context, key string, delta int64, opts ...OpOption) (int64, error) {
	o := applyOpts(opts)
	req := &concordv1.AddRequest{Key: []byte(key), Delta: delta, Min: o.min, Max: o.max, Session: o.session, Meta: c.meta()}
	r, err := c.kvCall(ctx, &concordv1.BatchCall{Request: &concordv1.BatchCall_Add{Add: req}},
		func(ctx context.Context, ep *endpoint) (*concordv1.BatchResult, error) {
			resp, err := ep.kv.Add(ctx, connect.NewRequest(req))
			if err != nil {
				return nil, err
			}
			return &concordv1.BatchResult{Response: &concordv1.BatchResult_Add{Add: resp.Msg}}, nil
		})
	if err != nil {
		return 0, err
	}
	resp := r.GetAdd()
	c.observe(resp.GetHeader())
	return resp.GetValue(), nil
}

// CompareAndSwap replaces the value of key with next only if it is old;
// otherwise ErrCompareFailed. It returns the write's revision.
func (c *Client) CompareAndSwap(ctx context.Context, key string, old, next []byte) (uint64, error) {
	return c.condPut(ctx, key, next, ValueEquals(key, old))
}

// PutIfAbsent writes key only if it does not exist; otherwise
// ErrCompareFailed.
func (c *Client) PutIfAbsent(ctx context.Context, key string, value []byte, opts ...OpOption) (uint64, error) {
	return c.condPut(ctx, key, value, Absent(key), opts...)
}

// PutIfModRevision writes key only if its last write was at rev (0: absent);
// otherwise ErrCompareFailed.
func (c *Client) PutIfModRevision(ctx context.Context, key string, value []byte, rev uint64, opts ...OpOption) (uint64, error) {
	return c.condPut(ctx, key, value, ModRevisionIs(key, rev), opts...)
}

func (c *Client) condPut(ctx context.Context, key string, value []byte, cmp Cmp, opts ...OpOption) (uint64, error) {
	res, err := c.Txn().If(cmp).Then(OpPut(key, value, opts...)).Commit(ctx)
	if err != nil {
		return 0, err
	}
	if !res.Succeeded {
		return 0, &Error{Reason: "COMPARE_FAILED", Message: "compare failed on " + quote(key), Code: connect.CodeFailedPrecondition, sentinel: ErrCompareFailed}
	}
	return res.Revision, nil
}

func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return "\"" + s + "\""
}
