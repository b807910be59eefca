package cli

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
)

// The bearer tokens taken from CONCORD_TOKEN (client verbs) and
// CONCORD_AUTH_TOKEN (`concord server`) were the flags' defaults, so
// every --help printed the secret. The flags now default to "" and the
// environment is read when they are not given.
func TestHelpDoesNotPrintBearerTokensFromTheEnvironment(t *testing.T) {
	t.Setenv("CONCORD_TOKEN", "s3cret-client")
	t.Setenv("CONCORD_AUTH_TOKEN", "s3cret-server")
	for _, args := range [][]string{{"kv", "get", "--help"}, {"server", "--help"}, {"--help"}} {
		out, _, err := run(t, args...)
		require.NoError(t, err)
		require.Contains(t, out, "--token", "concord %v", args)
		require.NotContains(t, out, "s3cret", "concord %v printed a bearer token from the environment", args)
	}
}

// The tokens still come from the environment when the flags are not
// given: the member requires CONCORD_AUTH_TOKEN, the client sends
// CONCORD_TOKEN, and --token overrides it.
func TestBearerTokensComeFromTheEnvironment(t *testing.T) {
	t.Setenv("CONCORD_AUTH_TOKEN", "s3cret")
	addr := startMember(t) // no --auth-token: CONCORD_AUTH_TOKEN
	t.Setenv("CONCORD_AUTH_TOKEN", "")
	_, _, err := run(t, "kv", "ls", "--endpoints", addr)
	require.ErrorIs(t, err, client.ErrUnauthenticated, "the member did not take CONCORD_AUTH_TOKEN")
	t.Setenv("CONCORD_TOKEN", "s3cret")
	_, _, err = run(t, "kv", "ls", "--endpoints", addr)
	require.NoError(t, err, "the client did not send CONCORD_TOKEN")
	_, _, err = run(t, "kv", "ls", "--endpoints", addr, "--token", "wrong")
	require.ErrorIs(t, err, client.ErrUnauthenticated, "--token did not override CONCORD_TOKEN")
}
