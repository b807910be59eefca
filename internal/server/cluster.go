package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/fsm"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
	"github.com/concord-dev/concord/internal/member"
	"github.com/concord-dev/concord/internal/raftnode"
)

// Status reports the cluster as this member sees it.
func (s *Server) Status(ctx context.Context) (*concordv1.StatusResponse, error) {
	servers, err := s.node.Configuration()
	if err != nil {
		return nil, err
	}
	leaderID, _ := s.node.Leader()
	out := &concordv1.StatusResponse{
		LeaderId:          leaderID,
		State:             s.node.State(),
		Term:              s.node.Term(),
		CommitIndex:       s.node.CommitIndex(),
		LastLogIndex:      s.node.LastIndex(),
		LastSnapshotIndex: s.node.LastSnapshotIndex(),
		Version:           s.version,
	}
	s.fsm.Read(func(st fsm.State) {
		out.AppliedIndex = st.Applied
		// The revision this member's state is at, as every answer's
		// header gives it: the SDK counts it as seen.
		out.Header = s.header(st.Applied)
		out.Keys = int64(st.KV.Len())
		out.Sessions = int64(st.Sessions.Len())
		out.StateBytes = st.KV.Bytes()
		out.RulesVersion = st.RulesVersion
		out.ClusterId = st.ClusterID
		for _, sv := range servers {
			m := &concordv1.Member{Id: sv.ID, Name: sv.ID, PeerAddr: sv.Addr, Role: "follower"}
			if rec, ok := st.Members.Get(sv.ID); ok {
				if rec.Name != "" {
					m.Name = rec.Name
				}
				m.ClientAddr = rec.ClientAddr
			}
			switch {
			case sv.ID == leaderID:
				m.Role = "leader"
				out.Leader = m.Name
			case !sv.Voter:
				m.Role = "learner"
			}
			if sv.ID == s.id.ID {
				out.Self = m
			}
			out.Members = append(out.Members, m)
		}
	})
	if out.Self == nil {
		out.Self = &concordv1.Member{Id: s.id.ID, Name: s.cfg.Name, PeerAddr: s.cfg.AdvertisePeer, ClientAddr: s.cfg.AdvertiseClient, Role: "removed"}
	}
	out.Header = s.header(out.AppliedIndex)
	return out, nil
}

// leaderPeer returns the leader's peer client, or an error when this member
// leads (ok=false, err=nil) or no leader is known.
func (s *Server) leaderPeer() (client interface {
	AddMember(context.Context, *connect.Request[concordv1.AddMemberRequest]) (*connect.Response[concordv1.AddMemberResponse], error)
	RemoveMember(context.Context, *connect.Request[concordv1.RemoveMemberRequest]) (*connect.Response[concordv1.RemoveMemberResponse], error)
	TransferLeader(context.Context, *connect.Request[concordv1.TransferLeaderRequest]) (*connect.Response[concordv1.TransferLeaderResponse], error)
	UpdateMember(context.Context, *connect.Request[concordv1.UpdateMemberRequest]) (*connect.Response[concordv1.UpdateMemberResponse], error)
}, forward bool, err error) {
	if s.node.IsLeader() {
		return nil, false, nil
	}
	id, addr := s.node.Leader()
	if id == "" {
		return nil, false, raftnode.ErrNoLeader
	}
	return s.peers.For(addr), true, nil
}

