package errs

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

var errTest = New("TEST_REASON", "errs: test sentinel")

func TestRebuildKeepsIdentity(t *testing.T) {
	wrapped := fmt.Errorf("%w: key %q", errTest, "a")
	got := Rebuild(ReasonOf(wrapped, "UNKNOWN"), wrapped.Error())
	require.ErrorIs(t, got, errTest)
	require.Equal(t, wrapped.Error(), got.Error())
}

func TestRebuildUnknownReason(t *testing.T) {
	got := Rebuild("NO_SUCH_REASON", "boom")
	require.EqualError(t, got, "boom")
	var e *Error
	require.False(t, errors.As(got, &e))
}

func TestReasonOfFallback(t *testing.T) {
	require.Equal(t, "FALLBACK", ReasonOf(errors.New("x"), "FALLBACK"))
	require.Equal(t, "TEST_REASON", ReasonOf(Wrapf(errTest, "n=%d", 3), "FALLBACK"))
}

func TestDuplicateReasonPanics(t *testing.T) {
	require.Panics(t, func() { New("TEST_REASON", "again") })
}
