package server

import (
	"context"
	"fmt"
	"time"

	"github.com/concord-dev/concord/internal/fsm"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
)

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

// clusterID is the cluster ID the member names on its peer connections
// and checks on those it accepts: the one it applied, or, until it has
// applied it again after a restart, the one it stored (member.json).
func (s *Server) clusterID() string {
	if id := s.fsm.ClusterID(); id != "" {
		return id
	}
	if p := s.storedClusterID.Load(); p != nil {
		return *p
	}
	return ""
}

// nameClusterOnRPC reports whether the member names its cluster ID on the
// RPC connections it dials: once the cluster is at fsm.RulesRPCClusterID,
// when every member's build knows that handshake. A member restarted on a
// state below it (it has not applied its log again) dials unnamed, which
// every member accepts; it still refuses named connections of another
// cluster.
func (s *Server) nameClusterOnRPC() bool { return s.fsm.RulesVersion() >= fsm.RulesRPCClusterID }

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
