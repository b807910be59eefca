package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/internal/fsm"
)

func writeEmptyBackup(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "backup.snap")
	var b bytes.Buffer
	_, err := fsm.New(fsm.Config{}).CaptureState().WriteTo(&b)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b.Bytes(), 0o600))
	return path
}

// A restore that failed after it wrote member.json (here a mistyped
// --raft-log-store, checked only when the Raft dir was opened) left the
// data dir half-seeded: the same command, corrected, was refused
// ("already belongs to a member"), and `concord server` on that dir found
// member.json, did not bootstrap, and never elected a leader. The flags
// are now checked before anything is written, and a seed that fails
// removes what it wrote, so the corrected command succeeds.
func TestFailedRestoreCanBeRetried(t *testing.T) {
	backup := writeEmptyBackup(t)
	dir := filepath.Join(t.TempDir(), "d1")
	_, err := runCLI(t, "snapshot", "restore", backup, "--name", "n1", "--data-dir", dir, "--raft-log-store", "seglgo")
	require.ErrorContains(t, err, "--raft-log-store", "a mistyped --raft-log-store was accepted")
	out, err := runCLI(t, "snapshot", "restore", backup, "--name", "n1", "--data-dir", dir)
	require.NoError(t, err, "the corrected restore was refused:\n%s", out)
	require.FileExists(t, filepath.Join(dir, "member.json"))
}

// `snapshot restore` checked none of what `concord server` checks of
// --name and --initial-cluster: a member listed twice, an invalid name or
// an address that is not host:port was written into the seeded
// configuration, and the data dir was taken. They are now refused, and
// nothing is written.
func TestRestoreValidatesTheInitialCluster(t *testing.T) {
	backup := writeEmptyBackup(t)
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"listed twice":  {[]string{"--name", "n1", "--initial-cluster", "n1=127.0.0.1:7081,n1=127.0.0.1:7082"}, `member "n1" appears twice`},
		"bad address":   {[]string{"--name", "n1", "--initial-cluster", "n1=127.0.0.1:7081,n2=nonsense"}, `member "n2" address "nonsense"`},
		"invalid name":  {[]string{"--name", "n 1", "--initial-cluster", "n 1=127.0.0.1:7081"}, `--name "n 1"`},
		"not listed":    {[]string{"--name", "n3", "--initial-cluster", "n1=127.0.0.1:7081,n2=127.0.0.1:7082"}, "does not list this member"},
		"wildcard peer": {[]string{"--name", "n1", "--advertise-peer", "0.0.0.0:7081", "--initial-cluster", "n1=0.0.0.0:7081,n2=127.0.0.1:7082"}, "--advertise-peer"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "d")
			_, err := runCLI(t, append([]string{"snapshot", "restore", backup, "--data-dir", dir}, tc.args...)...)
			require.ErrorContains(t, err, tc.want)
			require.NoDirExists(t, dir, "a refused restore wrote the data dir")
		})
	}
	// This member's entry of --initial-cluster is its peer address; the
	// default --advertise-peer does not contradict it.
	dir := filepath.Join(t.TempDir(), "d")
	_, err := runCLI(t, "snapshot", "restore", backup, "--data-dir", dir, "--name", "n2", "--initial-cluster", "n1=127.0.0.1:7081,n2=127.0.0.1:7082")
	require.NoError(t, err)
}

// `snapshot restore --json` ignored --json and printed a sentence, which a
// script could not parse. It now prints a JSON object: the revision
// restored, the data dir and the member's name.
func TestSnapshotRestoreHonoursJSON(t *testing.T) {
	backup := writeEmptyBackup(t)
	dir := filepath.Join(t.TempDir(), "d1")
	out, _, err := run(t, "snapshot", "restore", backup, "--name", "n1", "--data-dir", dir, "--json")
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &m), "snapshot restore --json printed:\n%s", out)
	require.Equal(t, dir, m["data_dir"])
	require.Equal(t, "n1", m["name"])
	require.Contains(t, m, "revision")
}
