package kv

import (
	"fmt"
	"math"
	"strconv"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/session"
)

// SessionChecker tells whether a session exists; keys can be bound only to
// live sessions.
type SessionChecker interface {
	Exists(id int64) bool
}

// LockChecker answers lock-token compares in transactions.
type LockChecker interface {
	// HeldWithToken reports whether the lock called name is held under the
	// fencing token.
	HeldWithToken(name []byte, token int64) bool
}

// ReadLimits bound what one read returns.
type ReadLimits struct {
	// MaxKeys caps the keys of one response (and a limit of 0).
	MaxKeys int
	// MaxBytes caps the key and value bytes of one response; at least one
	// key is always returned.
	MaxBytes int
}

// Store is the key-value state.
type Store struct {
	tree      *index
	bytes     int64
	bySession map[int64]map[string]struct{}
	sessions  SessionChecker
	locks     LockChecker
}

// NewStore returns an empty store. sessions answers whether a session
// exists for session-bound writes.
func NewStore(sessions SessionChecker) *Store {
	return &Store{
		tree:      newIndex(),
		bySession: map[int64]map[string]struct{}{},
		sessions:  sessions,
	}
}

// SetLockChecker wires the lock module in for lock-token compares.
func (s *Store) SetLockChecker(l LockChecker) { s.locks = l }

// Len returns the number of keys.
func (s *Store) Len() int { return s.tree.Len() }

// Bytes returns the accounted size of all items.
func (s *Store) Bytes() int64 { return s.bytes }

// SessionKeys returns the number of keys bound to a session.
func (s *Store) SessionKeys(id int64) int { return len(s.bySession[id]) }

// Get returns the item stored at key.
func (s *Store) Get(key []byte) (*Item, bool) {
	return s.tree.Get(key)
}

// Range reads the keys a request names from the current state.
func (s *Store) Range(req *concordv1.RangeRequest, lim ReadLimits) (*concordv1.RangeResponse, error) {
	return rangeTree(s.tree, req, lim)
}

func rangeTree(tree *index, req *concordv1.RangeRequest, lim ReadLimits) (*concordv1.RangeResponse, error) {
	sp, err := SpanOf(req.GetKey(), req.GetRangeEnd(), req.GetPrefix())
	if err != nil {
		return nil, err
	}
	resp := &concordv1.RangeResponse{}
	if sp.Single {
		if it, ok := tree.Get(sp.Start); ok {
			resp.Count = 1
			if !req.GetCountOnly() {
				resp.Kvs = append(resp.Kvs, it.Proto(req.GetKeysOnly()))
			}
		}
		return resp, nil
	}
	limit := int(req.GetLimit())
	if limit <= 0 || (lim.MaxKeys > 0 && limit > lim.MaxKeys) {
		limit = lim.MaxKeys
	}
	used := 0
	visit := func(it *Item) bool {
		if req.GetCountOnly() {
			resp.Count++
			return true
		}
		if (limit > 0 && len(resp.Kvs) >= limit) || (lim.MaxBytes > 0 && used >= lim.MaxBytes && len(resp.Kvs) > 0) {
			resp.More = true
			return false
		}
		kv := it.Proto(req.GetKeysOnly())
		used += len(kv.Key) + len(kv.Value)
		resp.Kvs = append(resp.Kvs, kv)
		return true
	}
	ascend(tree, sp, visit)
	if !req.GetCountOnly() {
		resp.Count = int64(len(resp.Kvs))
	}
	return resp, nil
}

func ascend(tree *index, sp Span, visit func(*Item) bool) {
	if sp.End == nil {
		tree.AscendGreaterOrEqual(sp.Start, visit)
		return
	}
	tree.AscendRange(sp.Start, sp.End, visit)
}

// view applies writes to a tree and records their events. Single writes use
// the store's tree; a transaction uses a lazy clone it can discard.
type view struct {
	s      *Store
	tree   *index
	rev    uint64
	events []Event
}

func (s *Store) direct(rev uint64) *view { return &view{s: s, tree: s.tree, rev: rev} }

