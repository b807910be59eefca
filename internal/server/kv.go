package server

import (
	"context"
	"time"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/fsm"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
	"github.com/concord-dev/concord/internal/kv"
	"github.com/concord-dev/concord/internal/raftnode"
)

func (s *Server) readLimits() kv.ReadLimits {
	return kv.ReadLimits{MaxKeys: s.cfg.Limits.MaxRangeKeys, MaxBytes: s.cfg.Limits.MaxRangeBytes}
}

// quotaWrite is a key a request may write, with the length of its new
// value, or delete (del).
type quotaWrite struct {
	key   []byte
	value int
	del   bool
}

// checkQuota refuses writes that would take the state past --quota-bytes
// or --max-keys, counted as the state machine accounts items (key, value
// and a fixed overhead). Each branch's writes are played in order over the
// state: a new key adds its item, an overwrite the change of its value's
// length, a delete of one key (not of a range) takes its item back. A
// transaction's branches are alternatives, so the larger one counts. The
// check reads this member's state before proposing: requests racing each
// other may pass it together, so the bounds hold within a few requests,
// not exactly. Deletes, writes that do not grow the state, and retries of
// writes already applied (retryOfApplied) always pass.
func (s *Server) checkQuota(meta *concordv1.WriteMeta, branches ...[]quotaWrite) error {
	if s.retryOfApplied(meta) {
		return nil
	}
	q, m := s.cfg.Limits.QuotaBytes, s.cfg.Limits.MaxKeys
	var err error
	s.fsm.Read(func(st fsm.State) {
		var growth int64
		var newKeys int
		for _, ws := range branches {
			// The value length each written key ends with; -1: deleted.
			final := make(map[string]int, len(ws))
			for _, w := range ws {
				switch {
				case w.del:
					final[string(w.key)] = -1
				default:
					final[string(w.key)] = w.value
				}
			}
			var g int64
			n := 0
			for k, v := range final {
				it, exists := st.KV.Get([]byte(k))
				switch {
				case v < 0 && exists:
					g -= it.Size()
					n--
				case v < 0:
				case exists:
					g += int64(v - len(it.Value))
				default:
					g += kv.SizeOf(len(k), v)
					n++
				}
			}
			growth, newKeys = max(growth, g), max(newKeys, n)
		}
		if q > 0 && growth > 0 && st.KV.Bytes()+growth > q {
			err = errs.Wrapf(ErrQuotaExceeded, "the state holds %d bytes, this write adds up to %d, and the quota is %d (--quota-bytes); delete keys or raise the quota",
				st.KV.Bytes(), growth, q)
			return
		}
		if m > 0 && newKeys > 0 && st.KV.Len()+newKeys > m {
			err = errs.Wrapf(ErrQuotaExceeded, "the state holds %d keys, this write adds up to %d, and the maximum is %d (--max-keys)", st.KV.Len(), newKeys, m)
		}
	})
	return err
}

// Range reads keys at the requested consistency.
func (s *Server) Range(ctx context.Context, req *concordv1.RangeRequest) (*concordv1.RangeResponse, error) {
	if err := s.checkRange(req); err != nil {
		return nil, err
	}
	if err := s.barrier(ctx, req.GetConsistency(), req.GetMinRevision()); err != nil {
		return nil, err
	}
	var (
		resp *concordv1.RangeResponse
		err  error
		rev  uint64
	)
	s.fsm.Read(func(st fsm.State) {
		resp, err = st.KV.Range(req, s.readLimits())
		rev = st.Applied
	})
	if err != nil {
		return nil, err
	}
	resp.Header = s.header(rev)
	return resp, nil
}

// write proposes a client write. The result it returns may be shared with
// the state machine's dedupe table: callers build new responses from it and
// never modify it.
func (s *Server) write(ctx context.Context, meta *concordv1.WriteMeta, cmd *internalv1.Command) (*internalv1.Result, error) {
	cmd.Meta = meta
	return s.propose(ctx, cmd)
}

// Put writes a key.
func (s *Server) Put(ctx context.Context, req *concordv1.PutRequest) (*concordv1.PutResponse, error) {
	p, err := s.preparePut(req)
	return commit(ctx, s, p, err)
}

// StartPut is Put without waiting, as start describes.
func (s *Server) StartPut(ctx context.Context, req *concordv1.PutRequest, done func(*concordv1.PutResponse, error)) bool {
	return start(ctx, s, s.preparePut, req, done)
}

