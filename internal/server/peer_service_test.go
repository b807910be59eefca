package server

import (
	"context"
	"path/filepath"
	"testing"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/internal/config"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
)

// Start serves the peer port before it opens Raft (which may replay a
// long log or restore a snapshot first), and the members that know no
// leader ask every voter for the removal check meanwhile. NodeStatus with
// removal_of read the member's Raft node before it was set: a nil
// dereference in the handler (and a data race with Start). It now answers
// UNAVAILABLE until Raft is open, which the asker takes for no answer.
func TestNodeStatusForTheRemovalCheckBeforeRaftOpens(t *testing.T) {
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
}
