package e2e

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Two members restored from one backup with different --bump-ids: the one
// started second finds the first seeded unlike itself, and `concord server`
// exits non-zero naming the seeds and the flags to give alike.
func TestServerSeededUnlikeAVoterExitsNonZero(t *testing.T) {
	c := startCluster(t, 1)
	cl := newClient(t, c.endpoints())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := cl.CreateTag(ctx, "orders", 1, 10)
	require.NoError(t, err)
	backup := filepath.Join(t.TempDir(), "backup.snap")
	out, code := run(t, "cluster", "snapshot", "save", backup, "--endpoints", c.endpoints()[0])
	require.Zero(t, code, out)

	base := t.TempDir()
	ip := "127.0.0.9"
	p1, p2 := ip+":"+freePort(t, ip), ip+":"+freePort(t, ip)
	initial := "r1=" + p1 + ",r2=" + p2
	args := func(name, peer, bumpIDs string) []string {
		return []string{"--name", name, "--data-dir", filepath.Join(base, name), "--initial-cluster", initial, "--bump-ids", bumpIDs}
	}
	out, code = run(t, append([]string{"snapshot", "restore", backup}, args("r1", p1, "1000")...)...)
	require.Zero(t, code, out)
	out, code = run(t, append([]string{"snapshot", "restore", backup}, args("r2", p2, "0")...)...)
	require.Zero(t, code, out)

	r2 := &proc{name: "r2", dir: filepath.Join(base, "r2"), args: []string{"server", "--name", "r2", "--data-dir", filepath.Join(base, "r2"),
		"--listen-client", ip + ":" + freePort(t, ip), "--listen-peer", p2, "--initial-cluster", initial}}
	c.procs = append(c.procs, r2)
	c.start(r2)
	require.Eventually(t, func() bool {
		conn, err := net.DialTimeout("tcp", p2, time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil
	}, 20*time.Second, 50*time.Millisecond, "r2 never listened")

	cmd := exec.CommandContext(ctx, binary, "server", "--name", "r1", "--data-dir", filepath.Join(base, "r1"),
		"--listen-client", ip+":"+freePort(t, ip), "--listen-peer", p1, "--initial-cluster", initial)
	b, err := cmd.CombinedOutput()
	require.NoError(t, ctx.Err(), "r1, seeded unlike r2, kept running:\n%s", b)
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "r1 exited 0:\n%s", b)
	require.NotZero(t, ee.ExitCode())
	require.Contains(t, string(b), "restored with different states")
	require.Contains(t, string(b), "--bump-ids")
}
