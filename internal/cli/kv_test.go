package cli

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
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