func (s *Server) preparePut(req *concordv1.PutRequest) (prepared[*concordv1.PutResponse], error) {
	var p prepared[*concordv1.PutResponse]
	if err := s.checkPut(req); err != nil {
		return p, err
	}
	if err := s.checkQuota(req.GetMeta(), []quotaWrite{{key: req.GetKey(), value: len(req.GetValue())}}); err != nil {
		return p, err
	}
	meta := req.GetMeta()
	req.Meta = nil
	p.cmd = &internalv1.Command{Meta: meta, Op: &internalv1.Command_Put{Put: req}}
	p.answer = func(res *internalv1.Result) *concordv1.PutResponse {
		r := res.GetPut()
		return &concordv1.PutResponse{Header: s.header(r.GetHeader().GetRevision()), PrevKv: r.GetPrevKv()}
	}
	return p, nil
}

// DeleteRange deletes keys. Deletes are accepted even over quota.
func (s *Server) DeleteRange(ctx context.Context, req *concordv1.DeleteRangeRequest) (*concordv1.DeleteRangeResponse, error) {
	p, err := s.prepareDelete(req)
	return commit(ctx, s, p, err)
}

// StartDeleteRange is DeleteRange without waiting, as start describes.
func (s *Server) StartDeleteRange(ctx context.Context, req *concordv1.DeleteRangeRequest, done func(*concordv1.DeleteRangeResponse, error)) bool {
	return start(ctx, s, s.prepareDelete, req, done)
}

func (s *Server) prepareDelete(req *concordv1.DeleteRangeRequest) (prepared[*concordv1.DeleteRangeResponse], error) {
	var p prepared[*concordv1.DeleteRangeResponse]
	if err := s.checkDelete(req); err != nil {
		return p, err
	}
	meta := req.GetMeta()
	req.Meta = nil
	p.cmd = &internalv1.Command{Meta: meta, Op: &internalv1.Command_DeleteRange{DeleteRange: req}}
	p.answer = func(res *internalv1.Result) *concordv1.DeleteRangeResponse {
		r := res.GetDeleteRange()
		return &concordv1.DeleteRangeResponse{Header: s.header(r.GetHeader().GetRevision()), Deleted: r.GetDeleted(), PrevKvs: r.GetPrevKvs()}
	}
	return p, nil
}

// Add applies a bounded counter add.
func (s *Server) Add(ctx context.Context, req *concordv1.AddRequest) (*concordv1.AddResponse, error) {
	p, err := s.prepareAdd(req)
	return commit(ctx, s, p, err)
}

// StartAdd is Add without waiting, as start describes.
func (s *Server) StartAdd(ctx context.Context, req *concordv1.AddRequest, done func(*concordv1.AddResponse, error)) bool {
	return start(ctx, s, s.prepareAdd, req, done)
}

func (s *Server) prepareAdd(req *concordv1.AddRequest) (prepared[*concordv1.AddResponse], error) {
	var p prepared[*concordv1.AddResponse]
	if err := s.checkAdd(req); err != nil {
		return p, err
	}
	// A counter's value is at most 20 bytes (a decimal int64).
	if err := s.checkQuota(req.GetMeta(), []quotaWrite{{key: req.GetKey(), value: 20}}); err != nil {
		return p, err
	}
	meta := req.GetMeta()
	req.Meta = nil
	p.cmd = &internalv1.Command{Meta: meta, Op: &internalv1.Command_Add{Add: req}}
	p.answer = func(res *internalv1.Result) *concordv1.AddResponse {
		r := res.GetAdd()
		return &concordv1.AddResponse{Header: s.header(r.GetHeader().GetRevision()), Value: r.GetValue()}
	}
	return p, nil
}

// Txn applies a transaction atomically.
func (s *Server) Txn(ctx context.Context, req *concordv1.TxnRequest) (*concordv1.TxnResponse, error) {
	p, err := s.prepareTxn(req)
	return commit(ctx, s, p, err)
}

// StartTxn is Txn without waiting, as start describes.
func (s *Server) StartTxn(ctx context.Context, req *concordv1.TxnRequest, done func(*concordv1.TxnResponse, error)) bool {
	return start(ctx, s, s.prepareTxn, req, done)
}

