package server

import (
	"testing"

	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
	"github.com/concord-dev/concord/internal/raftnode"
)

// removedBy concludes a removal only from the leader's committed
// configuration (its commit index reaches the configuration's index, or
// covers the log), no older than the member's own, that leaves the member
// out, and only for a member whose ID the leader holds retired (every
// removal retires the ID first; a learner removed before its promotion
// too).
func TestRemovedByProvesTheRemoval(t *testing.T) {
	four := []raftnode.Server{{ID: "n1", Voter: true}, {ID: "n2", Voter: true}, {ID: "n3", Voter: true}, {ID: "n4", Voter: true}}
	learner := []raftnode.Server{{ID: "n1", Voter: true}, {ID: "n2", Voter: true}, {ID: "n3", Voter: true}, {ID: "n4"}}
	three := []raftnode.Server{{ID: "n1", Voter: true}, {ID: "n2", Voter: true}, {ID: "n3", Voter: true}}
	latest := raftnode.Configuration{Index: 20, Servers: four}
	committed := raftnode.Configuration{Index: 12, Servers: learner}
	members := func(ids ...string) []*concordv1.Member {
		var out []*concordv1.Member
		for _, id := range ids {
			role := "follower"
			if id == "n1" {
				role = "leader"
			}
			out = append(out, &concordv1.Member{Id: id, Name: id, Role: role})
		}
		return out
	}
	leader := func(commit, last uint64, ids ...string) *concordv1.StatusResponse {
		ms := members(ids...)
		return &concordv1.StatusResponse{
			State: "Leader", LeaderId: "n1", Self: ms[0], Members: ms,
			CommitIndex: commit, LastLogIndex: last, AppliedIndex: commit,
		}
	}
	answer := func(st *concordv1.StatusResponse, retired bool, configIndex uint64) *internalv1.NodeStatusResponse {
		return &internalv1.NodeStatusResponse{Status: st, Retired: retired, ConfigurationIndex: configIndex}
	}
	removed := leader(25, 25, "n1", "n2", "n3")
	require.True(t, removedBy("n4", latest, committed, answer(removed, true, 0)))
	// Every removal retires the ID first: a leader that does not hold it
	// retired may be one of another cluster, bootstrapped afresh at a
	// voter's address with the same IDs and the same empty seed.
	require.False(t, removedBy("n4", latest, committed, answer(removed, false, 0)), "not retired")
	// A busy leader's commit index trails its log: its configuration,
	// at index 22, is committed all the same.
	busy := leader(25, 26, "n1", "n2", "n3")
	require.True(t, removedBy("n4", latest, committed, answer(busy, true, 22)))
	require.True(t, removedBy("n4", latest, committed, answer(busy, true, 25)))
	require.False(t, removedBy("n4", latest, committed, answer(busy, true, 26)), "its configuration is not committed")
	require.False(t, removedBy("n4", latest, committed, answer(leader(19, 26, "n1", "n2", "n3"), true, 18)), "the leader is behind")
	// A learner stopped before its promotion, its addition its newest
	// configuration, then removed: its ID is retired.
	added := raftnode.Configuration{Index: 20, Servers: learner}
	before := raftnode.Configuration{Index: 12, Servers: three}
	require.True(t, removedBy("n4", added, before, answer(removed, true, 0)))

	follower := leader(25, 25, "n1", "n2", "n3")
	follower.State, follower.Self = "Follower", follower.Members[1]
	stale := leader(25, 25, "n1", "n2", "n3")
	stale.LeaderId = ""
	notInItsOwn := leader(25, 25, "n1", "n2", "n3")
	notInItsOwn.Self = &concordv1.Member{Id: "n1", Role: "removed"}
	for name, tc := range map[string]struct {
		latest, committed raftnode.Configuration
		st                *concordv1.StatusResponse
		// retiredProves: the ID's retirement would prove the removal
		// (checked above); none of the others proves it even so.
		retiredProves bool
	}{
		// The leader lists the member: it is a member.
		"listed": {latest, committed, leader(25, 25, "n1", "n2", "n3", "n4"), false},
		// A leader behind the member's configuration (a stale leader cut
		// off from the others, a cluster that lost writes) may not have
		// the member's addition yet.
		"leader behind":             {latest, committed, leader(19, 19, "n1", "n2", "n3"), false},
		"leader behind commit only": {latest, committed, leader(19, 25, "n1", "n2", "n3"), false},
		// A configuration the leader has not committed yet may be lost.
		"uncommitted": {latest, committed, leader(25, 26, "n1", "n2", "n3"), false},
		// Only the leader's answer counts.
		"follower":                 {latest, committed, follower, false},
		"no leader":                {latest, committed, stale, false},
		"leader out of its config": {latest, committed, notInItsOwn, false},
		// A member being added, or whose addition was lost with its
		// leader (and may be resumed under its ID): its membership is
		// not committed.
		"being added": {added, before, removed, true},
		// The retirement of a learner's ID is not enough from a leader
		// that lists it, lags, or has not committed its configuration.
		"learner listed":      {added, before, leader(25, 25, "n1", "n2", "n3", "n4"), false},
		"learner uncommitted": {added, before, leader(25, 26, "n1", "n2", "n3"), false},
		"learner behind":      {added, before, leader(19, 19, "n1", "n2", "n3"), false},
		"learner follower":    {added, before, follower, false},
		// A removal the member applied itself is publishSelf's.
		"already out": {raftnode.Configuration{Index: 30, Servers: three}, latest, removed, false},
		"no log":      {raftnode.Configuration{}, raftnode.Configuration{}, removed, false},
	} {
		t.Run(name, func(t *testing.T) {
			require.False(t, removedBy("n4", tc.latest, tc.committed, answer(tc.st, false, 0)))
			if !tc.retiredProves {
				require.False(t, removedBy("n4", tc.latest, tc.committed, answer(tc.st, true, 0)), "retired")
			}
		})
	}
}
