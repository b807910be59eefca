package cli

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
)

// `lock release` defined its own --token (the grant's fencing token, a
// uint), which shadowed the global bearer --token: on a cluster with
// --auth-token, `concord --token SECRET lock release NAME --force` failed
// to parse "SECRET", and the bearer token could only come from
// CONCORD_TOKEN. The grant's token is now --lock-token, and the global
// --token reaches the cluster.
func TestLockReleaseTakesTheBearerTokenAndLockToken(t *testing.T) {
	addr := startMember(t, "--auth-token", "s3cret")
	_, _, err := run(t, "lock", "release", "x", "--force", "--endpoints", addr)
	require.ErrorIs(t, err, client.ErrUnauthenticated, "the member does not require the token")
	// Authenticated, the release reaches the cluster and finds the lock free.
	_, _, err = run(t, "--token", "s3cret", "lock", "release", "x", "--force", "--endpoints", addr)
	require.ErrorIs(t, err, client.ErrNotHeld)
	_, _, err = run(t, "--token", "s3cret", "lock", "release", "x", "--force", "--lock-token", "7", "--endpoints", addr)
	require.ErrorIs(t, err, client.ErrNotHeld)
}