// commit folds the recorded events into the byte count and session index.
func (s *Store) commit(events []Event) {
	for _, e := range events {
		if e.Prev != nil {
			s.bytes -= e.Prev.Size()
			s.unbind(e.Prev)
		}
		if e.Type == EventPut {
			s.bytes += e.Item.Size()
			if e.Item.Session != 0 {
				keys := s.bySession[e.Item.Session]
				if keys == nil {
					keys = map[string]struct{}{}
					s.bySession[e.Item.Session] = keys
				}
				keys[string(e.Item.Key)] = struct{}{}
			}
		}
	}
}

func (s *Store) unbind(it *Item) {
	if it.Session == 0 {
		return
	}
	keys := s.bySession[it.Session]
	delete(keys, string(it.Key))
	if len(keys) == 0 {
		delete(s.bySession, it.Session)
	}
}

func (v *view) put(req *concordv1.PutRequest) (*concordv1.PutResponse, error) {
	if len(req.GetKey()) == 0 {
		return nil, ErrEmptyKey
	}
	if sid := req.GetSession(); sid != 0 && !v.s.sessions.Exists(sid) {
		return nil, errs.Wrapf(session.ErrNotFound, "cannot bind key to session %d", sid)
	}
	prev := v.upsert(req.GetKey(), req.GetValue(), req.GetSession())
	resp := &concordv1.PutResponse{}
	if req.GetPrevKv() && prev != nil {
		resp.PrevKv = prev.Proto(false)
	}
	return resp, nil
}

// upsert writes key with one descent of the tree (a put's hottest step:
// every descent costs a few cache misses per level) and returns the item it
// replaced, if any.
func (v *view) upsert(key, value []byte, sess int64) *Item {
	it := &Item{Key: key, Value: value, CreateRev: v.rev, ModRev: v.rev, Version: 1, Session: sess}
	prev, replaced := v.tree.ReplaceOrInsert(it)
	if replaced {
		// it is not yet visible to anyone: applies hold the state
		// machine's write lock, and clones taken for snapshots never see
		// it. Complete it as set would have built it. Its key stays the
		// command's: the index's slot holds those bytes too, and a
		// command decoded by the state machine is its own allocation that
		// nothing else keeps or changes.
		it.CreateRev = prev.CreateRev
		it.Version = prev.Version + 1
	}
	v.events = append(v.events, Event{Rev: v.rev, Type: EventPut, Item: it, Prev: prev})
	return prev
}

func (v *view) set(prev *Item, key, value []byte, sess int64) {
	it := &Item{Key: key, Value: value, CreateRev: v.rev, ModRev: v.rev, Version: 1, Session: sess}
	if prev != nil {
		it.CreateRev = prev.CreateRev
		it.Version = prev.Version + 1
		// Never alias the key bytes of a request with a stored item that
		// outlives it: keep the stored key.
		it.Key = prev.Key
	}
	v.tree.ReplaceOrInsert(it)
	v.events = append(v.events, Event{Rev: v.rev, Type: EventPut, Item: it, Prev: prev})
}

func (v *view) deleteRange(req *concordv1.DeleteRangeRequest) (*concordv1.DeleteRangeResponse, error) {
	sp, err := SpanOf(req.GetKey(), req.GetRangeEnd(), req.GetPrefix())
	if err != nil {
		return nil, err
	}
	var victims []*Item
	if sp.Single {
		if it, ok := v.tree.Get(sp.Start); ok {
			victims = append(victims, it)
		}
	} else {
		ascend(v.tree, sp, func(it *Item) bool { victims = append(victims, it); return true })
	}
	resp := &concordv1.DeleteRangeResponse{Deleted: int64(len(victims))}
	for _, it := range victims {
		v.remove(it)
		if req.GetPrevKv() {
			resp.PrevKvs = append(resp.PrevKvs, it.Proto(false))
		}
	}
	return resp, nil
}

func (v *view) remove(it *Item) {
	v.tree.Delete(it.Key)
	v.events = append(v.events, Event{Rev: v.rev, Type: EventDelete, Item: it, Prev: it})
}

