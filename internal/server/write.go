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
	if s.stopping.Load() {
		return nil, raftnode.ErrStopped
	}
	if cmd.GetMeta().GetClientId() == "" {
		cmd.Meta = memberMeta.next()
	}
	backoff := 2 * time.Millisecond
	for {
		res, err := s.proposeOnce(ctx, cmd)
		if err == nil {
			if rerr := fsm.ResultError(res); rerr != nil {
				return nil, rerr
			}
			return res, nil
		}
		retryable := errors.Is(err, raftnode.ErrNotLeader) || errors.Is(err, raftnode.ErrNoLeader) ||
			errors.Is(err, raftnode.ErrUnknownOutcome)
		if !retryable {
			return nil, err
		}
		s.metrics.retries.Inc()
		select {
		case <-ctx.Done():
			return nil, errs.Wrapf(ErrTimeout, "%v (last error: %v); the write may or may not be applied", ctx.Err(), err)
		case <-s.stopCh:
			return nil, raftnode.ErrStopped
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 100*time.Millisecond)
	}
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
	cmd.TimeUnixNano = s.clock.Now().UnixNano()
	data, err := cmd.MarshalVT()
	if err != nil {
		return nil, fmt.Errorf("encode command: %w", err)
	}
	_, resp, err := s.node.Propose(ctx, data)
	if err != nil {
		return nil, err
	}
	res, ok := resp.(*internalv1.Result)
	if !ok {
		return nil, fmt.Errorf("state machine returned %T", resp)
	}
	return res, nil
}
