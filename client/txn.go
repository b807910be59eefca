package client

import (
	"context"

	"connectrpc.com/connect"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
)

// Cmp is one condition of a transaction.
type Cmp = *concordv1.Compare

// Op is one operation of a transaction.
type Op = *concordv1.RequestOp

func cmpNum(key string, target concordv1.Compare_Target, result concordv1.Compare_Result, n int64) Cmp {
	return &concordv1.Compare{Key: []byte(key), Target: target, Result: result, Number: n}
}

// ValueEquals holds when key exists with value v.
func ValueEquals(key string, v []byte) Cmp {
	return &concordv1.Compare{Key: []byte(key), Target: concordv1.Compare_TARGET_VALUE, Result: concordv1.Compare_RESULT_EQUAL, Value: v}
}

// Absent holds when key does not exist.
func Absent(key string) Cmp {
	return cmpNum(key, concordv1.Compare_TARGET_CREATE_REVISION, concordv1.Compare_RESULT_EQUAL, 0)
}

// Present holds when key exists.
func Present(key string) Cmp {
	return cmpNum(key, concordv1.Compare_TARGET_CREATE_REVISION, concordv1.Compare_RESULT_GREATER, 0)
}

// ModRevisionIs holds when key was last written at rev (0: absent).
func ModRevisionIs(key string, rev uint64) Cmp {
	return cmpNum(key, concordv1.Compare_TARGET_MOD_REVISION, concordv1.Compare_RESULT_EQUAL, int64(rev))
}

// VersionIs holds when key has been written n times since its creation.
func VersionIs(key string, n int64) Cmp {
	return cmpNum(key, concordv1.Compare_TARGET_VERSION, concordv1.Compare_RESULT_EQUAL, n)
}

// LockHeld holds when the lock named name is held under the fencing token.
// Guard writes with it so that a holder that lost its lock cannot write.
func LockHeld(name string, token uint64) Cmp {
	return cmpNum(name, concordv1.Compare_TARGET_LOCK_TOKEN, concordv1.Compare_RESULT_EQUAL, int64(token))
}

// OpPut writes a key in a transaction (WithSession, WithPrevKV apply).
func OpPut(key string, value []byte, opts ...OpOption) Op {
	o := applyOpts(opts)
	return &concordv1.RequestOp{Request: &concordv1.RequestOp_Put{Put: &concordv1.PutRequest{
		Key: []byte(key), Value: value, Session: o.session, PrevKv: o.prevKV}}}
}

// OpDelete deletes a key or range in a transaction.
func OpDelete(key string, opts ...OpOption) Op {
	o := applyOpts(opts)
	return &concordv1.RequestOp{Request: &concordv1.RequestOp_DeleteRange{DeleteRange: &concordv1.DeleteRangeRequest{
		Key: []byte(key), RangeEnd: o.rangeEnd, Prefix: o.prefix, PrevKv: o.prevKV}}}
}

// OpGet reads a key or range in a transaction, after the operations before
// it.
func OpGet(key string, opts ...OpOption) Op {
	o := applyOpts(opts)
	return &concordv1.RequestOp{Request: &concordv1.RequestOp_Range{Range: &concordv1.RangeRequest{
		Key: []byte(key), RangeEnd: o.rangeEnd, Prefix: o.prefix, Limit: o.limit, KeysOnly: o.keysOnly, CountOnly: o.countOnly}}}
}

// OpAdd adds to a counter in a transaction (WithMin, WithMax apply). If it
// would leave its bounds the whole transaction fails with ErrOutOfRange.
func OpAdd(key string, delta int64, opts ...OpOption) Op {
	o := applyOpts(opts)
	return &concordv1.RequestOp{Request: &concordv1.RequestOp_Add{Add: &concordv1.AddRequest{
		Key: []byte(key), Delta: delta, Min: o.min, Max: o.max, Session: o.session}}}
}

// Txn builds a transaction: if every compare holds, the Then operations run,
// otherwise the Else operations; atomically, at one revision.
type Txn struct {
	c   *Client
	req *concordv1.TxnRequest
}

// Txn starts a transaction.
func (c *Client) Txn() *Txn { return &Txn{c: c, req: &concordv1.TxnRequest{}} }

// If adds compares.
func (t *Txn) If(cmps ...Cmp) *Txn { t.req.Compare = append(t.req.Compare, cmps...); return t }

// Then adds operations run when every compare holds.
func (t *Txn) Then(ops ...Op) *Txn { t.req.Success = append(t.req.Success, ops...); return t }

// Else adds operations run when a compare fails.
func (t *Txn) Else(ops ...Op) *Txn { t.req.Failure = append(t.req.Failure, ops...); return t }

// TxnResult is a transaction's outcome.
type TxnResult struct {
	Succeeded bool
	Revision  uint64
	Responses []*concordv1.ResponseOp
}

// Commit applies the transaction. It is retried safely across failures.
func (t *Txn) Commit(ctx context.Context) (*TxnResult, error) {
	t.req.Meta = t.c.meta()
	req := t.req
	r, err := t.c.kvCall(ctx, &concordv1.BatchCall{Request: &concordv1.BatchCall_Txn{Txn: req}},
		func(ctx context.Context, ep *endpoint) (*concordv1.BatchResult, error) {
			resp, err := ep.kv.Txn(ctx, connect.NewRequest(req))
			if err != nil {
				return nil, err
			}
			return &concordv1.BatchResult{Response: &concordv1.BatchResult_Txn{Txn: resp.Msg}}, nil
		})
	if err != nil {
		return nil, err
	}
	resp := r.GetTxn()
	t.c.observe(resp.GetHeader())
	return &TxnResult{Succeeded: resp.GetSucceeded(), Revision: resp.GetHeader().GetRevision(), Responses: resp.GetResponses()}, nil
}
