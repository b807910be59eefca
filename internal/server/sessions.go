package server

import (
	"context"

	"connectrpc.com/connect"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/fsm"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
	"github.com/concord-dev/concord/internal/raftnode"
	"github.com/concord-dev/concord/internal/session"
)

// CreateSession starts a session.
func (s *Server) CreateSession(ctx context.Context, req *concordv1.CreateSessionRequest) (*concordv1.CreateSessionResponse, error) {
	// Compared in milliseconds: a Duration of a huge ttl_ms would wrap into
	// the range.
	if ms := req.GetTtlMs(); ms < s.cfg.Limits.MinSessionTTL.Milliseconds() || ms > s.cfg.Limits.MaxSessionTTL.Milliseconds() {
		return nil, errs.Wrapf(session.ErrTTLOutOfRange, "ttl %d ms is outside [%s, %s]", ms, s.cfg.Limits.MinSessionTTL, s.cfg.Limits.MaxSessionTTL)
	}
	if len(req.GetName()) > session.MaxNameBytes {
		return nil, errs.Wrapf(ErrInvalidArgument, "session name is %d bytes; the limit is %d", len(req.GetName()), session.MaxNameBytes)
	}
	var full bool
	s.fsm.Read(func(st fsm.State) { full = st.Sessions.Len() >= s.cfg.Limits.MaxSessions })
	full = full && !s.retryOfApplied(req.GetMeta())
	if full {
		return nil, errs.Wrapf(session.ErrTooMany, "the cluster holds %d sessions, the maximum (--max-sessions)", s.cfg.Limits.MaxSessions)
	}
	res, err := s.write(ctx, req.GetMeta(), &internalv1.Command{Op: &internalv1.Command_CreateSession{
		CreateSession: &internalv1.CreateSession{TtlMs: req.GetTtlMs(), Name: req.GetName()}}})
	if err != nil {
		return nil, err
	}
	r := res.GetCreateSession()
	return &concordv1.CreateSessionResponse{Header: s.header(r.GetHeader().GetRevision()), Id: r.GetId(), TtlMs: r.GetTtlMs()}, nil
}

// RevokeSession ends a session and what is bound to it.
func (s *Server) RevokeSession(ctx context.Context, req *concordv1.RevokeSessionRequest) (*concordv1.RevokeSessionResponse, error) {
	if req.GetId() <= 0 {
		return nil, errs.Wrapf(session.ErrNotFound, "session id %d", req.GetId())
	}
	res, err := s.write(ctx, req.GetMeta(), &internalv1.Command{Op: &internalv1.Command_RevokeSession{
		RevokeSession: &internalv1.RevokeSession{Id: req.GetId()}}})
	if err != nil {
		return nil, err
	}
	r := res.GetRevokeSession()
	return &concordv1.RevokeSessionResponse{Header: s.header(r.GetHeader().GetRevision()), KeysDeleted: r.GetKeysDeleted()}, nil
}

// KeepAlive refreshes sessions and returns the TTL granted to each, or -1
// for a session that no longer exists. On the leader a TTL is granted only
// after leadership is confirmed by a quorum after the request arrived, so a
// deposed leader can never extend a session behind its successor's back.
func (s *Server) KeepAlive(ctx context.Context, ids []int64) ([]int64, error) {
	if s.stopping.Load() {
		return nil, raftnode.ErrStopped
	}
	if !s.node.IsLeader() {
		id, addr := s.node.Leader()
		if id == "" {
			return nil, raftnode.ErrNoLeader
		}
		s.metrics.forwarded.WithLabelValues("keepalive").Inc()
		resp, err := s.peers.For(addr).KeepAlive(ctx, connect.NewRequest(&internalv1.PeerKeepAliveRequest{Ids: ids}))
		if err != nil {
			return nil, errs.FromConnect(err)
		}
		if len(resp.Msg.GetTtlMs()) != len(ids) {
			return nil, errs.Wrapf(raftnode.ErrNotLeader, "leader answered %d of %d keep-alives", len(resp.Msg.GetTtlMs()), len(ids))
		}
		return resp.Msg.GetTtlMs(), nil
	}
	return s.keepAliveLocal(ctx, ids)
}

