package history

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRecorderRoundTrip(t *testing.T) {
	rec := NewRecorder(NewClock())
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := rec.NewProcess()
			for j := range 25 {
				call := rec.Now()
				status := OK
				if j%5 == 0 {
					status = Unknown
				}
				rec.Add(Op{Process: p, Workload: "kv", Kind: "put", Key: "k", Value: string(rune('a' + i)), Call: call, Return: rec.Now(), Status: status})
			}
		}()
	}
	wg.Wait()
	seg := &WatchSegment{Watcher: 1, Prefix: "kv/", StartRev: 5, Resps: []WatchResponse{{Revision: 7, Events: []Event{{Type: "put", Key: "kv/a", Value: "x", Rev: 6}}}}}
	rec.AddSegment(seg)
	h := rec.Snapshot()
	require.Len(t, h.Ops, 100)
	for i, o := range h.Ops {
		require.Equal(t, i, o.ID)
		require.LessOrEqual(t, o.Call, o.Return, "one monotonic clock")
	}
	ok, fail, unknown := h.Counts()
	require.Equal(t, [3]int{80, 0, 20}, [3]int{ok, fail, unknown})
	require.Len(t, h.Of("kv"), 100)
	require.Empty(t, h.Of("sessions"))

	var buf bytes.Buffer
	require.NoError(t, h.Write(&buf))
	back, err := Read(&buf)
	require.NoError(t, err)
	require.Equal(t, h.Ops, back.Ops)
	require.Equal(t, h.Watches, back.Watches)
	require.Equal(t, uint64(7), back.Watches[0].EndRev())
}

func TestSegmentEndRev(t *testing.T) {
	require.Equal(t, uint64(4), (&WatchSegment{StartRev: 5}).EndRev(), "nothing delivered")
	require.Equal(t, uint64(9), (&WatchSegment{StartRev: 5, Resps: []WatchResponse{{Revision: 9}}}).EndRev())
}

func TestClockAt(t *testing.T) {
	c := NewClock()
	now := time.Now()
	at := c.At(now)
	require.InDelta(t, float64(c.Now()), float64(at), float64(time.Second))
	require.Less(t, c.At(now.Add(-time.Second)), at)
}

func TestGrantTrack(t *testing.T) {
	rec := NewRecorder(NewClock())
	tr := rec.TrackGrant(Grant{Workload: "locks", Owner: "a", Locks: []string{"lock/m0"}, Capacity: 1, Permits: 1, Token: 3, Call: 1, Granted: 2})
	other := rec.TrackGrant(Grant{Workload: "fence", Owner: "b", Locks: []string{"fence/lock"}, Token: 4})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); tr.Lost(10, "session ended", 9) }()
	go func() { defer wg.Done(); tr.End(12, 9); tr.Released() }()
	wg.Wait()
	tr.Lost(20, "released", 30) // only the first call counts
	tr.End(21, 31)
	other.End(5, 6)

	h := rec.Snapshot()
	require.Len(t, h.Grants, 2)
	g := h.Grants[0]
	require.Equal(t, [3]int64{10, 9, 12}, [3]int64{g.Lost, g.LostDeadline, g.Ended})
	require.Equal(t, "session ended", g.Cause)
	require.True(t, g.Released)
	require.Len(t, h.OfGrants("fence"), 1)

	var buf bytes.Buffer
	require.NoError(t, h.Write(&buf))
	back, err := Read(&buf)
	require.NoError(t, err)
	require.Equal(t, h.Grants, back.Grants)
}

// TestOpLostIsBackwardCompatible checks that the Lost marker of a
// conversion round-trips, is left out when false, and that a history
// written before it existed reads as not lost.
func TestOpLostIsBackwardCompatible(t *testing.T) {
	lost := &History{Ops: []Op{{Kind: "sem-upgrade", Status: OK, Owner: "a", Lost: true}, {Kind: "sem-upgrade", Status: OK, Owner: "b"}}}
	var buf bytes.Buffer
	require.NoError(t, lost.Write(&buf))
	require.Equal(t, 1, strings.Count(buf.String(), `"lost":true`))
	require.NotContains(t, buf.String(), `"lost":false`)
	back, err := Read(&buf)
	require.NoError(t, err)
	require.Equal(t, lost.Ops, back.Ops)

	old, err := Read(strings.NewReader(`{"op":{"id":0,"process":1,"workload":"semaphores","kind":"sem-upgrade","call":1,"return":2,"status":"unknown","owner":"a"}}` + "\n"))
	require.NoError(t, err)
	require.Len(t, old.Ops, 1)
	require.False(t, old.Ops[0].Lost)
	require.Equal(t, Unknown, old.Ops[0].Status)
}