func (v *view) add(req *concordv1.AddRequest) (*concordv1.AddResponse, error) {
	if len(req.GetKey()) == 0 {
		return nil, ErrEmptyKey
	}
	prev, ok := v.tree.Get(req.GetKey())
	var cur int64
	sess := req.GetSession()
	if ok {
		n, err := strconv.ParseInt(string(prev.Value), 10, 64)
		if err != nil {
			return nil, errs.Wrapf(ErrNotCounter, "key %q holds %d bytes that are not a decimal int64", req.GetKey(), len(prev.Value))
		}
		cur = n
		sess = prev.Session
	} else if sess != 0 && !v.s.sessions.Exists(sess) {
		return nil, errs.Wrapf(session.ErrNotFound, "cannot bind key to session %d", sess)
	}
	d := req.GetDelta()
	if (d > 0 && cur > math.MaxInt64-d) || (d < 0 && cur < math.MinInt64-d) {
		return nil, errs.Wrapf(ErrOutOfRange, "%d%+d overflows int64", cur, d)
	}
	next := cur + d
	if req.Min != nil && next < req.GetMin() {
		return nil, errs.Wrapf(ErrOutOfRange, "%d%+d = %d is below the minimum %d", cur, d, next, req.GetMin())
	}
	if req.Max != nil && next > req.GetMax() {
		return nil, errs.Wrapf(ErrOutOfRange, "%d%+d = %d is above the maximum %d", cur, d, next, req.GetMax())
	}
	v.set(prev, req.GetKey(), []byte(strconv.FormatInt(next, 10)), sess)
	return &concordv1.AddResponse{Value: next}, nil
}

// Put writes one key at revision rev.
func (s *Store) Put(rev uint64, req *concordv1.PutRequest) (*concordv1.PutResponse, []Event, error) {
	v := s.direct(rev)
	resp, err := v.put(req)
	if err != nil {
		return nil, nil, err
	}
	s.commit(v.events)
	return resp, v.events, nil
}

// DeleteRange deletes the keys a request names at revision rev.
func (s *Store) DeleteRange(rev uint64, req *concordv1.DeleteRangeRequest) (*concordv1.DeleteRangeResponse, []Event, error) {
	v := s.direct(rev)
	resp, err := v.deleteRange(req)
	if err != nil {
		return nil, nil, err
	}
	s.commit(v.events)
	return resp, v.events, nil
}

// Add applies a bounded counter add at revision rev. Nothing changes on
// error.
func (s *Store) Add(rev uint64, req *concordv1.AddRequest) (*concordv1.AddResponse, []Event, error) {
	v := s.direct(rev)
	resp, err := v.add(req)
	if err != nil {
		return nil, nil, err
	}
	s.commit(v.events)
	return resp, v.events, nil
}

// DeleteSession deletes every key bound to session id, in key order, and
// returns how many it deleted.
func (s *Store) DeleteSession(rev uint64, id int64) (int64, []Event) {
	keys := s.bySession[id]
	if len(keys) == 0 {
		return 0, nil
	}
	items := make([]*Item, 0, len(keys))
	for k := range keys {
		if it, ok := s.tree.Get([]byte(k)); ok {
			items = append(items, it)
		}
	}
	sortItems(items)
	v := s.direct(rev)
	for _, it := range items {
		v.remove(it)
	}
	s.commit(v.events)
	return int64(len(items)), v.events
}

// Txn evaluates the compares against the current state, then applies the
// chosen branch on a clone of the tree. If an operation fails, the clone is
// discarded and the error returned: nothing changes.
func (s *Store) Txn(rev uint64, req *concordv1.TxnRequest, lim ReadLimits) (*concordv1.TxnResponse, []Event, error) {
	ok := true
	for i, c := range req.GetCompare() {
		held, err := s.compare(c)
		if err != nil {
			return nil, nil, fmt.Errorf("compare %d: %w", i, err)
		}
		if !held {
			ok = false
			break
		}
	}
	ops := req.GetSuccess()
	if !ok {
		ops = req.GetFailure()
	}
	resp := &concordv1.TxnResponse{Succeeded: ok, Responses: make([]*concordv1.ResponseOp, 0, len(ops))}
	v := &view{s: s, tree: s.tree.Clone(), rev: rev}
	for i, op := range ops {
		r, err := v.op(op, lim)
		if err != nil {
			return nil, nil, fmt.Errorf("operation %d: %w", i, err)
		}
		resp.Responses = append(resp.Responses, r)
	}
	s.tree = v.tree
	s.commit(v.events)
	return resp, v.events, nil
}

