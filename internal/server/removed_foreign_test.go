package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/testcluster"
)

// The removal check trusts a leader that names the asked voter's ID, with
// the asking member's seed: every member of a cluster bootstrapped afresh
// has the empty seed, and the usual names (n1, n2, ...) are its IDs, so a
// member of another cluster at a voter's address passes both checks. Here
// n3 of a four-member cluster, which knows no leader (n1 and n4 down, as
// in an election), asks n2's address, now another cluster's n2: that
// cluster's leader does not list n3, and is past n3's configuration. n3
// was never removed, and must not stop: only a leader that holds n3's ID
// retired (every removal retires the ID first) proves a removal.
func TestRemovalCheckIgnoresAnotherClusterAtAVotersAddress(t *testing.T) {
	a := testcluster.Start(t, testcluster.Options{})
	_, d4 := startFourth(t, a) // n3's log: n4's addition, then its promotion
	ctx := ctxT(t, 60*time.Second)
	x := a.Members[2].Daemon().Server()
	st, err := x.Status(ctx)
	require.NoError(t, err)
	xLast := st.GetLastLogIndex()

	for _, i := range []int{0, 1} {
		a.Stop(i)
	}
	require.NoError(t, d4.Stop(ctxT(t, 10*time.Second)))

	// Another cluster, bootstrapped afresh: n1 and n2. Its n2 answers at
	// the address n3 knows for its own cluster's n2.
	b := testcluster.Start(t, testcluster.Options{Size: 2})
	a.Members[1].Proxy.Retarget(b.Members[1].Cfg.ListenPeer)
	cl := b.Client()
	commitPast(t, ctx, cl, xLast)

	require.False(t, x.AskRemoved(ctx), "n3 was never removed: another cluster's leader proves nothing about it")
	select {
	case err := <-a.Members[2].Daemon().Failed():
		t.Fatalf("n3 stopped: %v", err)
	default:
	}
}

// As above, but the other cluster did remove a member n3 of its own, so
// its leader holds the ID n3 retired and does not list it: every check
// but the cluster ID's passes. a's n3 is restarted with its peers down, so
// it has applied nothing of its log again, and only the ID it stored
// (member.json) tells the clusters apart. Without it, n3 stopped as
// removed, though it never was.
func TestRemovalCheckIgnoresAnotherClusterThatRetiredTheID(t *testing.T) {
	a := testcluster.Start(t, testcluster.Options{})
	_, d4 := startFourth(t, a)
	ctx := ctxT(t, 90*time.Second)
	const xi = 2
	st, err := a.Members[xi].Daemon().Server().Status(ctx)
	require.NoError(t, err)
	xLast := st.GetLastLogIndex()
	aID := a.Members[xi].Daemon().Server().FSM().ClusterID()
	require.NotEmpty(t, aID)

	b := testcluster.Start(t, testcluster.Options{})
	bcl := b.Client(0, 1)
	require.NoError(t, bcl.RemoveMember(ctx, "n3"))
	require.Eventually(t, func() bool {
		bs, err := bcl.Status(ctx)
		return err == nil && len(bs.GetMembers()) == 2 && bs.GetLeader() != ""
	}, 30*time.Second, 50*time.Millisecond, "b removes its n3")
	commitPast(t, ctx, bcl, xLast)

	for _, i := range []int{0, 1} {
		a.Stop(i)
	}
	require.NoError(t, d4.Stop(ctxT(t, 10*time.Second)))
	a.Stop(xi)
	a.Members[1].Proxy.Retarget(b.Members[1].Cfg.ListenPeer)
	a.Restart(xi)
	x := a.Members[xi].Daemon().Server()
	require.Empty(t, x.FSM().ClusterID(), "restarted with its peers down, n3 has applied nothing again")

	require.False(t, x.AskRemoved(ctx), "n3 was never removed: a leader of another cluster ID proves nothing about it")
	select {
	case err := <-a.Members[xi].Daemon().Failed():
		t.Fatalf("n3 stopped: %v", err)
	default:
	}
}

// commitPast writes through cl until its cluster's commit index is past
// index: the other cluster's leader is then past the asking member's
// configuration, as a leader must be to prove anything.
func commitPast(t *testing.T, ctx context.Context, cl *client.Client, index uint64) {
	t.Helper()
	for i := 0; ; i++ {
		st, err := cl.Status(ctx)
		require.NoError(t, err)
		if st.GetCommitIndex() > index {
			return
		}
		_, err = cl.Put(ctx, fmt.Sprintf("k%d", i), []byte("v"))
		require.NoError(t, err)
	}
}
