package deadline

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestQueueOrdersByDeadlineThenKey(t *testing.T) {
	base := time.Unix(100, 0)
	q := New[int64]()
	q.Set(3, base.Add(3*time.Second))
	q.Set(1, base.Add(time.Second))
	q.Set(2, base.Add(time.Second))
	q.Set(4, base.Add(10*time.Second))
	q.Set(4, base.Add(2*time.Second)) // moved earlier
	q.Remove(3)
	next, ok := q.Next()
	require.True(t, ok)
	require.Equal(t, base.Add(time.Second), next)
	require.Empty(t, q.PopDue(base, 10))
	require.Equal(t, []int64{1, 2}, q.PopDue(base.Add(time.Second), 10))
	require.Equal(t, []int64{4}, q.PopDue(base.Add(time.Hour), 1))
	require.Zero(t, q.Len())
	_, ok = q.Get(4)
	require.False(t, ok)
}
