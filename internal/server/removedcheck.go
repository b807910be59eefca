package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
	"github.com/concord-dev/concord/internal/raftnode"
)

// removedCheckInterval is how often a member that knows no leader asks the
// cluster's leader whether it was removed.
const removedCheckInterval = 2 * time.Second

// checkRemoved stops a member that was removed while it was down (or cut
// off). Such a member restarts on a configuration that still lists it; no
// leader talks to it any more, so publishSelf never sees the removal, and
// it used to run on for good as a stranger. While it knows no leader, the
// member asks the voters of its configuration, as the seed check does,
// then the leader they name, for the cluster's status, and stops with
// ErrRemoved (or ErrAddedBack, naming the new ID) on an answer that proves
// the removal (removedBy).
func (s *Server) checkRemoved() {
	ctx, cancel := s.untilStop()
	defer cancel()
	t := time.NewTicker(removedCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopCh:
			return
		case <-t.C:
		}
		if id, _ := s.node.Leader(); id != "" {
			continue
		}
		if s.askRemoved(ctx) {
			return
		}
	}
}

// askRemoved runs one round of checkRemoved and reports whether it stopped
// the member.
func (s *Server) askRemoved(ctx context.Context) bool {
	latest, committed, err := s.node.LogConfigurations()
	if err != nil {
		s.log.Debug("removal check: reading the log's configurations failed", "err", err)
		return false
	}
	if !latest.Lists(s.id.ID) || !committed.Lists(s.id.ID) {
		// Not a member yet (an addition in progress, or one that was
		// lost with its leader and may be resumed under this ID), or a
		// removal this member has seen itself (publishSelf).
		return false
	}
	hc, err := s.joinHTTPClient()
	if err != nil {
		s.log.Debug("removal check: no client for the other members' client API", "err", err)
		return false
	}
	tlsOn := s.cfg.TLSCertFile != "" || s.cfg.JoinCACertFile != ""
	for _, sv := range latest.Servers {
		if !sv.Voter || sv.ID == s.id.ID {
			continue
		}
		st, err := s.leaderStatusVia(ctx, hc, tlsOn, sv)
		if ctx.Err() != nil {
			return false
		}
		if err != nil {
			s.log.Debug("removal check: no answer", "voter", sv.ID, "addr", sv.Addr, "err", err)
			continue
		}
		if !removedBy(s.id.ID, latest, committed, st) {
			continue
		}
		successor := ""
		for _, m := range st.GetMembers() {
			if m.GetName() == s.cfg.Name && m.GetId() != s.id.ID {
				successor = m.GetId()
			}
		}
		s.reportRemoved(successor, fmt.Sprintf("it was removed while it was down or cut off: leader %s no longer lists it at commit index %d, past this member's newest configuration, at index %d",
			st.GetSelf().GetId(), st.GetCommitIndex(), latest.Index))
		return true
	}
	return false
}

// leaderStatusVia asks the voter sv, at its peer address, for its ID, seed
// and client address, then its client API for the cluster's status, and
// returns the leader's status: sv's if sv leads, else that of the leader sv
// names. An answer from another member than the one asked (sv moved,
// another took its address), or from a member seeded unlike this one (a
// cluster restored from a backup, which is another history), is no answer.
func (s *Server) leaderStatusVia(ctx context.Context, hc *http.Client, tlsOn bool, sv raftnode.Server) (*concordv1.StatusResponse, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	ns, err := s.peers.For(sv.Addr).NodeStatus(cctx, connect.NewRequest(&internalv1.NodeStatusRequest{}))
	cancel()
	if err != nil {
		return nil, err
	}
	if ns.Msg.GetId() != sv.ID {
		return nil, fmt.Errorf("member %q answers at %s", ns.Msg.GetId(), sv.Addr)
	}
	if ns.Msg.GetSeed() != s.id.seed() {
		return nil, fmt.Errorf("%s was seeded with %q and this member with %q", sv.ID, ns.Msg.GetSeed(), s.id.seed())
	}
	if ns.Msg.GetClientAddr() == "" {
		return nil, fmt.Errorf("%s has no client address", sv.ID)
	}
	st, err := s.askStatus(ctx, hc, endpointURL(ns.Msg.GetClientAddr(), tlsOn))
	if err != nil {
		return nil, err
	}
	if st.GetSelf().GetId() != sv.ID {
		return nil, fmt.Errorf("member %q answers at %s", st.GetSelf().GetId(), ns.Msg.GetClientAddr())
	}
	if st.GetLeaderId() == "" || st.GetLeaderId() == sv.ID {
		return st, nil
	}
	for _, m := range st.GetMembers() {
		if m.GetId() != st.GetLeaderId() || m.GetClientAddr() == "" {
			continue
		}
		https := strings.HasPrefix(endpointURL(ns.Msg.GetClientAddr(), tlsOn), "https://")
		lst, err := s.askStatus(ctx, hc, endpointURL(m.GetClientAddr(), https))
		if err != nil {
			return nil, fmt.Errorf("leader %s named by %s: %w", m.GetId(), sv.ID, err)
		}
		if lst.GetSelf().GetId() != m.GetId() {
			return nil, fmt.Errorf("member %q answers at %s, the address of leader %s", lst.GetSelf().GetId(), m.GetClientAddr(), m.GetId())
		}
		return lst, nil
	}
	return nil, fmt.Errorf("%s names leader %s without a client address", sv.ID, st.GetLeaderId())
}

// removedBy reports whether st, a member's status, proves that the member
// id was removed. latest is the newest configuration in id's log, committed
// the one before it (raftnode.Node.LogConfigurations); both list id.
//
// st must come from the leader (a member that says it leads, listed in its
// own configuration), whose configuration, leaving id out, is committed
// (its commit index covers its whole log) and is no older than id's own:
// the leader's commit index reaches latest's index. Then the leader's log
// holds committed, which lists id, and a later configuration that does not:
// one that only a RemoveServer of id makes, which `cluster remove` runs
// once the ID's retirement is committed, and IDs are never reused. A
// leader that lags behind id's configuration (a stale leader cut off from
// the others, a cluster that lost writes), a follower, and an answer that
// lists id prove nothing.
func removedBy(id string, latest, committed raftnode.Configuration, st *concordv1.StatusResponse) bool {
	if !latest.Lists(id) || !committed.Lists(id) {
		return false
	}
	self := st.GetSelf()
	if st.GetState() != "Leader" || self.GetId() == "" || st.GetLeaderId() != self.GetId() || self.GetRole() != "leader" {
		return false
	}
	if st.GetCommitIndex() < latest.Index || st.GetCommitIndex() < committed.Index || st.GetCommitIndex() < st.GetLastLogIndex() {
		return false
	}
	for _, m := range st.GetMembers() {
		if m.GetId() == id {
			return false
		}
	}
	return true
}
