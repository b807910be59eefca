package cli

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// `cluster transfer-leader --json` ignored --json and printed "leader is
// now ...". It now prints {"leader": ...}.
func TestClusterTransferLeaderHonoursJSON(t *testing.T) {
	addr := startMember(t, "--name", "n1")
	out, _, err := run(t, "cluster", "transfer-leader", "n1", "--json", "--endpoints", addr) // already the leader
	require.NoError(t, err)
	var m map[string]string
	require.NoError(t, json.Unmarshal([]byte(out), &m), "cluster transfer-leader --json printed:\n%s", out)
	require.NotEmpty(t, m["leader"], out)
}

// The command `cluster add` printed to start the new member gave --name,
// --listen-peer and --join but neither --data-dir nor --listen-client:
// copied as it was, it started the member on the defaults, which on the
// same host are another member's. It now has placeholders for both.
func TestClusterAddHintHasDataDirAndClientAddress(t *testing.T) {
	addr := startMember(t, "--name", "n1")
	peer := freeAddr(t)
	out, _, err := run(t, "cluster", "add", "n2", peer, "--endpoints", addr)
	require.NoError(t, err)
	require.Contains(t, out, "concord server --name n2 --data-dir DATA_DIR --listen-peer "+peer+" --listen-client CLIENT_ADDR --join "+addr, out)
}
