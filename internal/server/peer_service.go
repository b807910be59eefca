package server

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/fsm"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
	"github.com/concord-dev/concord/internal/raftnode"
)

// peerService serves the members' internal RPC on the peer port. It acts
// only if this member leads (or, for NodeStatus, always): a request that
// reaches a follower fails with NOT_LEADER and the sender retries, so
// forwarding never loops.
type peerService struct{ s *Server }

func (p *peerService) leading() error {
	if p.s.stopping.Load() {
		return errs.ToConnect(raftnode.ErrStopped)
	}
	// Start serves the peer port before it opens Raft: a member that has
	// not opened it yet leads nothing, and the sender retries elsewhere.
	if !p.s.raftOpen.Load() || !p.s.node.IsLeader() {
		return errs.ToConnect(raftnode.ErrNotLeader)
	}
	return nil
}

func (p *peerService) Propose(ctx context.Context, req *connect.Request[internalv1.ProposeRequest]) (*connect.Response[internalv1.ProposeResponse], error) {
	if err := p.leading(); err != nil {
		return nil, err
	}
	cmd := req.Msg.GetCommand()
	if cmd == nil {
		return nil, errs.ToConnect(errs.Wrapf(ErrInvalidArgument, "no command"))
	}
	res, err := p.s.proposeLocal(ctx, cmd)
	if err != nil {
		return nil, errs.ToConnect(err)
	}
	if a := cmd.GetLockAcquire(); a != nil && res.GetLockAcquire().GetState() == concordv1.AcquireState_ACQUIRE_STATE_GRANTED {
		res = p.s.judgeForwardedGrant(a, res)
	}
	return connect.NewResponse(&internalv1.ProposeResponse{Result: res, Term: p.s.node.Term()}), nil
}

func (p *peerService) ReadIndex(ctx context.Context, _ *connect.Request[internalv1.ReadIndexRequest]) (*connect.Response[internalv1.ReadIndexResponse], error) {
	if err := p.leading(); err != nil {
		return nil, err
	}
	idx, err := p.s.reads.do(ctx)
	if err != nil {
		return nil, errs.ToConnect(err)
	}
	return connect.NewResponse(&internalv1.ReadIndexResponse{Index: idx, Term: p.s.node.Term()}), nil
}

func (p *peerService) KeepAlive(ctx context.Context, req *connect.Request[internalv1.PeerKeepAliveRequest]) (*connect.Response[internalv1.PeerKeepAliveResponse], error) {
	if err := p.leading(); err != nil {
		return nil, err
	}
	ttls, err := p.s.keepAliveLocal(ctx, req.Msg.GetIds())
	if err != nil {
		return nil, errs.ToConnect(err)
	}
	return connect.NewResponse(&internalv1.PeerKeepAliveResponse{TtlMs: ttls, Term: p.s.node.Term()}), nil
}

// NodeStatus answers any member. Asked about a removal (removal_of), it
// adds what the removal check of that member needs (removedcheck.go), so
// that the check needs only the peer port, which the asking member already
// reaches, not the client API with its TLS and token.
func (p *peerService) NodeStatus(ctx context.Context, req *connect.Request[internalv1.NodeStatusRequest]) (*connect.Response[internalv1.NodeStatusResponse], error) {
	out := &internalv1.NodeStatusResponse{
		Id: p.s.id.ID, Name: p.s.cfg.Name, AppliedIndex: p.s.fsm.AppliedIndex(), ClientAddr: p.s.cfg.AdvertiseClient,
		Seed: p.s.id.seed(), MaxRulesVersion: p.s.fsm.MaxRulesVersion(),
	}
	if id := req.Msg.GetRemovalOf(); id != "" {
		if !p.s.raftOpen.Load() {
			// Start serves the peer port before it opens Raft.
			return nil, connect.NewError(connect.CodeUnavailable, errors.New("this member has not opened its Raft log yet"))
		}
		st, err := p.s.Status(ctx)
		if err != nil {
			return nil, errs.ToConnect(err)
		}
		// Read after the status: the configuration it lists is at this
		// index or before.
		if out.ConfigurationIndex, err = p.s.node.ConfigurationIndex(); err != nil {
			return nil, errs.ToConnect(err)
		}
		out.Status = st
		_, out.LeaderPeerAddr = p.s.node.Leader()
		p.s.fsm.Read(func(st fsm.State) {
			m, ok := st.Members.Get(id)
			out.Retired = ok && m.Retired
		})
	}
	return connect.NewResponse(out), nil
}

func (p *peerService) AddMember(ctx context.Context, req *connect.Request[concordv1.AddMemberRequest]) (*connect.Response[concordv1.AddMemberResponse], error) {
	if err := p.leading(); err != nil {
		return nil, err
	}
	resp, err := p.s.AddMember(ctx, req.Msg)
	if err != nil {
		return nil, errs.ToConnect(err)
	}
	return connect.NewResponse(resp), nil
}

func (p *peerService) UpdateMember(ctx context.Context, req *connect.Request[concordv1.UpdateMemberRequest]) (*connect.Response[concordv1.UpdateMemberResponse], error) {
	if err := p.leading(); err != nil {
		return nil, err
	}
	resp, err := p.s.UpdateMember(ctx, req.Msg)
	if err != nil {
		return nil, errs.ToConnect(err)
	}
	return connect.NewResponse(resp), nil
}

func (p *peerService) RemoveMember(ctx context.Context, req *connect.Request[concordv1.RemoveMemberRequest]) (*connect.Response[concordv1.RemoveMemberResponse], error) {
	if err := p.leading(); err != nil {
		return nil, err
	}
	resp, err := p.s.RemoveMember(ctx, req.Msg)
	if err != nil {
		return nil, errs.ToConnect(err)
	}
	return connect.NewResponse(resp), nil
}

func (p *peerService) TransferLeader(ctx context.Context, req *connect.Request[concordv1.TransferLeaderRequest]) (*connect.Response[concordv1.TransferLeaderResponse], error) {
	if err := p.leading(); err != nil {
		return nil, err
	}
	resp, err := p.s.TransferLeader(ctx, req.Msg)
	if err != nil {
		return nil, errs.ToConnect(err)
	}
	return connect.NewResponse(resp), nil
}
