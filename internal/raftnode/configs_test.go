package raftnode

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// LogConfigurations returns the newest configuration and the one before
// it, which a leader appends a change only once it is committed.
func TestLogConfigurations(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	addr := ln.Addr().String()
	n, err := Open(Config{
		ID: "n1", Dir: t.TempDir(), Advertise: addr, Streams: tcpStreams{ln},
		Bootstrap:        []Server{{ID: "n1", Addr: addr, Voter: true}},
		HeartbeatTimeout: 50 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond,
	}, nopFSM{})
	require.NoError(t, err)
	defer n.Shutdown()
	require.Eventually(t, n.IsLeader, 5*time.Second, 10*time.Millisecond)

	latest, committed, err := n.LogConfigurations()
	require.NoError(t, err)
	require.Equal(t, uint64(1), latest.Index, "the bootstrap configuration")
	require.Equal(t, latest, committed, "the bootstrap configuration alone is committed")
	require.True(t, latest.Lists("n1"))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Learners at addresses nobody serves: a change commits on n1 alone.
	require.NoError(t, n.AddNonvoter(ctx, "n2", "127.0.0.1:1"))
	latest, committed, err = n.LogConfigurations()
	require.NoError(t, err)
	require.True(t, latest.Lists("n2"))
	require.False(t, committed.Lists("n2"), "the configuration before n2's addition")
	require.Equal(t, uint64(1), committed.Index)
	require.Greater(t, latest.Index, committed.Index)

	require.NoError(t, n.AddNonvoter(ctx, "n3", "127.0.0.1:2"))
	added := latest
	latest, committed, err = n.LogConfigurations()
	require.NoError(t, err)
	require.Equal(t, added, committed)
	require.True(t, latest.Lists("n3"))
	require.True(t, committed.Lists("n2"))
	require.False(t, committed.Lists("n3"))

	require.NoError(t, n.RemoveServer(ctx, "n2"))
	latest, _, err = n.LogConfigurations()
	require.NoError(t, err)
	require.False(t, latest.Lists("n2"))
	require.True(t, latest.Lists("n3"))
	servers, err := n.Configuration()
	require.NoError(t, err)
	require.Equal(t, servers, latest.Servers, "the newest configuration is the one Raft uses")
}
