package fsm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"

	"github.com/concord-dev/concord/internal/fsm/record"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
	"github.com/concord-dev/concord/internal/raftnode"
)

// refDedupe is the dedupe rule written as plainly as possible: per client,
// a set of entries; after each insert the smallest request IDs go while the
// client holds more than DedupeWindow and the smallest is old, or it holds
// more than DedupeMaxWindow.
type refDedupe map[string]map[uint64]int64

func (r refDedupe) remember(client string, req uint64, now int64) {
	if r[client] == nil {
		r[client] = map[uint64]int64{}
	}
	c := r[client]
	c[req] = now
	for len(c) > DedupeWindow {
		oldest := slices.Min(keys(c))
		if len(c) <= DedupeMaxWindow && c[oldest] > now-DedupeMinAgeNanos {
			break
		}
		delete(c, oldest)
	}
}

func keys(m map[uint64]int64) []uint64 {
	out := make([]uint64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestDedupeAgainstAModel feeds results out of order (as concurrent calls of
// one client reach the leader) and compares every lookup, the size and a
// snapshot round trip with the reference rule.
func TestDedupeAgainstAModel(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			d, ref := newDedupe(), refDedupe{}
			clients := []string{"a", "b", "c"}
			next := map[string]uint64{}
			now := int64(0)
			for op := 0; op < 6000; op++ {
				client := clients[rng.IntN(len(clients))]
				now += int64(rng.IntN(20)) * 1e6 // up to 20 ms per write
				// IDs arrive nearly in order: up to 8 places late, and
				// sometimes a retry of a recent one.
				req := next[client] + uint64(rng.IntN(8))
				if rng.IntN(20) == 0 && req > 20 {
					req -= uint64(rng.IntN(20))
				}
				next[client]++
				if _, _, ok := d.lookup(client, req, now); !ok {
					d.remember(client, req, 0, &internalv1.Result{}, now)
				}
				if _, ok := ref[client][req]; !ok {
					ref.remember(client, req, now)
				}
				if op%500 == 0 {
					d = roundTrip(t, d)
				}
			}
			total := 0
			for _, client := range clients {
				total += len(ref[client])
				for req := uint64(0); req < next[client]+8; req++ {
					_, _, got := d.lookup(client, req, now)
					_, want := ref[client][req]
					require.Equal(t, want, got, "client %s request %d", client, req)
				}
			}
			require.Equal(t, total, d.len())
		})
	}
}

func roundTrip(t *testing.T, d *dedupe) *dedupe {
	t.Helper()
	n, write := d.capture()
	var buf bytes.Buffer
	w := record.NewWriter(&buf)
	require.NoError(t, write(w))
	require.NoError(t, w.Flush())
	back := newDedupe()
	require.NoError(t, back.restore(n, record.NewReader(&buf)))
	require.Equal(t, d.len(), back.len())
	return back
}

// TestDedupeRestoreRefusesInconsistentCounts checks that a snapshot whose
// client counts disagree with its records is refused.
func TestDedupeRestoreRefusesInconsistentCounts(t *testing.T) {
	var buf bytes.Buffer
	w := record.NewWriter(&buf)
	require.NoError(t, w.Write(&internalv1.DedupeClient{ClientId: "a", Count: 2}))
	require.NoError(t, w.Write(&internalv1.DedupeRecord{ClientId: "a", RequestId: 1}))
	require.NoError(t, w.Write(&internalv1.DedupeRecord{ClientId: "a", RequestId: 1}))
	require.NoError(t, w.Flush())
	d := newDedupe()
	require.ErrorIs(t, d.restore(1, record.NewReader(&buf)), record.ErrCorrupt)
	require.Zero(t, d.len(), "a refused restore changes nothing")
}

