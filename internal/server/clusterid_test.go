package server_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/internal/fsm"
	"github.com/concord-dev/concord/internal/testcluster"
)

// The first leader at rules version 3 names the cluster with a random ID
// that every member applies, that Status reports, and that neither a
// restart nor a new leader changes. Another cluster gets another.
func TestClusterIsNamedOnce(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	ids := map[string]bool{}
	for _, m := range c.Members {
		st, err := m.Daemon().Server().Status(ctx)
		require.NoError(t, err)
		require.True(t, fsm.ValidClusterID(st.GetClusterId()), "member %s reports %q", m.Cfg.Name, st.GetClusterId())
		ids[st.GetClusterId()] = true
	}
	require.Len(t, ids, 1, "every member applied the same ID")
	var id string
	for k := range ids {
		id = k
	}

	old := c.WaitLeader(10 * time.Second)
	c.Stop(old)
	nl := c.WaitNewLeader(old, 20*time.Second)
	_, err := c.Client(nl).Put(ctx, "k", []byte("v"))
	require.NoError(t, err)
	c.Restart(old)
	c.WaitConverged(20 * time.Second)
	for _, m := range c.Members {
		require.Equal(t, id, m.Daemon().Server().FSM().ClusterID(), "member %s after the restart and the new leader", m.Cfg.Name)
	}

	other := testcluster.Start(t, testcluster.Options{Size: 1})
	require.NotEqual(t, id, other.Members[0].Daemon().Server().FSM().ClusterID())
}

// A member of another cluster at an address this cluster's leader
// replicates to (a follower's, retargeted to the other cluster's one
// member) refuses the leader's Raft streams: neither cluster's leader takes
// part in the other's replication. Without the check, a's leader, of the
// higher term, made b's member its follower (this test then fails on b's
// state) and would overwrite its log.
func TestMemberOfAnotherClusterRefusesRaftStreams(t *testing.T) {
	a := testcluster.Start(t, testcluster.Options{})
	b := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 60*time.Second)
	bcl := b.Client()
	_, err := bcl.Put(ctx, "owner", []byte("b"))
	require.NoError(t, err)
	bsrv := b.Members[0].Daemon().Server()
	bBefore, err := bsrv.Status(ctx)
	require.NoError(t, err)

	// Raise a's term above b's, so that a's leader would win b's member
	// over without the check.
	for a.WaitLeader(10*time.Second) >= 0 {
		st, err := a.Members[a.Leader()].Daemon().Server().Status(ctx)
		require.NoError(t, err)
		if st.GetTerm() > bBefore.GetTerm() {
			break
		}
		old := a.Leader()
		a.Stop(old)
		a.WaitNewLeader(old, 20*time.Second)
		a.Restart(old)
	}
	l := a.WaitLeader(10 * time.Second)
	x := (l + 1) % 3

	a.Stop(x)
	a.Members[x].Proxy.Retarget(b.Members[0].Cfg.ListenPeer)
	acl := a.Client(l)
	for i := 0; i < 50; i++ {
		_, err := acl.Put(ctx, fmt.Sprintf("a%d", i), []byte("a"))
		require.NoError(t, err, "a commits with its two other members")
		time.Sleep(20 * time.Millisecond)
	}

	bAfter, err := bsrv.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, "Leader", bAfter.GetState(), "b's member still leads b")
	require.Equal(t, bBefore.GetTerm(), bAfter.GetTerm(), "a's leader did not raise b's term")
	require.Equal(t, bBefore.GetClusterId(), bAfter.GetClusterId())
	got, err := bcl.Get(ctx, "owner")
	require.NoError(t, err)
	require.NotNil(t, got)
	require.Equal(t, "b", string(got.GetValue()), "b's data is b's")
	_, err = bcl.Put(ctx, "still", []byte("b"))
	require.NoError(t, err)

	// a went on committing with its two other members (the Puts above);
	// its term is not asserted: with one member down, a missed heartbeat
	// on a loaded machine may start an election of its own.
	require.Eventually(t, func() bool { return metric(t, b.Members[0], "concord_peer_raft_streams_refused_total") > 0 },
		10*time.Second, 50*time.Millisecond, "b's member refused a's leader")
}
