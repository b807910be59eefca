package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/fsm"
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
//
// When the other cluster is named, its members refuse n3's calls, which
// name another cluster ID (peer.Mux), and n3 hears no answer at all; when
// it is not (a cluster below rules version 3 has no ID, and takes any
// caller), n3 reads its leader's answer, and only the retirement rule
// tells it apart.
func TestRemovalCheckIgnoresAnotherClusterAtAVotersAddress(t *testing.T) {
	for _, named := range []bool{false, true} {
		t.Run(fmt.Sprintf("other cluster named %v", named), func(t *testing.T) {
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

			// Another cluster, bootstrapped afresh: n1 and n2. Its n2
			// answers at the address n3 knows for its own cluster's n2.
			opts := testcluster.Options{Size: 2}
			if !named {
				opts.Configure = func(_ int, cfg *config.Server) { cfg.MaxRulesVersion = fsm.RulesConversion }
			}
			b := testcluster.Start(t, opts)
			require.Equal(t, named, b.Members[1].Daemon().Server().FSM().ClusterID() != "")
			a.Members[1].Proxy.Retarget(b.Members[1].Cfg.ListenPeer)
			cl := b.Client()
			commitPast(t, ctx, cl, xLast)

			require.False(t, x.AskRemoved(ctx), "n3 was never removed: another cluster's leader proves nothing about it")
			select {
			case err := <-a.Members[2].Daemon().Failed():
				t.Fatalf("n3 stopped: %v", err)
			default:
			}
			refused := metric(t, b.Members[1], "concord_peer_rpc_connections_refused_total")
			if named {
				require.Positive(t, refused, "the other cluster's n2 refused n3's calls")
			} else {
				require.Zero(t, refused, "the unnamed cluster took n3's calls: the retirement rule judged the answer")
			}
		})
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
	// Below the rules version of named RPC calls (it has applied nothing),
	// n3 calls unnamed, b's members take the calls, and only the stored ID
	// refuses b's answer.
	for _, m := range b.Members {
		require.Zero(t, metric(t, m, "concord_peer_rpc_connections_refused_total"), "%s refused n3's calls", m.Cfg.Name)
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
