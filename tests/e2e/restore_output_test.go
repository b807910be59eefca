package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
