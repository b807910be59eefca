package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/fsm"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
	"github.com/concord-dev/concord/internal/raftnode"
)

// leaderState tracks the leadership term this member serves and whether it
// is ready: a leader is ready once an entry of its own term is applied, so
// its commit index covers every write of earlier terms.
type leaderState struct {
	mu      sync.Mutex
	term    uint64 // term of the running duties, 0 when not leading
	ready   uint64 // term for which the member is ready
	readyCh chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
}

func (l *leaderState) readyTerm() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ready
}

// waitReady waits until the member is ready as leader of term.
func (l *leaderState) waitReady(ctx context.Context, term uint64) error {
	for {
		l.mu.Lock()
		if l.ready == term && term != 0 {
			l.mu.Unlock()
			return nil
		}
		if l.term != term || l.readyCh == nil {
			l.mu.Unlock()
			return errs.Wrapf(raftnode.ErrNotLeader, "leadership of term %d is not established here", term)
		}
		ch := l.readyCh
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return errs.Wrapf(raftnode.ErrNoLeader, "new leader not ready yet: %v", ctx.Err())
		}
	}
}

// watchLeadership starts the leader's duties when this member wins a term
// and stops them when it loses it.
func (s *Server) watchLeadership() {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.node.LeaderCh():
		case <-tick.C:
		case <-s.stopCh:
			s.stopDuties()
			return
		}
		term := s.node.Term()
		leading := s.node.IsLeader()
		s.leader.mu.Lock()
		running := s.leader.term
		s.leader.mu.Unlock()
		switch {
		case leading && running != term:
			s.stopDuties()
			s.startDuties(term)
		case !leading && running != 0:
			s.stopDuties()
		}
	}
}

func (s *Server) startDuties(term uint64) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.leader.mu.Lock()
	s.leader.term = term
	s.leader.readyCh = make(chan struct{})
	s.leader.cancel = cancel
	s.leader.done = done
	s.leader.mu.Unlock()
	s.log.Info("leading", "term", term)
	go func() {
		defer close(done)
		s.runDuties(ctx, term)
	}()
}

func (s *Server) stopDuties() {
	s.leader.mu.Lock()
	cancel, done := s.leader.cancel, s.leader.done
	wasTerm := s.leader.term
	s.leader.term, s.leader.ready, s.leader.cancel, s.leader.done = 0, 0, nil, nil
	if s.leader.readyCh != nil {
		close(s.leader.readyCh)
		s.leader.readyCh = nil
	}
	s.leader.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
	s.tracker.Stop()
	s.holds.Stop()
	s.log.Info("stopped leading", "term", wasTerm)
}

// runDuties establishes the term (a no-op entry, then every session TTL
// restarted) and runs session and hold expiry, learner promotion and the
// rules version's raise until the term ends.
func (s *Server) runDuties(ctx context.Context, term uint64) {
	for {
		_, err := s.proposeLocal(ctx, &internalv1.Command{Op: &internalv1.Command_Noop{Noop: &internalv1.Noop{}}})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("establishing leadership failed; retrying", "term", term, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	s.fsm.Read(func(st fsm.State) {
		s.tracker.Start(st.Sessions.List())
		s.holds.Start(st.Locks.Holds())
	})
	s.leader.mu.Lock()
	if s.leader.term == term {
		s.leader.ready = term
		close(s.leader.readyCh)
		s.leader.readyCh = make(chan struct{})
	}
	s.leader.mu.Unlock()
	s.log.Info("leader ready", "term", term, "applied", s.fsm.AppliedIndex())

	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); s.expireSessions(ctx) }()
	go func() { defer wg.Done(); s.expireHolds(ctx) }()
	go func() { defer wg.Done(); s.promoteLearners(ctx) }()
	go func() { defer wg.Done(); s.raiseRules(ctx) }()
	wg.Wait()
}

// expireSessions proposes the expiry of sessions whose TTL ran out.
func (s *Server) expireSessions(ctx context.Context) {
	for {
		ids, next := s.tracker.Due(1024)
		if len(ids) > 0 {
			_, err := s.proposeLocal(ctx, &internalv1.Command{Op: &internalv1.Command_ExpireSessions{
				ExpireSessions: &internalv1.ExpireSessions{Ids: ids}}})
			if err != nil {
				s.tracker.Retry(ids)
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("proposing session expiry failed", "sessions", len(ids), "err", err)
				next = 50 * time.Millisecond
			} else {
				s.metrics.expiryProposed.Add(float64(len(ids)))
				continue
			}
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.tracker.Wake():
		case <-t.C:
		}
		t.Stop()
	}
}

// learnerLag is how far behind the commit index a learner may be when it is
// promoted to voter.
const learnerLag = 64

// learnersHeld keeps every leader of the process from promoting learners:
// tests set it (HoldLearners, export_test.go) to keep a member a learner.
var learnersHeld atomic.Bool

// promoteLearners makes non-voters voters once they have caught up.
func (s *Server) promoteLearners(ctx context.Context) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		servers, err := s.node.Configuration()
		if err != nil || learnersHeld.Load() {
			continue
		}
		for _, sv := range servers {
			if sv.Voter {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			resp, err := s.peers.For(sv.Addr).NodeStatus(cctx, connect.NewRequest(&internalv1.NodeStatusRequest{}))
			cancel()
			if err != nil || resp.Msg.GetId() != sv.ID {
				continue
			}
			if resp.Msg.GetAppliedIndex()+learnerLag < s.node.CommitIndex() {
				continue
			}
			if err := s.promote(ctx, sv); err != nil {
				s.log.Warn("promoting learner failed", "learner", sv.ID, "err", err)
				continue
			}
			s.metrics.promotions.Inc()
			s.log.Info("promoted learner to voter", "member", sv.ID, "applied", resp.Msg.GetAppliedIndex())
		}
	}
}

