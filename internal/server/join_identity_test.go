package server_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/daemon"
	"github.com/concord-dev/concord/internal/testcluster"
)

// A joining member stores the ID `cluster add` gave it (n4-<index>) before
// its Raft opens. For a while (c79375a) it stored it only after, like a
// member of a new cluster: a start that stopped in between (a crash; here
// Raft's dir cannot be created) left no member.json, and the restart
// without --join, as a joined member is restarted, took its bare name as
// ID and was never promoted. A joiner never bootstraps, so storing its ID
// first leaves nothing a retry would skip.
func TestJoinerKeepsItsIDAcrossAStartThatFailedInRaft(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 60*time.Second)
	leader := c.Members[0].Daemon().Server()
	ip := "127.0.0.1"
	peerAddr := fmt.Sprintf("%s:%d", ip, testcluster.FreePort(t, ip))
	// Added, removed and added again: the ID is no longer the bare name.
	_, err := leader.AddMember(ctx, &concordv1.AddMemberRequest{Name: "n4", PeerAddr: peerAddr})
	require.NoError(t, err)
	_, err = leader.RemoveMember(ctx, &concordv1.RemoveMemberRequest{Name: "n4"})
	require.NoError(t, err)
	added, err := leader.AddMember(ctx, &concordv1.AddMemberRequest{Name: "n4", PeerAddr: peerAddr})
	require.NoError(t, err)
	wantID := added.GetMember().GetId()
	require.NotEqual(t, "n4", wantID)

	cfg := config.Server{
		Name: "n4", DataDir: filepath.Join(t.TempDir(), "n4"),
		ListenClient: fmt.Sprintf("%s:%d", ip, testcluster.FreePort(t, ip)), ListenPeer: peerAddr,
		Join: []string{c.Members[0].Cfg.ListenClient}, Raft: c.Members[0].Cfg.Raft, ShutdownTimeout: 5 * time.Second,
	}
	require.NoError(t, os.MkdirAll(cfg.DataDir, 0o750))
	obstacle := filepath.Join(cfg.DataDir, "raft")
	require.NoError(t, os.WriteFile(obstacle, nil, 0o600)) // Raft's dir cannot be made
	_, err = daemon.Start(ctx, cfg, daemon.Options{})
	require.Error(t, err, "Raft could not open")
	require.NoError(t, os.Remove(obstacle))

	cfg.Join = nil // restarted as a joined member is
	d, err := daemon.Start(ctx, cfg, daemon.Options{})
	require.NoError(t, err)
	t.Cleanup(d.Kill)
	require.Equal(t, wantID, d.Server().ID(), "the joined member lost the ID cluster add gave it")
	require.Eventually(t, func() bool {
		st, err := leader.Status(ctx)
		if err != nil {
			return false
		}
		for _, m := range st.GetMembers() {
			if m.GetId() == wantID {
				return m.GetRole() == "follower"
			}
		}
		return false
	}, 20*time.Second, 100*time.Millisecond, "the joined member was never promoted")
}
