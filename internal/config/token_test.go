package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// HTTP trims the whitespace around a header's value and cannot carry
// control characters: a member started with such a token (a trailing
// newline read from a file, say) refused every client that presented it.
// Validate refuses it, without repeating the token.
func TestValidateRefusesATokenNoClientCanPresent(t *testing.T) {
	for _, token := range []string{"s3cret\n", " s3cret", "s3cret ", "s3\x00cret", "s3\tcret", "\t"} {
		var c Server
		c.SetDefaults()
		c.AuthToken = token
		err := c.Validate()
		require.ErrorContains(t, err, "--auth-token", "%q", token)
		require.NotContains(t, err.Error(), "s3", "the error repeats the token")
	}
	for _, token := range []string{"s3cret", "with inner space", "ünïcode-✓"} {
		var c Server
		c.SetDefaults()
		c.AuthToken = token
		require.NoError(t, c.Validate(), "%q", token)
	}
}