func (s *Server) prepareTxn(req *concordv1.TxnRequest) (prepared[*concordv1.TxnResponse], error) {
	var p prepared[*concordv1.TxnResponse]
	if err := s.checkTxn(req); err != nil {
		return p, err
	}
	var branches [2][]quotaWrite
	for i, ops := range [][]*concordv1.RequestOp{req.GetSuccess(), req.GetFailure()} {
		for _, op := range ops {
			// An operation's own meta means nothing inside a transaction
			// (the transaction's is the one applied): it is not logged.
			if p := op.GetPut(); p != nil {
				p.Meta = nil
			}
			if d := op.GetDeleteRange(); d != nil {
				d.Meta = nil
			}
			if a := op.GetAdd(); a != nil {
				a.Meta = nil
			}
			switch {
			case op.GetPut() != nil:
				branches[i] = append(branches[i], quotaWrite{key: op.GetPut().GetKey(), value: len(op.GetPut().GetValue())})
			case op.GetAdd() != nil:
				branches[i] = append(branches[i], quotaWrite{key: op.GetAdd().GetKey(), value: 20})
			case op.GetDeleteRange() != nil && len(op.GetDeleteRange().GetRangeEnd()) == 0 && !op.GetDeleteRange().GetPrefix():
				branches[i] = append(branches[i], quotaWrite{key: op.GetDeleteRange().GetKey(), del: true})
			}
		}
	}
	if err := s.checkQuota(req.GetMeta(), branches[0], branches[1]); err != nil {
		return p, err
	}
	meta := req.GetMeta()
	req.Meta = nil
	p.cmd = &internalv1.Command{Meta: meta, Op: &internalv1.Command_Txn{Txn: req}}
	p.answer = func(res *internalv1.Result) *concordv1.TxnResponse {
		r := res.GetTxn()
		return &concordv1.TxnResponse{Header: s.header(r.GetHeader().GetRevision()), Succeeded: r.GetSucceeded(), Responses: r.GetResponses()}
	}
	return p, nil
}

// watchBatch bounds the events of one watch response.
const watchBatch = 1000

// Watch streams the events of a key or range from a revision until ctx ends
// or the revision is compacted. send is called with whole revisions in
// order; with progress notification, an empty response reports the revision
// the watch has reached.
func (s *Server) Watch(ctx context.Context, req *concordv1.WatchRequest, send func(*concordv1.WatchResponse) error) error {
	if s.stopping.Load() {
		return raftnode.ErrStopped
	}
	if len(req.GetKey()) > s.cfg.Limits.MaxKeyBytes || len(req.GetRangeEnd()) > s.cfg.Limits.MaxKeyBytes {
		return errs.Wrapf(kv.ErrKeyTooLarge, "watch bounds are limited to %d bytes", s.cfg.Limits.MaxKeyBytes)
	}
	sp, err := kv.SpanOf(req.GetKey(), req.GetRangeEnd(), req.GetPrefix())
	if err != nil {
		return err
	}
	// Each stream holds a goroutine and its buffers for as long as it is
	// open: without a bound, clients could open them until the member ran
	// out of memory.
	if n := s.watches.Add(1); n > int64(s.cfg.Limits.MaxWatches) {
		s.watches.Add(-1)
		return errs.Wrapf(ErrTooManyWatches, "this member serves %d watch streams, the maximum (--max-watches)", n-1)
	}
	defer s.watches.Add(-1)
	h := s.fsm.History()
	applied := h.Applied()
	next := req.GetStartRevision()
	if next == 0 {
		next = applied + 1
	}
	// A compacted start fails before anything is sent: an opening header
	// would tell the SDK that this member serves the watch.
	if err := h.Available(next); err != nil {
		return revisionErr{err: err, rev: h.Compacted()}
	}
	// The opening header names a revision this member has applied: a
	// watch from the future must not make the client believe it has seen
	// that revision (its session reads would wait for it).
	if err := send(&concordv1.WatchResponse{Header: s.header(min(next-1, applied))}); err != nil {
		return err
	}
	const progressEvery = 2 * time.Second
	lastSent := time.Now()
	for {
		evs, through, wait, err := h.Read(next, sp, watchBatch)
		if err != nil {
			return revisionErr{err: err, rev: h.Compacted()}
		}
		if len(evs) > 0 {
			resp := &concordv1.WatchResponse{Header: s.header(through), Events: make([]*concordv1.Event, len(evs))}
			for i, e := range evs {
				resp.Events[i] = e.Proto(req.GetPrevKv())
			}
			if err := send(resp); err != nil {
				return err
			}
			lastSent = time.Now()
		} else if req.GetProgressNotify() && time.Since(lastSent) >= progressEvery && through >= next {
			if err := send(&concordv1.WatchResponse{Header: s.header(through)}); err != nil {
				return err
			}
			lastSent = time.Now()
		}
		next = max(next, through+1)
		if through < h.Applied() {
			continue
		}
		timer := time.NewTimer(progressEvery)
		select {
		case <-ctx.Done():
			timer.Stop()
			return s.StreamEnd(ctx)
		case <-s.stopCh:
			timer.Stop()
			return raftnode.ErrStopped
		case <-wait:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// revisionErr carries the compacted revision to the error table.
type revisionErr struct {
	err error
	rev uint64
}

func (e revisionErr) Error() string    { return e.err.Error() }
func (e revisionErr) Unwrap() error    { return e.err }
func (e revisionErr) Revision() uint64 { return e.rev }
