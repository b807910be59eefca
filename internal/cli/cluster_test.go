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
