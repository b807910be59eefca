package testcluster_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/testcluster"
)

// TestStartMovesOffATakenPort: a port FreePort chose can be taken by
// another socket before the member listens on it (CI saw "bind: address
// already in use"); the member then starts on other ports and the cluster
// works.
func TestStartMovesOffATakenPort(t *testing.T) {
	var taken []string
	c := testcluster.Start(t, testcluster.Options{Configure: func(i int, cfg *config.Server) {
		if i != 0 {
			return
		}
		for _, addr := range []string{cfg.ListenClient, cfg.ListenPeer} {
			ln, err := net.Listen("tcp", addr)
			require.NoError(t, err)
			t.Cleanup(func() { ln.Close() })
			taken = append(taken, addr)
		}
	}})
	m := c.Members[0]
	require.NotEqual(t, taken[0], m.Cfg.ListenClient, "the member kept a taken client port")
	require.NotEqual(t, taken[1], m.Cfg.ListenPeer, "the member kept a taken peer port")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := c.Client(0).Put(ctx, "k", []byte("v"))
	require.NoError(t, err)
	c.WaitConverged(10 * time.Second)
}
