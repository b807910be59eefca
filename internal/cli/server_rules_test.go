package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/fsm"
	"github.com/concord-dev/concord/internal/testcluster"
)

// `concord server` of a build that applies rules up to 1, joining a
// cluster at the build's rules version, stops at the raise in the log it catches up
// on and exits non-zero, saying to upgrade its binary. `concord cluster
// status` shows the cluster's rules version and its ID.
func TestServerOfAnOlderBuildExitsNonZeroAtNewerRules(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	out, err := runCLI(t, "--endpoints", strings.Join(c.Endpoints(), ","), "cluster", "status")
	require.NoError(t, err, out)
	require.Contains(t, out, fmt.Sprintf("rules version: %d", fsm.MaxRulesVersion))
	require.Regexp(t, "cluster ID: [0-9a-f]{32}\n", out)

	testConfigure = func(cfg *config.Server) { cfg.MaxRulesVersion = fsm.BaselineRulesVersion }
	t.Cleanup(func() { testConfigure = nil })
	ip := "127.0.0.4"
	peer := fmt.Sprintf("%s:%d", ip, testcluster.FreePort(t, ip))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err = c.Client().AddMember(ctx, "n4", peer)
	require.NoError(t, err)
	done := make(chan error, 1)
	logs := &lockedBuffer{}
	go func() {
		root := NewRoot(strings.NewReader(""), logs, logs)
		root.SetArgs([]string{"server", "--name", "n4", "--data-dir", filepath.Join(t.TempDir(), "n4"),
			"--listen-client", fmt.Sprintf("%s:%d", ip, testcluster.FreePort(t, ip)), "--listen-peer", peer,
			"--join", strings.Join(c.Endpoints(), ","), "--heartbeat-timeout", "300ms", "--election-timeout", "300ms",
			"--log-format", "text", "--log-level", "warn"})
		done <- root.ExecuteContext(ctx)
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, fsm.ErrRulesTooNew, logs.String())
		require.ErrorContains(t, err, "upgrade its binary")
		require.Contains(t, logs.String(), "upgrade this member's binary")
	case <-time.After(30 * time.Second):
		t.Fatalf("the member of an older build did not stop:\n%s", logs)
	}
}