func (s *Server) keepAliveLocal(ctx context.Context, ids []int64) ([]int64, error) {
	if _, err := s.reads.do(ctx); err != nil {
		return nil, err
	}
	// One hold of the tracker: were it stopped (leadership lost) between a
	// check and the keep-alives, a live session would be answered expired.
	ttls, active := s.tracker.KeepAliveAll(ids)
	if !active {
		return nil, errs.Wrapf(raftnode.ErrNotLeader, "leadership moved during keep-alive")
	}
	out := make([]int64, len(ids))
	for i, ttl := range ttls {
		if ttl < 0 {
			out[i] = -1
			s.metrics.keepAliveMiss.Inc()
			continue
		}
		out[i] = ttl.Milliseconds()
		s.metrics.keepAlives.Inc()
	}
	return out, nil
}

func (s *Server) sessionInfo(st fsm.State, sess session.Session) *concordv1.SessionInfo {
	info := &concordv1.SessionInfo{
		Id: sess.ID, Name: sess.Name, TtlMs: sess.TTLMillis, RemainingMs: -1,
		Keys: int64(st.KV.SessionKeys(sess.ID)), CreatedUnixMs: sess.CreatedUnixMs,
	}
	if rem, ok := s.tracker.Remaining(sess.ID); ok {
		info.RemainingMs = rem.Milliseconds()
	}
	return info
}

// GetSession describes a session (linearizable).
func (s *Server) GetSession(ctx context.Context, req *concordv1.GetSessionRequest) (*concordv1.GetSessionResponse, error) {
	if err := s.barrier(ctx, concordv1.Consistency_CONSISTENCY_LINEARIZABLE, 0); err != nil {
		return nil, err
	}
	var (
		out *concordv1.GetSessionResponse
		rev uint64
	)
	s.fsm.Read(func(st fsm.State) {
		rev = st.Applied
		if sess, ok := st.Sessions.Get(req.GetId()); ok {
			out = &concordv1.GetSessionResponse{Session: s.sessionInfo(st, sess)}
		}
	})
	if out == nil {
		return nil, errs.Wrapf(session.ErrNotFound, "session %d", req.GetId())
	}
	out.Header = s.header(rev)
	return out, nil
}

// maxListSessions bounds a page of ListSessions (its default too); a
// larger limit gets this many, with more set when there are others. A page
// of 1,000 sessions of 256-byte names is far below a client's read limit;
// every session at once (up to a million) was not.
const maxListSessions = 1000

// ListSessions describes the sessions after an ID, a page at a time
// (linearizable).
func (s *Server) ListSessions(ctx context.Context, req *concordv1.ListSessionsRequest) (*concordv1.ListSessionsResponse, error) {
	if req.GetLimit() < 0 {
		return nil, errs.Wrapf(ErrInvalidArgument, "limit %d is negative", req.GetLimit())
	}
	if err := s.barrier(ctx, concordv1.Consistency_CONSISTENCY_LINEARIZABLE, 0); err != nil {
		return nil, err
	}
	limit := int(min(req.GetLimit(), maxListSessions))
	if limit == 0 {
		limit = maxListSessions
	}
	out := &concordv1.ListSessionsResponse{}
	var rev uint64
	s.fsm.Read(func(st fsm.State) {
		rev = st.Applied
		page := st.Sessions.Page(req.GetAfter(), limit+1)
		if len(page) > limit {
			page, out.More = page[:limit], true
		}
		for _, sess := range page {
			out.Sessions = append(out.Sessions, s.sessionInfo(st, sess))
		}
	})
	out.Header = s.header(rev)
	return out, nil
}
