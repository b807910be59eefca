package cli

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// `id tags` and `id create-tag` printed tag names as they were, while
// every other name, key and owner goes through display(): a tag with an
// escape sequence drove the terminal, one with a tab or newline broke the
// table. Tag names are now escaped like the rest.
func TestIDTagsEscapesTagNames(t *testing.T) {
	addr := startMember(t)
	tag := "evil\x1b[31m\tx"
	out, _, err := run(t, "id", "create-tag", tag, "--endpoints", addr)
	require.NoError(t, err)
	require.NotContains(t, out, "\x1b", "create-tag printed the raw tag: %q", out)
	require.Contains(t, out, display(tag))
	out, _, err = run(t, "id", "tags", "--endpoints", addr)
	require.NoError(t, err)
	require.NotContains(t, out, "\x1b", "id tags printed the raw tag: %q", out)
	require.Contains(t, out, display(tag))
}

// `id decode` checked the layout as a generator's, so an ID made under a
// layout whose time field has since run out (35 time bits from 2025 ended
// in February 2026) could not be decoded: "ID range exhausted". Decoding
// needs only the layout's shape.
func TestIDDecodeReadsIDsOfALayoutThatRanOut(t *testing.T) {
	// 2025-06-01T00:00:00Z under 35 time, 16 worker and 12 sequence bits:
	// 151 days of milliseconds, worker 7, sequence 3.
	ms := int64(151 * 24 * time.Hour / time.Millisecond)
	id := ms<<28 | 7<<12 | 3
	out, _, err := run(t, "id", "decode", strconv.FormatInt(id, 10), "--json",
		"--time-bits", "35", "--worker-bits", "16", "--seq-bits", "12", "--epoch", "2025-01-01T00:00:00Z")
	require.NoError(t, err)
	var d map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &d), out)
	require.Equal(t, "2025-06-01T00:00:00Z", d["time"])
	require.Equal(t, 7.0, d["worker"])
	require.Equal(t, 3.0, d["sequence"])
}