// promote makes the learner sv a voter if it still is a learner at its
// address: a `cluster remove` between the check and AddVoter had the
// removed member added back, as a voter.
func (s *Server) promote(ctx context.Context, sv raftnode.Server) error {
	s.membership.Lock()
	defer s.membership.Unlock()
	servers, err := s.node.Configuration()
	if err != nil {
		return err
	}
	if !slices.Contains(servers, raftnode.Server{ID: sv.ID, Addr: sv.Addr}) {
		return fmt.Errorf("%s is no longer a learner at %s", sv.ID, sv.Addr)
	}
	return s.node.AddVoter(ctx, sv.ID, sv.Addr)
}

// configuredPeerAddr returns this member's address in the newest Raft
// configuration it knows.
func (s *Server) configuredPeerAddr() (string, bool) {
	servers, err := s.node.Configuration()
	if err != nil {
		return "", false
	}
	for _, sv := range servers {
		if sv.ID == s.id.ID {
			return sv.Addr, true
		}
	}
	return "", false
}

// ErrRemoved stops a member whose ID was removed from the cluster: IDs are
// retired for good, so the process can never take part again. `concord
// server` then exits 0: the stop is the one the removal asked for.
var ErrRemoved = errors.New("this member was removed from the cluster")

// ErrAddedBack stops a process started on the data dir of a member that was
// removed and then added back under a new ID: the data dir belongs to the
// retired ID. `concord server` exits non-zero.
var ErrAddedBack = errors.New("this data dir belongs to a member that was removed and added back under a new ID")

// removedFromConfiguration reports whether this member's ID is missing from
// the newest Raft configuration it knows. With its ID retired (applied,
// hence committed), that is a removal the member has seen through: an ID
// retired by a removal whose configuration change failed is still listed,
// and the member keeps serving until the removal is finished.
func (s *Server) removedFromConfiguration() bool {
	servers, err := s.node.Configuration()
	if errors.Is(err, raftnode.ErrStopped) {
		// Raft shuts itself down in a leader that removed itself.
		return true
	}
	if err != nil || len(servers) == 0 {
		return false
	}
	return !slices.ContainsFunc(servers, func(sv raftnode.Server) bool { return sv.ID == s.id.ID })
}

// reportRemoved stops the member, as etcd stops a removed member. A process
// started on the data dir of a member that was removed and then added back
// under a new ID (successor) used to run on, unnoticed, under the retired
// ID: the leader waited for the new ID at its address and never promoted
// it. source, when not empty, says how the member learnt of its removal
// when it did not apply the removal itself (checkRemoved).
func (s *Server) reportRemoved(successor, source string) {
	how := ""
	if source != "" {
		how = " (" + source + ")"
	}
	var err error
	if successor != "" {
		err = fmt.Errorf("%w: its ID %s is retired and the cluster added %s back as %s%s: empty --data-dir %s and start the member again with --join",
			ErrAddedBack, s.id.ID, s.cfg.Name, successor, how, s.cfg.DataDir)
	} else {
		err = fmt.Errorf("%w: its ID %s is retired%s; to add it back, run `concord cluster add` and start it with an empty --data-dir and --join",
			ErrRemoved, s.id.ID, how)
	}
	s.log.Error("member removed from the cluster", "err", err)
	if s.onFatal != nil {
		s.onFatal(err)
	}
}

// publishSelf records this member's name and addresses in the state
// machine, so every member can report them, and keeps them current.
func (s *Server) publishSelf() {
	wait := 200 * time.Millisecond
	warnedAddr := ""
	for {
		select {
		case <-s.stopCh:
			return
		case <-time.After(wait):
		}
		current, retired := false, false
		var successor string
		s.fsm.Read(func(st fsm.State) {
			m, ok := st.Members.Get(s.id.ID)
			retired = ok && m.Retired
			current = ok && m.Name == s.cfg.Name && m.PeerAddr == s.cfg.AdvertisePeer && m.ClientAddr == s.cfg.AdvertiseClient
			if retired {
				for _, o := range st.Members.List() {
					if !o.Retired && o.Name == s.cfg.Name {
						successor = o.ID
					}
				}
			}
		})
		if retired && s.removedFromConfiguration() {
			s.reportRemoved(successor, "")
			return
		}
		if current {
			// Every 2 s: a cheap read, and a removal is noticed soon.
			wait = 2 * time.Second
			continue
		}
		if addr, ok := s.configuredPeerAddr(); ok && addr != s.cfg.AdvertisePeer {
			// The configuration is what the leader dials. A member
			// restarted on a new address before `cluster update-peer`
			// is not reached there, and one still running on its old
			// address after it must not publish that address back.
			if addr != warnedAddr {
				s.log.Warn("the cluster reaches this member at another peer address than --advertise-peer",
					"configured", addr, "advertise_peer", s.cfg.AdvertisePeer,
					"hint", fmt.Sprintf("run: concord cluster update-peer %s %s, or start this member with --advertise-peer %s", s.cfg.Name, s.cfg.AdvertisePeer, addr))
				warnedAddr = addr
			}
			wait = 2 * time.Second
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := s.propose(ctx, &internalv1.Command{Op: &internalv1.Command_PublishMember{PublishMember: &internalv1.PublishMember{
			Id: s.id.ID, Name: s.cfg.Name, PeerAddr: s.cfg.AdvertisePeer, ClientAddr: s.cfg.AdvertiseClient,
		}}})
		cancel()
		if err != nil {
			s.log.Debug("publishing member attributes failed; will retry", "err", err)
			wait = 500 * time.Millisecond
		}
	}
}
