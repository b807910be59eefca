package server

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/fsm"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
	"github.com/concord-dev/concord/internal/raftnode"
)

// selfMeta gives writes that arrive without a request ID one from this
// member, so that forwarding them can be retried safely.
type selfMeta struct {
	client string
	seq    atomic.Uint64
}

var memberMeta = selfMeta{client: "member-" + newClientID()}

func (m *selfMeta) next() *concordv1.WriteMeta {
	return &concordv1.WriteMeta{ClientId: m.client, RequestId: m.seq.Add(1)}
}

// propose applies cmd through Raft and returns its result: directly on the
// leader, forwarded from other members. It retries while that is safe: a
// command certainly not applied (no leader yet, leader changed) always, one
// whose outcome is unknown because it carries a request ID the state
// machine deduplicates.
func (s *Server) propose(ctx context.Context, cmd *internalv1.Command) (*internalv1.Result, error) {
	return s.proposeAfter(ctx, cmd, false)
}

// proposeAfter is propose; maybe says that an earlier attempt (start's)
// may have been applied: a stop that began meanwhile does not refuse it
// then (SHUTTING_DOWN says nothing was applied), and it is retried as
// propose retries its own.
func (s *Server) proposeAfter(ctx context.Context, cmd *internalv1.Command, maybe bool) (*internalv1.Result, error) {
	if s.stopping.Load() && !maybe {
		return nil, raftnode.ErrStopped
	}
	if err := identify(cmd); err != nil {
		return nil, err
	}
	backoff := 2 * time.Millisecond
	// maybe is set once an attempt may have been applied (here or before):
	// from then on the member may not answer that nothing was.
	for {
		res, err := s.proposeOnce(ctx, cmd)
		if err == nil {
			if rerr := fsm.ResultError(res); rerr != nil {
				return nil, rerr
			}
			return res, nil
		}
		if s.stopping.Load() && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			// The member's shutdown ended the attempt (a stop cancels the
			// requests in flight, forwarded ones included): the caller
			// gets a reason to retry with the same request ID, not a bare
			// cancellation it never asked for.
			return nil, errs.Wrapf(raftnode.ErrUnknownOutcome, "this member stopped while the write was on its way (%v); it may or may not be applied: retry it with the same request ID", err)
		}
		if !retryable(err) {
			return nil, err
		}
		maybe = maybe || errors.Is(err, raftnode.ErrUnknownOutcome)
		s.metrics.retries.Inc()
		select {
		case <-ctx.Done():
			return nil, errs.Wrapf(ErrTimeout, "%v (last error: %v); the write may or may not be applied", ctx.Err(), err)
		case <-s.stopCh:
			if maybe {
				return nil, errs.Wrapf(raftnode.ErrUnknownOutcome, "this member stopped after an attempt that may have been applied (%v): retry it with the same request ID", err)
			}
			return nil, raftnode.ErrStopped
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}

// MaxClientIDBytes bounds a write's client ID: the state machine keeps it
// for deduplication (and force-release records) for minutes.
const MaxClientIDBytes = 128

// identify gives cmd a request ID from this member if it has none, and
// refuses a client ID longer than MaxClientIDBytes, or one without a
// request ID: every write of that client would be taken for a retry of its
// first and answered with its result, unapplied.
func identify(cmd *internalv1.Command) error {
	id := cmd.GetMeta().GetClientId()
	if len(id) > MaxClientIDBytes {
		return errs.Wrapf(ErrInvalidArgument, "client_id is %d bytes; the limit is %d", len(id), MaxClientIDBytes)
	}
	if id == "" {
		cmd.Meta = memberMeta.next()
		return nil
	}
	if cmd.GetMeta().GetRequestId() == 0 {
		return errs.Wrapf(ErrInvalidArgument, "client_id %q needs a request_id (1 and up, new for every write; a retry reuses it)", id)
	}
	return nil
}

// retryOfApplied reports whether meta names a write this member has already
// applied. Its retry is answered from the state machine's record and grows
// nothing, so limits on growth (--quota-bytes, --max-keys, --max-sessions)
// must not refuse it: a refusal would tell the caller that a write that took
// effect did not. A follower that has not applied the write yet checks the
// limits as for a new one.
func (s *Server) retryOfApplied(meta *concordv1.WriteMeta) bool {
	return meta.GetClientId() != "" && meta.GetRequestId() != 0 && s.fsm.Remembered(meta.GetClientId(), meta.GetRequestId())
}

// retryable reports whether a proposal that failed with err may be
// proposed again: it certainly was not applied, or it carries a request ID.
func retryable(err error) bool {
	return errors.Is(err, raftnode.ErrNotLeader) || errors.Is(err, raftnode.ErrNoLeader) ||
		errors.Is(err, raftnode.ErrUnknownOutcome)
}

func (s *Server) proposeOnce(ctx context.Context, cmd *internalv1.Command) (*internalv1.Result, error) {
	if s.node.IsLeader() {
		return s.proposeLocal(ctx, cmd)
	}
	id, addr := s.node.Leader()
	if id == "" {
		return nil, raftnode.ErrNoLeader
	}
	s.metrics.forwarded.WithLabelValues("propose").Inc()
	resp, err := s.peers.For(addr).Propose(ctx, connect.NewRequest(&internalv1.ProposeRequest{Command: cmd}))
	if err != nil {
		return nil, forwardErr(err)
	}
	return resp.Msg.GetResult(), nil
}

// forwardErr classifies an error from a forwarded call. An error the leader
// answered with keeps its reason; a failure of the connection itself means
// the outcome is unknown.
func forwardErr(err error) error {
	if _, ok := errs.InfoOf(err); ok {
		return errs.FromConnect(err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return errs.Wrapf(raftnode.ErrUnknownOutcome, "forwarding to the leader: %v", err)
}

// proposeLocal proposes on this member, which must lead. The leader stamps
// its time into the command.
func (s *Server) proposeLocal(ctx context.Context, cmd *internalv1.Command) (*internalv1.Result, error) {
	data, err := s.encode(cmd)
	if err != nil {
		return nil, err
	}
	_, resp, err := s.node.ProposeWithin(ctx, data, s.deferWithin(cmd))
	if err != nil {
		return nil, err
	}
	return asResult(resp)
}

// deferWithin is how long the leader may hold cmd back to write it with
// the next write (--lock-queue-defer): an acquire that will queue, by the
// leader's state now, is on no one's critical path; it joins the write of
// the release that hands the lock on (or another), instead of taking a
// write of its own on the same disks just before it. 0 for anything else.
func (s *Server) deferWithin(cmd *internalv1.Command) time.Duration {
	a := cmd.GetLockAcquire()
	if a == nil || !a.GetWait() || s.cfg.DisableLockQueueDefer || s.cfg.LockQueueDefer <= 0 {
		return 0
	}
	var queue bool
	s.fsm.Read(func(st fsm.State) { queue = st.Locks.WouldQueue(lockRequest(a)) })
	if !queue {
		return 0
	}
	return s.cfg.LockQueueDefer
}

// encode stamps the leader's time into cmd and encodes it.
func (s *Server) encode(cmd *internalv1.Command) ([]byte, error) {
	cmd.TimeUnixNano = s.clock.Now().UnixNano()
	data, err := cmd.MarshalVT()
	if err != nil {
		return nil, fmt.Errorf("encode command: %w", err)
	}
	return data, nil
}

// asResult is the state machine's answer to a command.
func asResult(resp any) (*internalv1.Result, error) {
	res, ok := resp.(*internalv1.Result)
	if !ok {
		return nil, fmt.Errorf("state machine returned %T", resp)
	}
	return res, nil
}

// A prepared write is a checked request as the command that carries it,
// and how the command's result becomes the answer.
type prepared[R any] struct {
	cmd    *internalv1.Command
	answer func(*internalv1.Result) R
}

// commit applies p, waiting, and answers; err is the error of preparing
// it, returned as it is.
func commit[R any](ctx context.Context, s *Server, p prepared[R], err error) (R, error) {
	var zero R
	if err != nil {
		return zero, err
	}
	res, err := s.propose(ctx, p.cmd)
	if err != nil {
		return zero, err
	}
	return p.answer(res), nil
}

// errUnconfirmed is a prepare's answer that it cannot decide from this
// member's state alone and that a read-index round must confirm it first
// (checkLockQuota). It never reaches a client: start hands such a request
// back to its caller's synchronous path, which confirms.
var errUnconfirmed = errors.New("unconfirmed: needs a read-index round")

// start is commit without a goroutine waiting for the apply. It reports
// whether it took the write; if it did, done is called exactly once with
// the answer commit would give, from whichever goroutine settles it (the
// state machine's, usually), so done must be quick and must not block. It
// takes a write only when this member leads, and then prepares req, once:
// preparing moves the request's ID into the command, so a request that
// was prepared must not be prepared again (nor left to a caller who
// would). ctx bounds the wait as it bounds commit's: once it ends, done
// gets its error. A proposal that cannot be made at once (a full queue),
// or that fails where commit would retry, is handed to commit on a
// goroutine, with the same command and request ID.
func start[Q, R any](ctx context.Context, s *Server, prepare func(Q) (prepared[R], error), req Q, done func(R, error)) bool {
	var zero R
	if s.stopping.Load() || !s.node.IsLeader() {
		return false
	}
	p, err := prepare(req)
	if errors.Is(err, errUnconfirmed) {
		// The request needs a read round first: commit's caller does it
		// (prepare moved nothing out of req before it answered this).
		return false
	}
	if err != nil {
		done(zero, err)
		return true
	}
	if err := identify(p.cmd); err != nil {
		done(zero, err)
		return true
	}
	data, err := s.encode(p.cmd)
	if err != nil {
		done(zero, err)
		return true
	}
	var settled atomic.Bool
	answer := func(r R, err error) {
		if settled.CompareAndSwap(false, true) {
			done(r, err)
		}
	}
	// The AfterFunc may run before AfterFunc returns: it must not use stop.
	stop := context.AfterFunc(ctx, func() {
		err := ctx.Err()
		if s.stopping.Load() {
			// The member's shutdown ended the wait, as in propose: the
			// write was proposed, and may yet be applied.
			err = errs.Wrapf(raftnode.ErrUnknownOutcome, "this member stopped while the write was on its way (%v); it may or may not be applied: retry it with the same request ID", err)
		}
		answer(zero, err)
	})
	settle := func(r R, err error) {
		stop()
		answer(r, err)
	}
	// wait hands the write to propose; maybe: the attempt so far may
	// have been applied.
	wait := func(maybe bool) {
		go func() {
			res, err := s.proposeAfter(ctx, p.cmd, maybe)
			if err != nil {
				settle(zero, err)
				return
			}
			settle(p.answer(res), nil)
		}()
	}
	settleApplied := func(_ uint64, resp any, err error) {
		if err != nil {
			if !retryable(err) {
				settle(zero, err)
				return
			}
			s.metrics.retries.Inc()
			wait(errors.Is(err, raftnode.ErrUnknownOutcome))
			return
		}
		res, err := asResult(resp)
		if err == nil {
			err = fsm.ResultError(res)
		}
		if err != nil {
			settle(zero, err)
			return
		}
		settle(p.answer(res), nil)
	}
	var took bool
	if within := s.deferWithin(p.cmd); within > 0 {
		took = s.node.ProposeDeferred(data, within, settleApplied)
	} else {
		took = s.node.ProposeAsync(data, settleApplied)
	}
	if !took {
		wait(false)
	}
	return true
}
