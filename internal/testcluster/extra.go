package testcluster

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/daemon"
)

// StartExtra starts a member outside the initial cluster (one that joins),
// stopped at the end of the test.
func (c *Cluster) StartExtra(t testing.TB, cfg config.Server) *daemon.Daemon {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = filepath.Join(t.TempDir(), cfg.Name)
	}
	if cfg.Raft.HeartbeatTimeout == 0 {
		cfg.Raft = c.Members[0].Cfg.Raft
	}
	d, err := daemon.Start(context.Background(), cfg, daemon.Options{Logger: c.logger(&Member{Name: cfg.Name})})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.Stop(ctx)
	})
	return d
}
