package idgen

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// With an Epoch left at zero (year 1), time.Time.Sub saturated: the time
// field froze at the limit, and Validate accepted 44 time bits that had run
// out in year 558.
func TestLayoutWithAZeroEpochIsRefused(t *testing.T) {
	l := Layout{TimeBits: 44, WorkerBits: 10, SeqBits: 9}
	require.Error(t, l.Validate(time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)), "YearsLeft says %.0f", l.YearsLeft(time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)))
}
