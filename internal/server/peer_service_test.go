package server

import (
	"context"
	"path/filepath"
	"testing"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/config"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
	"github.com/concord-dev/concord/internal/raftnode"
)

// Start serves the peer port before it opens Raft (which may replay a
// long log or restore a snapshot first), and the members that know no
// leader ask every voter for the removal check meanwhile. NodeStatus with
// removal_of read the member's Raft node before it was set: a nil
// dereference in the handler (and a data race with Start). It now answers
// UNAVAILABLE until Raft is open, which the asker takes for no answer. The
// calls a leader serves (forwarded proposals, reads, keep-alives, member
// changes) read the node too, and answer NOT_LEADER until then: a
// follower's forwarded call to a member restarting at the leader's
// address panicked in the handler.
func TestPeerCallsBeforeRaftOpens(t *testing.T) {
	s, err := New(config.Server{Name: "n1", DataDir: filepath.Join(t.TempDir(), "n1"),
		ListenClient: "127.0.0.1:7001", ListenPeer: "127.0.0.1:7002",
		InitialCluster: []config.Peer{{Name: "n1", Addr: "127.0.0.1:7002"}}}, Options{})
	require.NoError(t, err)
	p := &peerService{s: s}
	ctx := context.Background()
	plain, err := p.NodeStatus(ctx, connect.NewRequest(&internalv1.NodeStatusRequest{}))
	require.NoError(t, err, "the seed check's question needs no Raft")
	require.Nil(t, plain.Msg.GetStatus())
	_, err = p.NodeStatus(ctx, connect.NewRequest(&internalv1.NodeStatusRequest{RemovalOf: "n4"}))
	require.Equal(t, connect.CodeUnavailable, connect.CodeOf(err), "%v", err)
	// The calls only a leader serves answer NOT_LEADER, as on a follower:
	// they read the Raft node too.
	calls := map[string]func() error{
		"Propose": func() error {
			_, err := p.Propose(ctx, connect.NewRequest(&internalv1.ProposeRequest{}))
			return err
		},
		"ReadIndex": func() error {
			_, err := p.ReadIndex(ctx, connect.NewRequest(&internalv1.ReadIndexRequest{}))
			return err
		},
		"KeepAlive": func() error {
			_, err := p.KeepAlive(ctx, connect.NewRequest(&internalv1.PeerKeepAliveRequest{}))
			return err
		},
		"AddMember": func() error {
			_, err := p.AddMember(ctx, connect.NewRequest(&concordv1.AddMemberRequest{}))
			return err
		},
		"TransferLeader": func() error {
			_, err := p.TransferLeader(ctx, connect.NewRequest(&concordv1.TransferLeaderRequest{}))
			return err
		},
	}
	for name, call := range calls {
		err := call()
		require.Equal(t, connect.CodeUnavailable, connect.CodeOf(err), "%s: %v", name, err)
		require.ErrorContains(t, err, raftnode.ErrNotLeader.Error(), name)
	}
}
