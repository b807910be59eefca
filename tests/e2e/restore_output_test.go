package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/internal/fsm"
)

// `concord snapshot restore` printed a log line of Raft's snapshot store
// on stderr before its answer ("2026-11-27 08:51:00.228996 I | INFO
// creating new snapshot component=snapshot path=..."), through the
// process's default logger, on every restore that succeeded. A restore
// that succeeds now prints its answer on stdout and nothing on stderr,
// with and without --json.
func TestSnapshotRestorePrintsOnlyItsAnswer(t *testing.T) {
	var b bytes.Buffer
	_, err := fsm.New(fsm.Config{}).CaptureState().WriteTo(&b)
	require.NoError(t, err)
	backup := filepath.Join(t.TempDir(), "backup.snap")
	require.NoError(t, os.WriteFile(backup, b.Bytes(), 0o600))

	for _, extra := range [][]string{nil, {"--json"}} {
		dir := filepath.Join(t.TempDir(), "d1")
		cmd := exec.Command(binary, append([]string{"snapshot", "restore", backup, "--name", "n1", "--data-dir", dir,
			"--initial-cluster", "n1=127.0.0.1:7081,n2=127.0.0.1:7082,n3=127.0.0.1:7083"}, extra...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		require.NoError(t, cmd.Run(), "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		require.Empty(t, stderr.String(), "snapshot restore %v wrote to stderr", extra)
		if extra == nil {
			require.True(t, strings.HasPrefix(stdout.String(), "restored the backup into "), "stdout:\n%s", stdout.String())
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal(stdout.Bytes(), &m), "stdout:\n%s", stdout.String())
		require.Equal(t, "n1", m["name"])
	}
}

// `concord snapshot restore` of a single member told to "start it with
// the same --name, --data-dir and --initial-cluster", and left out
// --listen-peer: a member started so listened on the default peer address
// while the restored configuration gave it the one of --advertise-peer,
// which nothing served (it warned that the cluster reaches it at another
// address, and a member added later could not reach it). The restore now
// prints the command, and the member started with it (and a client
// address) serves the backup's data at the restored peer address.
func TestSnapshotRestorePrintsAStartCommandThatWorks(t *testing.T) {
	c := startCluster(t, 1)
	cl := newClient(t, c.endpoints())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := cl.Put(ctx, "restored", []byte("yes"))
	require.NoError(t, err)
	backup := filepath.Join(t.TempDir(), "backup.snap")
	out, code := run(t, "cluster", "snapshot", "save", backup, "--endpoints", c.endpoints()[0])
	require.Zero(t, code, out)

	ip := "127.0.0.9"
	peer := ip + ":" + freePort(t, ip)
	dir := filepath.Join(t.TempDir(), "r1")
	out, code = run(t, "snapshot", "restore", backup, "--name", "r1", "--data-dir", dir, "--advertise-peer", peer)
	require.Zero(t, code, out)
	var start []string
	for _, line := range strings.Split(out, "\n") {
		if cmd, ok := strings.CutPrefix(line, "start it with: "); ok {
			start = strings.Fields(cmd)
		}
	}
	require.NotEmpty(t, start, "the restore printed no start command:\n%s", out)
	require.Equal(t, []string{"concord", "server"}, start[:2], "%v", start)
	require.Contains(t, start, "--listen-peer", "%v", start)

	r1 := &proc{name: "r1", dir: dir, client: ip + ":" + freePort(t, ip)}
	r1.args = append(start[1:], "--listen-client", r1.client, "--log-format", "json")
	c.procs = append(c.procs, r1)
	c.start(r1)
	rc := newClient(t, []string{r1.client})
	require.Eventually(t, func() bool {
		kv, err := rc.Get(ctx, "restored")
		return err == nil && string(kv.Value) == "yes"
	}, 30*time.Second, 100*time.Millisecond, "the restored member does not serve the backup")
	st, err := rc.StatusOf(ctx, r1.client)
	require.NoError(t, err)
	require.Len(t, st.GetMembers(), 1)
	require.Equal(t, peer, st.GetMembers()[0].GetPeerAddr())
	conn, err := net.DialTimeout("tcp", peer, 5*time.Second)
	require.NoError(t, err, "nothing serves the restored peer address")
	conn.Close()
	logs, err := os.ReadFile(dir + ".log")
	require.NoError(t, err)
	require.NotContains(t, string(logs), "another peer address", "the member was started at another peer address than the restored one")
}
