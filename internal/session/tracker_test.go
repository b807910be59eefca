package session

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/internal/clock"
)

func TestTrackerRestartsEveryTTLOnStart(t *testing.T) {
	c := clock.NewFake(time.Unix(1000, 0))
	tr := NewTracker(c)
	// Sessions existed long before this member became leader.
	tr.Start([]Session{{ID: 1, TTLMillis: 1000}, {ID: 2, TTLMillis: 3000}})
	c.Advance(999 * time.Millisecond)
	due, _ := tr.Due(10)
	require.Empty(t, due, "nothing expires before a full TTL under the new leader")
	c.Advance(2 * time.Millisecond)
	due, next := tr.Due(10)
	require.Equal(t, []int64{1}, due)
	require.Equal(t, time.Second, next, "the next deadline is 1.999s away; waits are capped at a second")
}

func TestTrackerKeepAliveExtends(t *testing.T) {
	c := clock.NewFake(time.Unix(0, 0))
	tr := NewTracker(c)
	tr.Start(nil)
	tr.Created(Session{ID: 5, TTLMillis: 1000})
	c.Advance(900 * time.Millisecond)
	ttl, ok := tr.KeepAlive(5)
	require.True(t, ok)
	require.Equal(t, time.Second, ttl)
	c.Advance(900 * time.Millisecond)
	due, _ := tr.Due(10)
	require.Empty(t, due)
	c.Advance(101 * time.Millisecond)
	due, _ = tr.Due(10)
	require.Equal(t, []int64{5}, due)
	_, ok = tr.KeepAlive(5)
	require.False(t, ok, "a session being expired cannot be kept alive")
	tr.Retry(due)
	due, _ = tr.Due(10)
	require.Equal(t, []int64{5}, due, "a failed expiry is retried")
	tr.Ended(5)
	_, ok = tr.KeepAlive(5)
	require.False(t, ok)
}

func TestTrackerInactiveRefusesKeepAlive(t *testing.T) {
	tr := NewTracker(clock.NewFake(time.Unix(0, 0)))
	tr.Created(Session{ID: 1, TTLMillis: 10})
	_, ok := tr.KeepAlive(1)
	require.False(t, ok)
	tr.Start([]Session{{ID: 1, TTLMillis: 10}})
	_, ok = tr.KeepAlive(1)
	require.True(t, ok)
	tr.Stop()
	_, ok = tr.KeepAlive(1)
	require.False(t, ok)
	due, _ := tr.Due(10)
	require.Empty(t, due)
}

func TestTrackerEndedRemovesFromQueue(t *testing.T) {
	c := clock.NewFake(time.Unix(0, 0))
	tr := NewTracker(c)
	tr.Start([]Session{{ID: 1, TTLMillis: 10}, {ID: 2, TTLMillis: 20}, {ID: 3, TTLMillis: 30}})
	tr.Ended(2)
	c.Advance(time.Second)
	due, _ := tr.Due(10)
	require.Equal(t, []int64{1, 3}, due)
}

// KeepAliveAll answers known, unknown and expiring sessions in one hold, and
// an inactive tracker (a leader that stepped down) as inactive, never as a
// list of expired sessions.
func TestTrackerKeepAliveAll(t *testing.T) {
	c := clock.NewFake(time.Unix(0, 0))
	tr := NewTracker(c)
	_, active := tr.KeepAliveAll([]int64{1})
	require.False(t, active)
	tr.Start([]Session{{ID: 1, TTLMillis: 1000}, {ID: 2, TTLMillis: 100}})
	c.Advance(150 * time.Millisecond)
	due, _ := tr.Due(10)
	require.Equal(t, []int64{2}, due)
	c.Advance(800 * time.Millisecond)
	ttls, active := tr.KeepAliveAll([]int64{1, 2, 3, 1})
	require.True(t, active)
	require.Equal(t, []time.Duration{time.Second, -1, -1, time.Second}, ttls)
	c.Advance(900 * time.Millisecond)
	due, _ = tr.Due(10)
	require.Empty(t, due, "session 1 was kept alive 0.9s ago with a TTL of 1s")
	tr.Stop()
	ttls, active = tr.KeepAliveAll([]int64{1})
	require.False(t, active, "a stopped tracker is inactive")
	require.Nil(t, ttls)
}