// AddMember adds a member as a learner; the leader promotes it once it has
// caught up. The new member is started with --join.
func (s *Server) AddMember(ctx context.Context, req *concordv1.AddMemberRequest) (*concordv1.AddMemberResponse, error) {
	if !nameOK(req.GetName()) {
		return nil, errs.Wrapf(ErrInvalidArgument, "member name %s: use 1-63 letters, digits, '.', '_' or '-'", clip(req.GetName()))
	}
	if err := checkPeerAddr(req.GetPeerAddr()); err != nil {
		return nil, err
	}
	if c, fwd, err := s.leaderPeer(); err != nil {
		return nil, err
	} else if fwd {
		resp, err := c.AddMember(ctx, connect.NewRequest(req))
		if err != nil {
			return nil, errs.FromConnect(err)
		}
		return resp.Msg, nil
	}
	// Held from the check to the learner's addition: two adds of one name
	// (or of two names at one address) both passed the check, both took
	// the same ID, and the second AddNonvoter moved the first learner to
	// its address, both told they succeeded.
	s.membership.Lock()
	defer s.membership.Unlock()
	servers, err := s.node.Configuration()
	if err != nil {
		return nil, err
	}
	var id string
	var clash error
	resume := false
	s.fsm.Read(func(st fsm.State) {
		configured := map[string]bool{}
		for _, sv := range servers {
			configured[sv.ID] = true
			rec, _ := st.Members.Get(sv.ID)
			if sv.ID == req.GetName() || rec.Name == req.GetName() {
				clash = errs.Wrapf(member.ErrExists, "a member named %q is in the cluster", req.GetName())
				return
			}
			if sv.Addr == req.GetPeerAddr() {
				clash = errs.Wrapf(member.ErrExists, "member %s already uses peer address %s", sv.ID, sv.Addr)
				return
			}
		}
		// A member published by an add whose learner is not in the
		// configuration: an add in flight on a former leader, or one that
		// failed after the publish. The same name at the same address is
		// that add again and takes it over; anything else that collides
		// with it is a clash until it is removed.
		for _, rec := range st.Members.List() {
			if rec.Retired || configured[rec.ID] {
				continue
			}
			switch {
			case rec.Name == req.GetName() && rec.PeerAddr == req.GetPeerAddr():
				id, resume = rec.ID, true
				return
			case rec.Name == req.GetName() || rec.PeerAddr == req.GetPeerAddr():
				clash = errs.Wrapf(member.ErrExists, "member %q was added at %s and is not in the configuration yet; drop it first with: concord cluster remove %s",
					rec.Name, rec.PeerAddr, rec.ID)
				return
			}
		}
		// IDs are never reused: a name that was used before gets a
		// suffix.
		id = req.GetName()
		for n := st.Applied; st.Members.Known(id); n++ {
			id = req.GetName() + "-" + strconv.FormatUint(n, 10)
		}
	})
	if clash != nil {
		return nil, clash
	}
	// The same endpoint under another spelling (localhost for 127.0.0.1,
	// a DNS name for an IP): the leader would replicate to itself, or to
	// another voter, as to the learner, and lose its leadership at once,
	// for good.
	if sv, ok := sameEndpoint(ctx, servers, req.GetPeerAddr()); ok {
		return nil, errs.Wrapf(member.ErrExists, "member %s already uses peer address %s, which %s names too", sv.ID, sv.Addr, clip(req.GetPeerAddr()))
	}
	if resume {
		s.log.Info("resuming the addition of a published member", "new", id, "peer", req.GetPeerAddr())
	} else if _, err := s.propose(ctx, &internalv1.Command{Op: &internalv1.Command_PublishMember{PublishMember: &internalv1.PublishMember{
		Id: id, Name: req.GetName(), PeerAddr: req.GetPeerAddr()}}}); err != nil {
		return nil, err
	}
	if err := s.node.AddNonvoter(ctx, id, req.GetPeerAddr()); err != nil {
		return nil, fmt.Errorf("adding learner %s: %w", id, err)
	}
	s.log.Info("member added as learner", "new", id, "peer", req.GetPeerAddr())
	return &concordv1.AddMemberResponse{
		Header: s.header(s.fsm.AppliedIndex()),
		Member: &concordv1.Member{Id: id, Name: req.GetName(), PeerAddr: req.GetPeerAddr(), Role: "learner"},
	}, nil
}

