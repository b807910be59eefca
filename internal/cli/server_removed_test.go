package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/internal/testcluster"
)

// `concord server` for a member that was removed stops by itself and exits
// 0, the stop the removal asked for, so that a supervisor with
// Restart=on-failure leaves it stopped.
func TestServerOfARemovedMemberExitsZero(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ip := "127.0.0.4"
	peer := fmt.Sprintf("%s:%d", ip, testcluster.FreePort(t, ip))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.Client()
	_, err := cl.AddMember(ctx, "n4", peer)
	require.NoError(t, err)
	done := make(chan error, 1)
	out := &lockedBuffer{}
	go func() {
		root := NewRoot(strings.NewReader(""), out, out)
		root.SetArgs([]string{"server", "--name", "n4", "--data-dir", filepath.Join(t.TempDir(), "n4"),
			"--listen-client", fmt.Sprintf("%s:%d", ip, testcluster.FreePort(t, ip)), "--listen-peer", peer,
			"--join", strings.Join(c.Endpoints(), ","), "--heartbeat-timeout", "300ms", "--election-timeout", "300ms",
			"--log-format", "text", "--log-level", "warn"})
		done <- root.ExecuteContext(ctx)
	}()
	require.Eventually(t, func() bool {
		st, err := cl.Status(ctx)
		if err != nil {
			return false
		}
		for _, m := range st.GetMembers() {
			if m.GetName() == "n4" {
				return m.GetRole() == "follower"
			}
		}
		return false
	}, 30*time.Second, 50*time.Millisecond, "n4 was not promoted:\n%s", out)
	require.NoError(t, cl.RemoveMember(ctx, "n4"))
	select {
	case err := <-done:
		require.NoError(t, err, out.String())
		require.Contains(t, out.String(), "removed from the cluster")
	case <-time.After(30 * time.Second):
		t.Fatalf("the removed member did not stop:\n%s", out)
	}
}

// `concord cluster update-peer` moves a stopped follower and refuses the
// leader, with the hint to transfer leadership.
func TestClusterUpdatePeer(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	leader := c.WaitLeader(10 * time.Second)
	f := (leader + 1) % 3
	c.Stop(f)
	eps := strings.Join([]string{c.Members[leader].Cfg.ListenClient}, ",")
	m := c.Members[f]
	newPeer := fmt.Sprintf("%s:%d", m.IP, testcluster.FreePort(t, m.IP))
	out, err := runCLI(t, "--endpoints", eps, "cluster", "update-peer", m.Name, newPeer)
	require.NoError(t, err, out)
	require.Contains(t, out, "moved "+m.Name)
	require.Contains(t, out, newPeer)
	out, err = runCLI(t, "--endpoints", eps, "--json", "cluster", "members")
	require.NoError(t, err, out)
	require.Contains(t, out, newPeer)
	out, err = runCLI(t, "--endpoints", eps, "cluster", "update-peer", c.Members[leader].Name, newPeer)
	require.Error(t, err)
	require.Contains(t, out+err.Error(), "transfer-leader")
}
