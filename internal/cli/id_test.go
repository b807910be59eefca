package cli

import (
	"testing"

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
