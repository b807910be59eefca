package cli

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
)

// `kv get --json` of a key whose value was empty had no "value" field
// (omitempty), so `jq -r .value` printed "null" instead of "". Get, put
// and watch records now always carry "value"; keys-only listings, which
// fetch no values, leave it out.
func TestKVJSONHasValueWhenEmptyButNotInKeysOnlyListings(t *testing.T) {
	addr := startMember(t)
	_, _, err := run(t, "kv", "put", "empty", "", "--endpoints", addr)
	require.NoError(t, err)

	out, _, err := run(t, "kv", "get", "empty", "--json", "--endpoints", addr)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &m), out)
	require.Contains(t, m, "value", "kv get --json of an empty value:\n%s", out)
	require.Equal(t, "", m["value"])

	for args, wantValue := range map[string]bool{"--keys-only=false": true, "--keys-only": false} {
		out, _, err = run(t, "kv", "ls", "--json", args, "--endpoints", addr)
		require.NoError(t, err)
		var list []map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &list), out)
		require.Len(t, list, 1, out)
		require.Equal(t, "empty", list[0]["key"])
		if wantValue {
			require.Contains(t, list[0], "value", "kv ls --json %s:\n%s", args, out)
			require.Equal(t, "", list[0]["value"])
		} else {
			require.NotContains(t, list[0], "value", "kv ls --json %s:\n%s", args, out)
		}
	}
}

// `kv del "" --prefix` (say, "$DIR" of an unset variable) deleted every
// key without a word. An empty prefix is now refused, and deleting every
// key takes --all.
func TestKVDelRefusesAnEmptyPrefixWithoutAll(t *testing.T) {
	addr := startMember(t)
	put := func() {
		for _, k := range []string{"a", "b"} {
			_, _, err := run(t, "kv", "put", k, "v", "--endpoints", addr)
			require.NoError(t, err)
		}
	}
	count := func() int {
		out, _, err := run(t, "kv", "ls", "--json", "--endpoints", addr)
		require.NoError(t, err)
		var list []map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &list), out)
		return len(list)
	}
	put()
	for _, args := range [][]string{{"", "--prefix"}, {}, {"a", "--all"}} {
		_, _, err := run(t, append([]string{"kv", "del", "--endpoints", addr}, args...)...)
		require.ErrorIs(t, err, client.ErrInvalidArgument, "kv del %q", args)
		require.ErrorContains(t, err, "--all")
		require.Equal(t, 2, count(), "kv del %q deleted keys", args)
	}
	out, _, err := run(t, "kv", "del", "--all", "--endpoints", addr)
	require.NoError(t, err)
	require.Equal(t, "deleted 2\n", out)
	require.Equal(t, 0, count())
	put()
	out, _, err = run(t, "kv", "del", "", "--prefix", "--all", "--endpoints", addr)
	require.NoError(t, err)
	require.Equal(t, "deleted 2\n", out)
	// A non-empty prefix needs no --all.
	put()
	out, _, err = run(t, "kv", "del", "a", "--prefix", "--endpoints", addr)
	require.NoError(t, err)
	require.Equal(t, "deleted 1\n", out)
}
