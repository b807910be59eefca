package cli

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestStopWithinGivesUpOnAStopThatHangs(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	hung := func(context.Context) error { <-release; return nil }
	err := stopWithin(hung, 20*time.Millisecond)
	require.ErrorIs(t, err, errStopHung)
	var ee *ExitError
	require.True(t, errors.As(err, &ee), "%v is not an ExitError", err)
	require.Equal(t, ExitStopHung, ee.Code)
	require.Contains(t, err.Error(), "nothing acknowledged is lost")
}

func TestStopWithinReturnsTheStopsOwnOutcome(t *testing.T) {
	drain := errors.New("drain: context deadline exceeded")
	require.ErrorIs(t, stopWithin(func(context.Context) error { return drain }, time.Minute), drain)
	require.NoError(t, stopWithin(func(context.Context) error { return nil }, time.Minute))
}

func TestStopBudgetIsTheShutdownTimeoutAndTheGrace(t *testing.T) {
	require.Equal(t, 3*time.Second+stopGrace, stopBudget(3*time.Second))
	// An unset --shutdown-timeout is the daemon's default.
	require.Equal(t, 10*time.Second+stopGrace, stopBudget(0))
}