// TestDedupeSnapshotIsNotChangedByLaterWrites takes a snapshot, then
// appends, replaces, inserts out of order, evicts and compacts before
// writing it out: it must hold the table as it was when taken.
func TestDedupeSnapshotIsNotChangedByLaterWrites(t *testing.T) {
	d := newDedupe()
	res := func(rev uint64) *internalv1.Result { return ErrorResult(fmt.Errorf("result %d", rev)) }
	for i := uint64(0); i < 3000; i += 2 { // even IDs: odd ones can arrive later
		d.remember("a", i, 0, res(i), 0)
		d.remember("b", i, 0, res(i), 0)
	}
	write := func(w func(*record.Writer) error) []byte {
		var buf bytes.Buffer
		rw := record.NewWriter(&buf)
		require.NoError(t, w(rw))
		require.NoError(t, rw.Flush())
		return buf.Bytes()
	}
	_, now := d.capture()
	want := write(now)
	_, later := d.capture()

	old := DedupeMinAgeNanos + 1
	d.remember("a", 3001, 0, res(3001), old) // append
	d.remember("a", 1001, 0, res(1001), old) // out of order, inside the shared part
	d.remember("b", 4000, 0, res(4000), old) // append, then evictions of the oldest
	for i := uint64(4001); i < 6000; i++ {   // evictions down to the window, compactions
		d.remember("b", i, 0, res(i), old)
		d.remember("a", i, 0, res(i), old)
	}
	require.Equal(t, want, write(later), "a snapshot changed after it was taken")

	back := newDedupe()
	n, w := d.capture()
	var buf bytes.Buffer
	rw := record.NewWriter(&buf)
	require.NoError(t, w(rw))
	require.NoError(t, rw.Flush())
	require.NoError(t, back.restore(n, record.NewReader(&buf)))
	require.Equal(t, d.len(), back.len())
	require.Less(t, d.len(), 2*3000, "old results were evicted meanwhile")
}

// Results round-trip through the table's encoding, small ones in place.
func TestStoredResults(t *testing.T) {
	acquire := &internalv1.Result{Result: &internalv1.Result_LockAcquire{LockAcquire: &concordv1.AcquireResponse{
		Header: &concordv1.ResponseHeader{Revision: 1 << 40}, State: concordv1.AcquireState_ACQUIRE_STATE_GRANTED, Token: 1 << 40}}}
	big := &internalv1.Result{Result: &internalv1.Result_Error{Error: &internalv1.Error{Reason: "X", Message: strings.Repeat("m", 200)}}}
	for _, tc := range []struct {
		name   string
		res    *internalv1.Result
		inline bool
	}{
		{"empty", emptyResult(), true},
		{"lock acquire at a 2^40 revision", acquire, true},
		{"long error", big, false},
	} {
		s := storeResult(0, tc.res)
		if got := s.big == nil; got != tc.inline {
			t.Errorf("%s: kept in place %v, want %v (%d bytes)", tc.name, got, tc.inline, tc.res.SizeVT())
		}
		if got := s.load(); !proto.Equal(got, tc.res) {
			t.Errorf("%s: came back as %v", tc.name, got)
		}
	}
}

// The operations kept with remembered results shape answers, not state: a
// member that restored a snapshot written before they were kept holds 0
// for results that a member which applied the same entries holds with
// their operations. /debug/hash, compared across members while releases
// are mixed (docs/operations.md), differed between the two; it leaves the
// operations out.
func TestHashLeavesOutTheRememberedOperations(t *testing.T) {
	var logs []raftnode.Entry
	for i := 1; i <= 4000; i++ {
		logs = append(logs, raftnode.Entry{Index: uint64(i), Type: raftnode.EntryCommand, Data: encode(t, noopFrom("sdk-1", uint64(i), int64(i)*1e6))})
	}
	restart := func(at int) *FSM {
		a := New(Config{})
		a.ApplyBatch(logs[:at])
		b := New(Config{})
		require.NoError(t, b.Restore(bytes.NewReader(snapshotBytes(t, a))))
		for _, c := range b.dedupe.clients { // as a snapshot without operations leaves them
			for i := range c.entries {
				c.entries[i].result.op = 0
			}
		}
		b.ApplyBatch(logs[at:])
		return b
	}
	i1, h1 := hashOf(t, restart(1000))
	i2, h2 := hashOf(t, restart(2500))
	require.Equal(t, i1, i2)
	require.Equal(t, h1, h2)
}
