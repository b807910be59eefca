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
