package workload

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
)

func TestCertainFailure(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		certain bool
	}{
		{"malformed request", fmt.Errorf("%w: bad range", client.ErrInvalidArgument), true},
		{"too large", client.ErrTooLarge, true},
		{"empty key", client.ErrEmptyKey, true},
		{"closed before any attempt", client.ErrClosed, true},
		// The SDK's error for a call cut short by Close after an attempt
		// that may have taken effect (client.closedMidCall).
		{"closed after an attempt", fmt.Errorf("%w: the client was closed during the call, after an attempt that may have taken effect: %w", client.ErrUnknownOutcome, client.ErrClosed), false},
		{"unknown outcome", fmt.Errorf("%w: timeout", client.ErrUnknownOutcome), false},
		{"unavailable", client.ErrUnavailable, false},
		{"deadline", context.DeadlineExceeded, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.certain, certainFailure(tt.err), "%v", tt.err)
		})
	}
}

func TestOverLimit(t *testing.T) {
	quota := &client.Error{Reason: "QUOTA_EXCEEDED", Message: "the cluster holds 4 locks"}
	require.True(t, overLimit(quota))
	require.True(t, overLimit(fmt.Errorf("acquire: %w", quota)))
	require.False(t, overLimit(fmt.Errorf("%w: an attempt may have been applied; the last one: %w", client.ErrUnknownOutcome, quota)),
		"the last answer of a call whose earlier attempt may have applied")
	require.False(t, overLimit(&client.Error{Reason: "TOO_MANY_WAITS"}))
	require.False(t, overLimit(client.ErrQuotaExceeded), "no reason: not known to be the lock limit")
}
