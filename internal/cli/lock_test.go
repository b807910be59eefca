package cli

import (
	"strings"
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

// `lock hold` names its session "lock-hold NAME@host pid N", and a session
// name is at most 256 bytes: a lock name of more than about 220 bytes,
// valid up to --max-key-bytes, was refused with "session name is 5023
// bytes; the limit is 256", a name the user never gave. The label is now
// cut to fit.
func TestLockHoldTakesALongLockName(t *testing.T) {
	addr := startMember(t)
	for _, name := range []string{strings.Repeat("n", 4000), strings.Repeat("é", 200)} {
		out, errOut, err := run(t, "lock", "hold", name, "--endpoints", addr, "--", "true")
		require.NoError(t, err, "lock hold of a %d-byte name: %s%s", len(name), out, errOut)
		out, errOut, err = run(t, "sem", "hold", name+"-sem", "--permits", "2", "--endpoints", addr, "--", "true")
		require.NoError(t, err, "sem hold of a %d-byte name: %s%s", len(name), out, errOut)
	}
}
