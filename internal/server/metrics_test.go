package server_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/internal/testcluster"
)

// concord_raft_leader_changes_total counts the leaders a member comes to
// know: one failover is one change, on every member that sees it, not two
// (the old leader lost, then the new one found), which doubled the rate
// operators alert on.
func TestLeaderChangesCountOncePerNewLeader(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	old := c.WaitLeader(5 * time.Second)
	survivors := []int{(old + 1) % 3, (old + 2) % 3}
	before := map[int]float64{}
	for _, i := range survivors {
		before[i] = metric(t, c.Members[i], "concord_raft_leader_changes_total")
	}
	oldTerm := metric(t, c.Members[old], "concord_raft_term")
	c.Kill(old)
	leader := c.WaitNewLeader(old, 10*time.Second)
	term := metric(t, c.Members[leader], "concord_raft_term")
	require.Greater(t, term, oldTerm)
	for _, i := range survivors {
		// A member at the new leader's term that knows a leader knows
		// the new one.
		require.Eventually(t, func() bool {
			return metric(t, c.Members[i], "concord_raft_term") == term && metric(t, c.Members[i], "concord_raft_has_leader") == 1
		}, 10*time.Second, 10*time.Millisecond)
	}
	// Each new leader has a term of its own: a member counts at most one
	// change per term, at least the one it saw. (Usually one failover,
	// one term: the double count showed as 2 there; if another election
	// followed, the bound is its term.)
	for _, i := range survivors {
		// Changes first: a term read after them covers every change read.
		changes := metric(t, c.Members[i], "concord_raft_leader_changes_total") - before[i]
		terms := metric(t, c.Members[i], "concord_raft_term") - oldTerm
		require.GreaterOrEqual(t, changes, 1.0, "member %d", i)
		require.LessOrEqual(t, changes, terms, "member %d counted %v leader changes over %v new terms", i, changes, terms)
	}
}