// RemoveMember removes a member by name or ID and retires its ID.
func (s *Server) RemoveMember(ctx context.Context, req *concordv1.RemoveMemberRequest) (*concordv1.RemoveMemberResponse, error) {
	if c, fwd, err := s.leaderPeer(); err != nil {
		return nil, err
	} else if fwd {
		resp, err := c.RemoveMember(ctx, connect.NewRequest(req))
		if err != nil {
			return nil, errs.FromConnect(err)
		}
		return resp.Msg, nil
	}
	s.membership.Lock()
	defer s.membership.Unlock()
	sv, err := s.findServer(req.GetName())
	if errors.Is(err, member.ErrNotFound) {
		// A member published by an add that never reached the
		// configuration: retire it, so its name and address are free.
		if rec, ok := s.pendingMember(req.GetName()); ok {
			if _, err := s.propose(ctx, &internalv1.Command{Op: &internalv1.Command_RetireMember{RetireMember: &internalv1.RetireMember{Id: rec.ID}}}); err != nil {
				return nil, err
			}
			s.log.Info("member removed before it joined", "removed", rec.ID)
			return &concordv1.RemoveMemberResponse{Header: s.header(s.fsm.AppliedIndex())}, nil
		}
	}
	if err != nil {
		return nil, err
	}
	if sv.Voter {
		if err := s.checkOtherVoter(sv.ID, "remove %s: it is the cluster's only voter"); err != nil {
			return nil, err
		}
	}
	if _, err := s.propose(ctx, &internalv1.Command{Op: &internalv1.Command_RetireMember{RetireMember: &internalv1.RetireMember{Id: sv.ID}}}); err != nil {
		return nil, err
	}
	if err := s.node.RemoveServer(ctx, sv.ID); err != nil {
		return nil, fmt.Errorf("removing %s: %w", sv.ID, err)
	}
	s.log.Info("member removed", "removed", sv.ID)
	return &concordv1.RemoveMemberResponse{Header: s.header(s.fsm.AppliedIndex())}, nil
}

// UpdateMember moves a member to a new peer address, keeping its ID, its
// role and its data. The member is meant to be stopped: the leader sends
// to the new address from now on, and the member, started there with the
// new --advertise-peer on its data dir, takes part again. Raft cannot
// change the leader's own address in place, so the leader is refused:
// transfer leadership first. Updating a member to the address it has
// already is a no-op, so a retry after an unknown outcome is safe.
func (s *Server) UpdateMember(ctx context.Context, req *concordv1.UpdateMemberRequest) (*concordv1.UpdateMemberResponse, error) {
	if req.GetName() == "" {
		return nil, errs.Wrapf(ErrInvalidArgument, "update a member: name or ID is empty")
	}
	if err := checkPeerAddr(req.GetPeerAddr()); err != nil {
		return nil, err
	}
	if c, fwd, err := s.leaderPeer(); err != nil {
		return nil, err
	} else if fwd {
		resp, err := c.UpdateMember(ctx, connect.NewRequest(req))
		if err != nil {
			return nil, errs.FromConnect(err)
		}
		return resp.Msg, nil
	}
	s.membership.Lock()
	defer s.membership.Unlock()
	sv, err := s.findServer(req.GetName())
	if err != nil {
		return nil, err
	}
	var rec member.Member
	known := false
	s.fsm.Read(func(st fsm.State) { rec, known = st.Members.Get(sv.ID) })
	if !known || rec.Name == "" {
		// A member of the initial cluster that has not published itself
		// yet: its ID is its name.
		rec.ID, rec.Name = sv.ID, sv.ID
	}
	role := "learner"
	if sv.Voter {
		role = "follower"
	}
	done := &concordv1.UpdateMemberResponse{
		Member: &concordv1.Member{Id: sv.ID, Name: rec.Name, PeerAddr: req.GetPeerAddr(), ClientAddr: rec.ClientAddr, Role: role},
	}
	if sv.Addr == req.GetPeerAddr() && rec.PeerAddr == req.GetPeerAddr() {
		done.Header = s.header(s.fsm.AppliedIndex())
		return done, nil
	}
	if sv.ID == s.id.ID {
		return nil, errs.Wrapf(ErrInvalidArgument, "%s leads: Raft cannot move the leader's address; run `concord cluster transfer-leader` first", sv.ID)
	}
	servers, err := s.node.Configuration()
	if err != nil {
		return nil, err
	}
	others := slices.DeleteFunc(slices.Clone(servers), func(o raftnode.Server) bool { return o.ID == sv.ID })
	var clash error
	s.fsm.Read(func(st fsm.State) {
		for _, o := range st.Members.List() {
			if !o.Retired && o.ID != sv.ID && o.PeerAddr == req.GetPeerAddr() {
				clash = errs.Wrapf(member.ErrExists, "member %s already uses peer address %s", o.ID, o.PeerAddr)
				return
			}
		}
	})
	if clash != nil {
		return nil, clash
	}
	if o, ok := sameEndpoint(ctx, others, req.GetPeerAddr()); ok {
		return nil, errs.Wrapf(member.ErrExists, "member %s already uses peer address %s, which %s names too", o.ID, o.Addr, clip(req.GetPeerAddr()))
	}
	// The registry first: a member that published its old address would
	// otherwise overwrite the new one only after the configuration moved.
	if _, err := s.propose(ctx, &internalv1.Command{Op: &internalv1.Command_PublishMember{PublishMember: &internalv1.PublishMember{
		Id: sv.ID, Name: rec.Name, PeerAddr: req.GetPeerAddr(), ClientAddr: rec.ClientAddr}}}); err != nil {
		return nil, err
	}
	// AddVoter and AddNonvoter of an ID already in the configuration
	// change its address and keep everything else.
	if sv.Voter {
		err = s.node.AddVoter(ctx, sv.ID, req.GetPeerAddr())
	} else {
		err = s.node.AddNonvoter(ctx, sv.ID, req.GetPeerAddr())
	}
	if err != nil {
		return nil, fmt.Errorf("moving %s to %s: %w", sv.ID, clip(req.GetPeerAddr()), err)
	}
	s.log.Info("member moved to a new peer address", "member", sv.ID, "from", sv.Addr, "to", req.GetPeerAddr())
	done.Header = s.header(s.fsm.AppliedIndex())
	return done, nil
}

