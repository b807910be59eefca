package cli

import (
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
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

// The client read only --token and CONCORD_TOKEN, so on a member's host
// whose environment sets CONCORD_AUTH_TOKEN for `concord server` every
// verb was refused. The client now falls back to CONCORD_AUTH_TOKEN when
// CONCORD_TOKEN is unset; CONCORD_TOKEN still wins when both are set.
func TestClientFallsBackToTheServersAuthTokenVariable(t *testing.T) {
	addr := startMember(t, "--auth-token", "s3cret")
	t.Setenv("CONCORD_TOKEN", "")
	t.Setenv("CONCORD_AUTH_TOKEN", "s3cret")
	out, errOut, err := run(t, "kv", "ls", "--endpoints", addr)
	require.NoError(t, err, "CONCORD_AUTH_TOKEN was not sent: %s%s", out, errOut)
	t.Setenv("CONCORD_TOKEN", "wrong")
	_, _, err = run(t, "kv", "ls", "--endpoints", addr)
	require.ErrorIs(t, err, client.ErrUnauthenticated, "CONCORD_AUTH_TOKEN won over CONCORD_TOKEN")
}

// "a, b" (a space after the comma) or a trailing comma in --endpoints or
// CONCORD_ENDPOINTS made an endpoint invalid: " 127.0.0.1:7070" was
// dialled as a host name with a space, "" failed with "missing port".
// Spaces around addresses are now trimmed and empty entries dropped.
func TestEndpointsTolerateSpacesAndEmptyEntries(t *testing.T) {
	require.Equal(t, []string{"a:1", "b:2"}, cleanEndpoints([]string{" a:1", " b:2 ", "", "  "}))
	addr := startMember(t)
	for _, eps := range []string{"127.0.0.1:1, " + addr, addr + ",", " " + addr + " "} {
		out, errOut, err := run(t, "kv", "ls", "--endpoints", eps, "--timeout", "3s")
		require.NoError(t, err, "--endpoints %q: %s%s", eps, out, errOut)
	}
	t.Setenv("CONCORD_ENDPOINTS", "127.0.0.1:1, "+addr+",")
	out, errOut, err := run(t, "kv", "ls", "--timeout", "3s")
	require.NoError(t, err, "CONCORD_ENDPOINTS with a space and a trailing comma: %s%s", out, errOut)
}

// The root command's help named only "kv, session, cluster, snapshot" of
// its verb groups. It now names every one.
func TestRootHelpNamesEveryVerbGroup(t *testing.T) {
	root := NewRoot(strings.NewReader(""), io.Discard, io.Discard)
	_, list, ok := strings.Cut(root.Long, "talks to it (")
	require.True(t, ok, root.Long)
	list, _, _ = strings.Cut(list, ")")
	named := strings.Split(strings.Join(strings.Fields(list), " "), ", ")
	for _, c := range root.Commands() {
		switch c.Name() {
		case "server", "version", "help", "completion":
			continue
		}
		require.Contains(t, named, c.Name(), "the root's help does not name %q", c.Name())
	}
}

// pflag takes the first `quoted` word of a flag's usage for the name of its
// value, so `concord session create --help` showed "--name session ls" and
// `concord id next --help` "--tag concord id create-tag" where the value's
// type belongs. Every flag's value now shows as one word.
func TestHelpShowsEveryFlagsValueAsOneWord(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			name, _ := pflag.UnquoteUsage(f)
			require.NotContains(t, name, " ", "%s --%s shows its value as %q", c.CommandPath(), f.Name, name)
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(NewRoot(strings.NewReader(""), io.Discard, io.Discard))
}

// `concord version --json` printed "concord dev": --json, a global flag
// for scripts, did nothing there. It now prints {"version": ...}.
func TestVersionHonoursJSON(t *testing.T) {
	out, _, err := run(t, "version", "--json")
	require.NoError(t, err)
	var m map[string]string
	require.NoError(t, json.Unmarshal([]byte(out), &m), out)
	require.Equal(t, Version, m["version"])
}
