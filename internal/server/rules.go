package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-dev/concord/internal/fsm"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
	"github.com/concord-dev/concord/internal/raftnode"
)

// rulesCheckInterval is how often the leader looks for a rules version it
// can raise the cluster to, from the moment it is ready. Once the cluster
// is at the leader's own highest version the check costs nothing.
const rulesCheckInterval = time.Second

// raiseRules raises the cluster's rules version, as etcd raises its
// cluster version: to the highest version every member of the
// configuration (voters and learners) reports that its build applies. A
// member that does not answer holds the raise back; one of a release
// before rules versions reports none, which reads as the baseline.
//
// Once the cluster is at RulesClusterID, the same loop names the cluster
// if it has no ID yet (nameCluster).
func (s *Server) raiseRules(ctx context.Context) {
	tick := time.NewTicker(rulesCheckInterval)
	defer tick.Stop()
	for {
		if s.fsm.RulesVersion() < s.fsm.MaxRulesVersion() {
			if err := s.raiseRulesOnce(ctx); err != nil && ctx.Err() == nil {
				s.log.Debug("rules version not raised", "err", err)
			}
		}
		if s.fsm.RulesVersion() >= fsm.RulesClusterID && s.fsm.ClusterID() == "" {
			if err := s.nameCluster(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("cluster ID not set", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// raiseRulesOnce proposes a RaiseRules to the version every member
// applies, if that is above the cluster's. The members are asked without
// the membership lock (a member that does not answer takes a second, and
// a membership change, such as removing that member, should not wait for
// it); the raise itself holds the lock and goes ahead only if the
// configuration is still the one asked, so no member added meanwhile, of
// an older build perhaps, is left out.
func (s *Server) raiseRulesOnce(ctx context.Context) error {
	servers, err := s.node.Configuration()
	if err != nil {
		return err
	}
	target := s.fsm.MaxRulesVersion()
	for _, sv := range servers {
		if sv.ID == s.id.ID {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := s.peers.For(sv.Addr).NodeStatus(cctx, connect.NewRequest(&internalv1.NodeStatusRequest{}))
		cancel()
		if err != nil {
			return fmt.Errorf("member %s at %s did not report its rules version: %w", sv.ID, sv.Addr, err)
		}
		if resp.Msg.GetId() != sv.ID {
			return fmt.Errorf("member %s at %s answered as %q", sv.ID, sv.Addr, resp.Msg.GetId())
		}
		target = min(target, max(resp.Msg.GetMaxRulesVersion(), fsm.BaselineRulesVersion))
	}
	current := s.fsm.RulesVersion()
	if target <= current {
		return nil
	}
	s.membership.Lock()
	defer s.membership.Unlock()
	now, err := s.node.Configuration()
	if err != nil {
		return err
	}
	if !sameServers(servers, now) {
		return errors.New("the configuration changed while its members were asked; asking again")
	}
	// Bounded: membership changes wait for it.
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := s.proposeLocal(pctx, &internalv1.Command{Op: &internalv1.Command_RaiseRules{RaiseRules: &internalv1.RaiseRules{Version: target}}}); err != nil {
		return fmt.Errorf("proposing rules version %d: %w", target, err)
	}
	s.log.Info("raised the cluster's rules version: every member applies it", "from", current, "to", target, "members", len(servers))
	return nil
}

// sameServers reports whether a and b list the same members at the same
// addresses (a promotion changes neither).
func sameServers(a, b []raftnode.Server) bool {
	if len(a) != len(b) {
		return false
	}
	addrs := make(map[string]string, len(a))
	for _, sv := range a {
		addrs[sv.ID] = sv.Addr
	}
	for _, sv := range b {
		if addr, ok := addrs[sv.ID]; !ok || addr != sv.Addr {
			return false
		}
	}
	return true
}

// nameCluster proposes a random cluster ID. The state machine keeps the
// first one applied, so a leader that proposes one after another leader's
// (which it had not applied yet) changes nothing. From then on members
// refuse Raft connections from members of another cluster ID (peer.Mux),
// and the removal check refuses another cluster's proof (removedcheck.go).
func (s *Server) nameCluster(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	id := fsm.NewClusterID()
	if _, err := s.proposeLocal(pctx, &internalv1.Command{Op: &internalv1.Command_SetClusterId{SetClusterId: &internalv1.SetClusterID{Id: id}}}); err != nil {
		return fmt.Errorf("proposing cluster ID %s: %w", id, err)
	}
	s.log.Info("named the cluster", "cluster_id", s.fsm.ClusterID())
	return nil
}

// clusterIDCheckInterval is how often a member looks for the cluster ID
// to store until it has applied it.
const clusterIDCheckInterval = 500 * time.Millisecond

// clusterID is the cluster ID the member names on its Raft streams and
// checks on those it accepts: the one it applied, or, until it has applied
// it again after a restart, the one it stored (member.json).
func (s *Server) clusterID() string {
	if id := s.fsm.ClusterID(); id != "" {
		return id
	}
	if p := s.storedClusterID.Load(); p != nil {
		return *p
	}
	return ""
}

// keepClusterID stores the cluster ID in member.json once the member has
// applied it, as etcd keeps its cluster ID in its WAL: restarted, the
// member names its cluster from its first Raft stream, where it named none
// until it had applied its log again (and took any cluster's streams
// meanwhile). A member whose applied ID differs from the stored one (which
// the check on Raft streams should make impossible) says so at error.
func (s *Server) keepClusterID() {
	stored := s.id.ClusterID
	tick := time.NewTicker(clusterIDCheckInterval)
	defer tick.Stop()
	for {
		if applied := s.fsm.ClusterID(); applied != "" {
			switch {
			case stored == "":
				next := s.id
				next.ClusterID = applied
				if err := saveIdentity(s.cfg.DataDir, next); err != nil {
					s.log.Warn("the cluster ID was not stored; storing it again", "cluster_id", applied, "err", err)
					break
				}
				s.storedClusterID.Store(&applied)
				s.log.Info("stored the cluster ID", "cluster_id", applied)
				return
			case stored != applied:
				s.log.Error("this member applied another cluster ID than its data dir stores: it took part in another cluster's log",
					"stored", stored, "applied", applied)
				return
			default:
				return
			}
		}
		select {
		case <-s.stopCh:
			return
		case <-tick.C:
		}
	}
}
