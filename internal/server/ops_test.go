package server_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/daemon"
	"github.com/concord-dev/concord/internal/testcluster"
)

// A new member whose first start failed once it had resolved its identity
// (here Raft's dir cannot be created: a file is in its place) left
// member.json behind. The next start, with the cause removed, found
// member.json, took the member for a restarted one, skipped the bootstrap
// and ran with an empty Raft configuration: it never elected a leader.
// member.json is now written only once Raft has opened and bootstrapped,
// so the retry bootstraps and leads.
func TestFailedFirstStartCanBeRetried(t *testing.T) {
	ip := "127.0.0.1"
	cfg := config.Server{
		Name:         "solo",
		DataDir:      filepath.Join(t.TempDir(), "solo"),
		ListenClient: fmt.Sprintf("%s:%d", ip, testcluster.FreePort(t, ip)),
		ListenPeer:   fmt.Sprintf("%s:%d", ip, testcluster.FreePort(t, ip)),
		Raft:         config.Raft{HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond},
	}
	require.NoError(t, os.MkdirAll(cfg.DataDir, 0o750))
	raftDir := filepath.Join(cfg.DataDir, "raft")
	require.NoError(t, os.WriteFile(raftDir, nil, 0o640))
	_, err := daemon.Start(context.Background(), cfg, daemon.Options{})
	require.Error(t, err, "Raft's dir is a file")
	t.Logf("first start: %v", err)
	require.NoFileExists(t, filepath.Join(cfg.DataDir, "member.json"), "a failed start stored the member's identity")

	require.NoError(t, os.Remove(raftDir))
	d, err := daemon.Start(context.Background(), cfg, daemon.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { d.Kill() })
	require.Eventually(t, func() bool { return d.Server().Ready() }, 10*time.Second, 50*time.Millisecond,
		"the member never got a leader after a failed first start")
	require.FileExists(t, filepath.Join(cfg.DataDir, "member.json"))
}