func (s *Server) findServer(nameOrID string) (raftnode.Server, error) {
	servers, err := s.node.Configuration()
	if err != nil {
		return raftnode.Server{}, err
	}
	var found *raftnode.Server
	s.fsm.Read(func(st fsm.State) {
		for i, sv := range servers {
			rec, _ := st.Members.Get(sv.ID)
			if sv.ID == nameOrID || (rec.Name == nameOrID && !rec.Retired) {
				found = &servers[i]
				return
			}
		}
	})
	if found == nil {
		return raftnode.Server{}, errs.Wrapf(member.ErrNotFound, "no member named %s", clip(nameOrID))
	}
	return *found, nil
}

// pendingMember returns the live member record of that name or ID that is
// not in the Raft configuration: published by an add whose learner was
// never added.
func (s *Server) pendingMember(nameOrID string) (member.Member, bool) {
	servers, err := s.node.Configuration()
	if err != nil {
		return member.Member{}, false
	}
	var found member.Member
	ok := false
	s.fsm.Read(func(st fsm.State) {
		for _, rec := range st.Members.List() {
			if rec.Retired || (rec.ID != nameOrID && rec.Name != nameOrID) ||
				slices.ContainsFunc(servers, func(sv raftnode.Server) bool { return sv.ID == rec.ID }) {
				continue
			}
			found, ok = rec, true
			return
		}
	})
	return found, ok
}

// TransferLeader hands leadership to the named voter, or lets Raft pick.
func (s *Server) TransferLeader(ctx context.Context, req *concordv1.TransferLeaderRequest) (*concordv1.TransferLeaderResponse, error) {
	if c, fwd, err := s.leaderPeer(); err != nil {
		return nil, err
	} else if fwd {
		resp, err := c.TransferLeader(ctx, connect.NewRequest(req))
		if err != nil {
			return nil, errs.FromConnect(err)
		}
		return resp.Msg, nil
	}
	var id, addr string
	if req.GetName() != "" {
		sv, err := s.findServer(req.GetName())
		if err != nil {
			return nil, err
		}
		id, addr = sv.ID, sv.Addr
		if id == s.id.ID {
			// Already the leader: nothing to hand over.
			return &concordv1.TransferLeaderResponse{Header: s.header(s.fsm.AppliedIndex()), Leader: id}, nil
		}
		if !sv.Voter {
			return nil, errs.Wrapf(ErrInvalidArgument, "%s is a learner: only a voter can lead (promote it first)", sv.ID)
		}
	} else if err := s.checkOtherVoter(s.id.ID, "hand leadership over: %s is the cluster's only voter"); err != nil {
		return nil, err
	}
	if err := s.node.TransferLeadership(ctx, id, addr); err != nil {
		return nil, err
	}
	return &concordv1.TransferLeaderResponse{Header: s.header(s.fsm.AppliedIndex()), Leader: s.awaitOtherLeader(ctx)}, nil
}

