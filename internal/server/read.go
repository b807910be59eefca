package server

import (
	"context"
	"sync"
	"time"

	"connectrpc.com/connect"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/errs"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
	"github.com/concord-dev/concord/internal/raftnode"
)

// batcher coalesces concurrent read-index requests: a request joins the next
// round that starts after it arrived, and one round (one quorum check)
// answers all of them. Rounds run back to back while requests wait.
type batcher struct {
	fetch   func(context.Context) (uint64, error)
	mu      sync.Mutex
	waiting []chan readResult
	running bool
	onRound func(n int)
}

type readResult struct {
	index uint64
	err   error
}

func newBatcher(fetch func(context.Context) (uint64, error)) *batcher {
	return &batcher{fetch: fetch}
}

func (b *batcher) do(ctx context.Context) (uint64, error) {
	ch := make(chan readResult, 1)
	b.mu.Lock()
	b.waiting = append(b.waiting, ch)
	if !b.running {
		b.running = true
		go b.loop()
	}
	b.mu.Unlock()
	select {
	case r := <-ch:
		return r.index, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (b *batcher) loop() {
	for {
		b.mu.Lock()
		batch := b.waiting
		b.waiting = nil
		if len(batch) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		idx, err := b.fetch(ctx)
		cancel()
		if b.onRound != nil {
			b.onRound(len(batch))
		}
		for _, ch := range batch {
			ch <- readResult{index: idx, err: err}
		}
	}
}

// fetchReadIndex returns an index that every write acknowledged before the
// call has reached: on the leader, its commit index confirmed by a quorum
// heartbeat taken after the call started; elsewhere, the leader's answer.
func (s *Server) fetchReadIndex(ctx context.Context) (uint64, error) {
	s.metrics.readRounds.Inc()
	if s.node.IsLeader() {
		return s.leaderReadIndex(ctx)
	}
	id, addr := s.node.Leader()
	if id == "" {
		return 0, raftnode.ErrNoLeader
	}
	s.metrics.forwarded.WithLabelValues("read_index").Inc()
	resp, err := s.peers.For(addr).ReadIndex(ctx, connect.NewRequest(&internalv1.ReadIndexRequest{}))
	if err != nil {
		return 0, errs.FromConnect(err)
	}
	return resp.Msg.GetIndex(), nil
}

func (s *Server) leaderReadIndex(ctx context.Context) (uint64, error) {
	term := s.node.Term()
	if err := s.leader.waitReady(ctx, term); err != nil {
		return 0, err
	}
	idx := s.node.CommitIndex()
	if err := s.node.VerifyLeader(ctx); err != nil {
		return 0, err
	}
	if s.node.Term() != term {
		return 0, errs.Wrapf(raftnode.ErrNotLeader, "term changed during read")
	}
	return idx, nil
}

// barrier waits until the member's state reflects what the consistency
// level promises.
func (s *Server) barrier(ctx context.Context, c concordv1.Consistency, minRev uint64) error {
	if s.stopping.Load() {
		return raftnode.ErrStopped
	}
	if _, known := concordv1.Consistency_name[int32(c)]; !known {
		return errs.Wrapf(ErrInvalidArgument, "consistency %d is not one of LINEARIZABLE, SESSION, STALE (or unspecified)", c)
	}
	switch {
	case c == concordv1.Consistency_CONSISTENCY_STALE || s.cfg.UnsafeStaleLinearizable:
		return nil
	case c == concordv1.Consistency_CONSISTENCY_SESSION:
		return s.waitCommitted(ctx, minRev, func(committed uint64) error {
			return errs.Wrapf(ErrInvalidArgument, "min_revision %d is beyond the cluster's revision %d", minRev, committed)
		})
	default:
		idx, err := s.reads.do(ctx)
		if err != nil {
			return err
		}
		return s.waitApplied(ctx, idx)
	}
}

func (s *Server) waitApplied(ctx context.Context, idx uint64) error {
	if s.fsm.AppliedIndex() >= idx {
		return nil
	}
	if err := s.fsm.WaitApplied(ctx, idx); err != nil {
		if s.stopping.Load() {
			// The member's shutdown ended the wait (it cancels the
			// requests in flight): the caller resumes on another
			// member. A wait writes nothing.
			return raftnode.ErrStopped
		}
		return errs.Wrapf(ErrTimeout, "waiting for this member to apply revision %d (it has %d): %v", idx, s.fsm.AppliedIndex(), err)
	}
	return nil
}

// Barrier waits until this member can serve a linearizable read, for
// diagnostics and tests.
func (s *Server) Barrier(ctx context.Context) error {
	return s.barrier(ctx, concordv1.Consistency_CONSISTENCY_LINEARIZABLE, 0)
}

// waitCommitted waits until this member has applied index idx, which the
// caller says is committed (a revision a client saw, a waiter's command):
// a member a little behind catches up at once. One that has not within a
// second asks the leader for its commit index: an index beyond it is
// answered with beyond(commit index) at once, rather than waited on until
// the caller gives up, and otherwise the member waits to catch up.
func (s *Server) waitCommitted(ctx context.Context, idx uint64, beyond func(committed uint64) error) error {
	if s.fsm.AppliedIndex() >= idx {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	err := s.waitApplied(wctx, idx)
	cancel()
	if err == nil || ctx.Err() != nil {
		return err
	}
	if s.stopping.Load() {
		return raftnode.ErrStopped
	}
	committed, err := s.reads.do(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return errs.Wrapf(ErrTimeout, "confirming revision %d with the leader: %v", idx, err)
		}
		return err
	}
	if idx > committed {
		return beyond(committed)
	}
	return s.waitApplied(ctx, idx)
}
