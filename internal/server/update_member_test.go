package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/daemon"
	"github.com/concord-dev/concord/internal/testcluster"
)

// A member moved to a new peer address keeps its ID, its vote and its data:
// stopped, updated with `cluster update-peer`, and started on its data dir
// at the new address, it takes part again. Before UpdateMember, a member
// restarted on a new address was never reached there, and the only way
// was a remove and an add with an empty data dir.
func TestUpdateMemberMovesAFollowerToANewPeerAddress(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	cl := c.Client()
	leader := c.WaitLeader(10 * time.Second)
	f := (leader + 1) % 3
	m := c.Members[f]
	id := m.Daemon().Server().ID()
	c.Stop(f)

	newPeer := fmt.Sprintf("%s:%d", m.IP, testcluster.FreePort(t, m.IP))
	moved, err := cl.UpdateMember(ctx, m.Name, newPeer)
	require.NoError(t, err)
	require.Equal(t, id, moved.GetId())
	require.Equal(t, newPeer, moved.GetPeerAddr())
	again, err := cl.UpdateMember(ctx, id, newPeer)
	require.NoError(t, err, "moving a member to the address it has is a no-op")
	require.Equal(t, newPeer, again.GetPeerAddr())

	_, err = cl.Put(ctx, "after-move", []byte("v"))
	require.NoError(t, err)
	cfg := m.Cfg
	cfg.ListenPeer, cfg.AdvertisePeer = newPeer, newPeer
	// --initial-cluster is checked at every start: the member's entry
	// moves with it.
	cfg.InitialCluster = append([]config.Peer(nil), cfg.InitialCluster...)
	for i := range cfg.InitialCluster {
		if cfg.InitialCluster[i].Name == m.Name {
			cfg.InitialCluster[i].Addr = newPeer
		}
	}
	d, err := daemon.Start(ctx, cfg, daemon.Options{})
	require.NoError(t, err)
	t.Cleanup(d.Kill)
	require.Equal(t, id, d.Server().ID())

	// The moved member applies what was written while it was away, and
	// votes: with the third member stopped, the cluster still commits.
	st, err := cl.Status(ctx)
	require.NoError(t, err)
	target := st.GetHeader().GetRevision()
	require.Eventually(t, func() bool {
		s, err := client4(t, d).Status(ctx)
		return err == nil && s.GetAppliedIndex() >= target
	}, 20*time.Second, 50*time.Millisecond, "the moved member did not catch up")
	other := 3 - leader - f
	c.Stop(other)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = cl.Put(wctx, "with-the-moved-member's-vote", []byte("v"))
	require.NoError(t, err, "the moved member does not vote")
	st, err = cl.Status(ctx)
	require.NoError(t, err)
	for _, mb := range st.GetMembers() {
		if mb.GetId() == id {
			require.Equal(t, newPeer, mb.GetPeerAddr())
		}
	}
}

// Bad UpdateMember requests are refused with a typed error, and change
// nothing.
func TestUpdateMemberRefusals(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 30*time.Second)
	cl := c.Client()
	leader := c.WaitLeader(10 * time.Second)
	f := (leader + 1) % 3
	before, err := cl.Status(ctx)
	require.NoError(t, err)

	_, err = cl.UpdateMember(ctx, c.Members[leader].Name, fmt.Sprintf("127.0.0.9:%d", testcluster.FreePort(t, "127.0.0.9")))
	require.ErrorIs(t, err, client.ErrInvalidArgument, "the leader's address cannot move")
	_, err = cl.UpdateMember(ctx, c.Members[f].Name, c.Members[leader].Cfg.AdvertisePeer)
	require.ErrorIs(t, err, client.ErrMemberExists, "two members at one address")
	_, err = cl.UpdateMember(ctx, "nobody", "127.0.0.9:7000")
	require.ErrorIs(t, err, client.ErrNotFound)
	_, err = cl.UpdateMember(ctx, "", "127.0.0.9:7000")
	require.ErrorIs(t, err, client.ErrInvalidArgument)
	for _, bad := range []string{"", "127.0.0.9", "0.0.0.0:7000", "127.0.0.9:0", "127.0.0.9:70000"} {
		_, err = cl.UpdateMember(ctx, c.Members[f].Name, bad)
		require.ErrorIs(t, err, client.ErrInvalidArgument, "peer address %q", bad)
	}
	after, err := cl.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, len(before.GetMembers()), len(after.GetMembers()))
	for i, mb := range before.GetMembers() {
		require.Equal(t, mb.GetPeerAddr(), after.GetMembers()[i].GetPeerAddr(), "a refused update changed %s", mb.GetId())
	}
}