// awaitOtherLeader returns the leader that succeeded this member. Raft ends
// a transfer once the target has started its election; this member learns
// the winner from its first contact, which it waits for up to an election
// timeout. It returns "" if none is known by then.
func (s *Server) awaitOtherLeader(ctx context.Context) string {
	deadline := time.NewTimer(s.cfg.Raft.ElectionTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if id, _ := s.node.Leader(); id != "" && id != s.id.ID {
			return id
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			id, _ := s.node.Leader()
			return id
		case <-ctx.Done():
			return ""
		}
	}
}

// Snapshot writes a consistent copy of the state machine to w, after a
// linearizable barrier so it holds every write acknowledged before the
// call. It returns the snapshot's index.
func (s *Server) Snapshot(ctx context.Context, w io.Writer) (uint64, error) {
	if err := s.barrier(ctx, concordv1.Consistency_CONSISTENCY_LINEARIZABLE, 0); err != nil {
		return 0, err
	}
	c := s.fsm.CaptureState()
	if _, err := c.WriteTo(w); err != nil {
		return 0, err
	}
	return c.Index(), nil
}

// Hash returns the applied index and the state machine's hash at it.
func (s *Server) Hash(ctx context.Context) (uint64, string, error) {
	return s.fsm.Hash()
}

// CompactLog takes a Raft snapshot now, truncating the log.
func (s *Server) CompactLog(ctx context.Context) error { return s.node.Snapshot(ctx) }

// maxPeerAddrBytes bounds a member's peer address (a DNS name is at most
// 253 bytes, and a port).
const maxPeerAddrBytes = 260

// checkPeerAddr refuses a peer address no member could listen on.
func checkPeerAddr(addr string) error {
	if len(addr) > maxPeerAddrBytes {
		return errs.Wrapf(ErrInvalidArgument, "peer address %s is over %d bytes", clip(addr), maxPeerAddrBytes)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errs.Wrapf(ErrInvalidArgument, "peer address %s: want host:port", clip(addr))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return errs.Wrapf(ErrInvalidArgument, "peer address %s: port %s is not 1 to 65535", clip(addr), clip(port))
	}
	if host == "" {
		return errs.Wrapf(ErrInvalidArgument, "peer address %s has no host", clip(addr))
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return errs.Wrapf(ErrInvalidArgument, "peer address %s: %s is not an address others can reach", clip(addr), host)
	}
	return nil
}

// sameEndpoint returns the member whose peer address reaches the same
// socket as addr: the same port, and the same host or hosts that resolve
// to a common address. Lookups share one deadline of 2 s; a host that does
// not resolve (yet: a member added before its DNS record exists) is
// compared by name only.
func sameEndpoint(ctx context.Context, servers []raftnode.Server, addr string) (raftnode.Server, bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return raftnode.Server{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var ips []net.IPAddr
	resolved := false
	for _, sv := range servers {
		h, p, err := net.SplitHostPort(sv.Addr)
		if err != nil || !samePort(p, port) {
			continue
		}
		if strings.EqualFold(h, host) {
			return sv, true
		}
		if !resolved {
			ips, _ = net.DefaultResolver.LookupIPAddr(ctx, host)
			resolved = true
		}
		theirs, err := net.DefaultResolver.LookupIPAddr(ctx, h)
		if err != nil {
			continue
		}
		for _, x := range ips {
			for _, y := range theirs {
				if x.IP.Equal(y.IP) {
					return sv, true
				}
			}
		}
	}
	return raftnode.Server{}, false
}

func samePort(a, b string) bool {
	x, err1 := strconv.Atoi(a)
	y, err2 := strconv.Atoi(b)
	return err1 == nil && err2 == nil && x == y
}

// checkOtherVoter refuses, with msg (naming id), a change that needs a
// voter besides id.
func (s *Server) checkOtherVoter(id, msg string) error {
	servers, err := s.node.Configuration()
	if err != nil {
		return err
	}
	for _, sv := range servers {
		if sv.Voter && sv.ID != id {
			return nil
		}
	}
	return errs.Wrapf(ErrInvalidArgument, msg, id)
}

// clip quotes s for an error message, cut to 64 bytes: an error must not
// echo a multi-megabyte input back.
func clip(s string) string {
	const most = 64
	if len(s) <= most {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(s[:most]), len(s))
}