func (v *view) op(op *concordv1.RequestOp, lim ReadLimits) (*concordv1.ResponseOp, error) {
	switch r := op.GetRequest().(type) {
	case *concordv1.RequestOp_Range:
		resp, err := rangeTree(v.tree, r.Range, lim)
		if err != nil {
			return nil, err
		}
		return &concordv1.ResponseOp{Response: &concordv1.ResponseOp_Range{Range: resp}}, nil
	case *concordv1.RequestOp_Put:
		resp, err := v.put(r.Put)
		if err != nil {
			return nil, err
		}
		return &concordv1.ResponseOp{Response: &concordv1.ResponseOp_Put{Put: resp}}, nil
	case *concordv1.RequestOp_DeleteRange:
		resp, err := v.deleteRange(r.DeleteRange)
		if err != nil {
			return nil, err
		}
		return &concordv1.ResponseOp{Response: &concordv1.ResponseOp_DeleteRange{DeleteRange: resp}}, nil
	case *concordv1.RequestOp_Add:
		resp, err := v.add(r.Add)
		if err != nil {
			return nil, err
		}
		return &concordv1.ResponseOp{Response: &concordv1.ResponseOp_Add{Add: resp}}, nil
	default:
		return nil, ErrEmptyOp
	}
}

func (s *Store) compare(c *concordv1.Compare) (bool, error) {
	if c.GetResult() == concordv1.Compare_RESULT_UNSPECIFIED {
		return false, errs.Wrapf(ErrInvalidCompare, "no result operator")
	}
	if len(c.GetKey()) == 0 {
		return false, ErrEmptyKey
	}
	if c.GetTarget() == concordv1.Compare_TARGET_LOCK_TOKEN {
		if s.locks == nil {
			return false, ErrLockUnsupported
		}
		held := s.locks.HeldWithToken(c.GetKey(), c.GetNumber())
		switch c.GetResult() {
		case concordv1.Compare_RESULT_EQUAL:
			return held, nil
		case concordv1.Compare_RESULT_NOT_EQUAL:
			return !held, nil
		default:
			return false, errs.Wrapf(ErrInvalidCompare, "lock token compares take EQUAL or NOT_EQUAL")
		}
	}
	it, found := s.Get(c.GetKey())
	var cmp int
	switch c.GetTarget() {
	case concordv1.Compare_TARGET_VALUE:
		if !found {
			return false, nil
		}
		cmp = compareBytes(it.Value, c.GetValue())
	case concordv1.Compare_TARGET_VERSION:
		cmp = compareInt(versionOf(it, found), c.GetNumber())
	case concordv1.Compare_TARGET_CREATE_REVISION:
		var r int64
		if found {
			r = int64(it.CreateRev)
		}
		cmp = compareInt(r, c.GetNumber())
	case concordv1.Compare_TARGET_MOD_REVISION:
		var r int64
		if found {
			r = int64(it.ModRev)
		}
		cmp = compareInt(r, c.GetNumber())
	default:
		return false, errs.Wrapf(ErrInvalidCompare, "unknown target %d", c.GetTarget())
	}
	switch c.GetResult() {
	case concordv1.Compare_RESULT_EQUAL:
		return cmp == 0, nil
	case concordv1.Compare_RESULT_NOT_EQUAL:
		return cmp != 0, nil
	case concordv1.Compare_RESULT_GREATER:
		return cmp > 0, nil
	case concordv1.Compare_RESULT_LESS:
		return cmp < 0, nil
	default:
		return false, errs.Wrapf(ErrInvalidCompare, "unknown result %d", c.GetResult())
	}
}

func versionOf(it *Item, found bool) int64 {
	if !found {
		return 0
	}
	return it.Version
}
