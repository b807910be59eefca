package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDefaultsValidate(t *testing.T) {
	var c Server
	c.SetDefaults()
	require.NoError(t, c.Validate())
	require.Equal(t, "127.0.0.1:7070", c.ListenClient)
	require.Equal(t, []Peer{{Name: "default", Addr: "127.0.0.1:7080"}}, c.InitialCluster)
}

func TestParseInitialCluster(t *testing.T) {
	got, err := ParseInitialCluster("n2=127.0.0.2:7080, n1=127.0.0.1:7080")
	require.NoError(t, err)
	require.Equal(t, []Peer{{"n1", "127.0.0.1:7080"}, {"n2", "127.0.0.2:7080"}}, got)
	_, err = ParseInitialCluster("n1")
	require.Error(t, err)
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Server{Name: "bad name", ListenPeer: "nope", InitialCluster: []Peer{{"a", "1.2.3.4:1"}, {"a", "x"}}}
	c.SetDefaults()
	err := c.Validate()
	require.Error(t, err)
	for _, want := range []string{"--name", "--listen-peer", "appears twice", "does not list this member"} {
		require.ErrorContains(t, err, want)
	}
}

// A negative bound would refuse everything it bounds; it is refused at
// start-up, flag by flag.
func TestNegativeLimitsAreRefused(t *testing.T) {
	var c Server
	c.Limits = Limits{MaxSessions: -1, MaxLocks: -1, MaxIDObjects: -3, MaxSegmentStep: -1, MaxIDsPerCall: -5, MaxKeys: -1, QuotaBytes: -1, MaxWatches: -2}
	c.SetDefaults()
	err := c.Validate()
	require.Error(t, err)
	for _, want := range []string{"--max-sessions -1", "--max-locks -1", "--max-id-objects -3", "--max-segment-step -1",
		"--max-ids-per-call -5", "--max-keys -1", "--quota-bytes -1", "--max-watches -2"} {
		require.ErrorContains(t, err, want)
	}
}
