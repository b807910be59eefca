package server

import (
	"context"
	"fmt"
	"time"

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
// then the leader they name, for the cluster's status, at their peer
// addresses (the peer service, which needs none of the client API's TLS
// and token), and stops with ErrRemoved (or ErrAddedBack, naming the new
// ID) on an answer that proves the removal (removedBy).
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
	if !latest.Lists(s.id.ID) {
		// Not a member yet, or a removal this member has seen itself
		// (publishSelf).
		return false
	}
	for _, sv := range latest.Servers {
		if !sv.Voter || sv.ID == s.id.ID {
			continue
		}
		ns, err := s.leaderStatusVia(ctx, sv)
		if ctx.Err() != nil {
			return false
		}
		if err != nil {
			s.log.Debug("removal check: no answer", "voter", sv.ID, "addr", sv.Addr, "err", err)
			continue
		}
		if !removedBy(s.id.ID, latest, committed, ns) {
			continue
		}
		st := ns.GetStatus()
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

// leaderStatusVia asks the voter sv, at its peer address, for its status,
// and returns the leader's answer: sv's if sv leads, else that of the
// leader sv names, asked at its peer address. An answer from another member than the one asked (sv
// moved, another took its address), from a member seeded unlike this one
// (a cluster restored from a backup, which is another history), or without
// a status (a build before the removal check asked the peer service) is no
// answer.
func (s *Server) leaderStatusVia(ctx context.Context, sv raftnode.Server) (*internalv1.NodeStatusResponse, error) {
	ns, err := s.removalStatus(ctx, sv.ID, sv.Addr)
	if err != nil {
		return nil, err
	}
	st := ns.GetStatus()
	if st.GetLeaderId() == "" || st.GetLeaderId() == sv.ID {
		return ns, nil
	}
	if ns.GetLeaderPeerAddr() == "" {
		return nil, fmt.Errorf("%s names leader %s without a peer address", sv.ID, st.GetLeaderId())
	}
	ls, err := s.removalStatus(ctx, st.GetLeaderId(), ns.GetLeaderPeerAddr())
	if err != nil {
		return nil, fmt.Errorf("leader %s named by %s: %w", st.GetLeaderId(), sv.ID, err)
	}
	return ls, nil
}

// removalStatus asks the member id at the peer address addr for its status
// and whether this member's ID is retired, and checks that the answer is
// that member's, of this member's history.
func (s *Server) removalStatus(ctx context.Context, id, addr string) (*internalv1.NodeStatusResponse, error) {
	ns, err := s.nodeStatus(ctx, id, addr, &internalv1.NodeStatusRequest{RemovalOf: s.id.ID})
	if err != nil {
		return nil, err
	}
	switch {
	case ns.GetSeed() != s.id.seed():
		return nil, fmt.Errorf("%s was seeded with %q and this member with %q", id, ns.GetSeed(), s.id.seed())
	case !sameCluster(s.clusterID(), ns.GetStatus().GetClusterId()):
		// The stored ID counts too: a member that was removed while it
		// was down checks before it has applied its log again.
		return nil, fmt.Errorf("%s is a member of cluster %s and this member of cluster %s", id, ns.GetStatus().GetClusterId(), s.clusterID())
	case ns.GetStatus() == nil:
		return nil, fmt.Errorf("%s gives no status (a build before the removal check asked the peer port)", id)
	case ns.GetStatus().GetSelf().GetId() != id:
		return nil, fmt.Errorf("member %s reports itself as %q", id, ns.GetStatus().GetSelf().GetId())
	}
	return ns, nil
}

// removedBy reports whether ns, a member's answer to the removal check
// (its status, whether it holds id retired, and the index of its
// configuration), proves that the member id was removed. latest is the
// newest configuration in id's log, committed the one before it
// (raftnode.Node.LogConfigurations); latest lists id.
//
// It must come from the leader (a member that says it leads, listed in its
// own configuration), whose configuration, leaving id out, is committed
// (its commit index reaches the configuration's index; without that index,
// covers its whole log, which a busy leader's seldom does) and is no older
// than id's own: the leader's commit index reaches latest's index. And the
// leader must hold id retired: every removal retires the ID before it
// removes it from the configuration (`cluster remove`, for a member and for
// a pending addition alike), and a retired ID never comes back. Without
// the retirement, a leader that does not list id may be one of another
// history: a cluster bootstrapped afresh at a voter's address has the same
// empty seed, and its members the same IDs (their names), as this one's.
// The retirement also covers a learner stopped before its promotion (its
// newest configuration is its addition, which may not have been committed,
// and an addition lost with its leader may be resumed under the same ID,
// which is then not retired). A leader that lags behind id's
// configuration (a stale leader cut off from the others, a cluster that
// lost writes), a follower, and an answer that lists id prove nothing.
func removedBy(id string, latest, committed raftnode.Configuration, ns *internalv1.NodeStatusResponse) bool {
	if !latest.Lists(id) || !ns.GetRetired() {
		return false
	}
	st := ns.GetStatus()
	self := st.GetSelf()
	if st.GetState() != "Leader" || self.GetId() == "" || st.GetLeaderId() != self.GetId() || self.GetRole() != "leader" {
		return false
	}
	configIndex := ns.GetConfigurationIndex()
	if configIndex == 0 {
		configIndex = st.GetLastLogIndex()
	}
	if st.GetCommitIndex() < latest.Index || st.GetCommitIndex() < committed.Index || st.GetCommitIndex() < configIndex {
		return false
	}
	for _, m := range st.GetMembers() {
		if m.GetId() == id {
			return false
		}
	}
	return true
}

// sameCluster reports whether members that applied the cluster IDs mine
// and theirs may be of one cluster: a member that has not applied its
// cluster's ID yet (it has none, or its build predates them) may be of any.
func sameCluster(mine, theirs string) bool {
	return mine == "" || theirs == "" || mine == theirs
}
