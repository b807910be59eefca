package fsm

import (
	"bytes"
	"errors"
	"testing"

	"github.com/concord-dev/concord/internal/fsm/record"
	"github.com/concord-dev/concord/internal/raftnode"
	"github.com/stretchr/testify/require"

	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
)

// FuzzApplyCommand feeds arbitrary bytes to the command decoder and apply
// path: it must never panic, must always return a result, and two state
// machines must agree on every outcome.
func FuzzApplyCommand(f *testing.F) {
	for _, l := range randomLog(f, 7, 40) {
		f.Add(l.Data)
	}
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b := New(Config{}), New(Config{})
		seed := randomLog(t, 1, 30)
		a.ApplyBatch(seed)
		b.ApplyBatch(seed)
		l := raftnode.Entry{Index: 31, Type: raftnode.EntryCommand, Data: data}
		ra := a.ApplyBatch([]raftnode.Entry{l})[0]
		rb := b.ApplyBatch([]raftnode.Entry{l})[0]
		require.IsType(t, &internalv1.Result{}, ra)
		require.Equal(t, ra.(*internalv1.Result).String(), rb.(*internalv1.Result).String())
		_, ha, err := a.Hash()
		require.NoError(t, err)
		_, hb, err := b.Hash()
		require.NoError(t, err)
		require.Equal(t, ha, hb)
	})
}

// FuzzRestore feeds arbitrary bytes to the snapshot decoder: it must fail
// cleanly or succeed, never panic; and a state it accepts must take
// commands without panicking: more traffic, then every session ending
// (which releases every lock, waiter and key the snapshot holds). A lock
// table that passed the decoder once crashed every member at the same entry.
func FuzzRestore(f *testing.F) {
	a := New(Config{})
	a.ApplyBatch(randomLog(f, 5, 50))
	f.Add(snapshotBytes(f, a))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := VerifySnapshot(bytes.NewReader(data)); err != nil {
			// Bad input gets a typed error (operations.md: refused as
			// corrupt, or as a format this build does not read).
			if !errors.Is(err, record.ErrCorrupt) && !errors.Is(err, ErrSnapshotFormat) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		m := New(Config{})
		require.NoError(t, m.Restore(bytes.NewReader(data)))
		// What a state machine restored writes back is what it restored:
		// a member that installs it gets the same state, the same hash.
		again := snapshotBytes(t, m)
		m2 := New(Config{})
		require.NoError(t, m2.Restore(bytes.NewReader(again)))
		require.Equal(t, again, snapshotBytes(t, m2), "a restored snapshot does not encode back to itself")
		next := m.AppliedIndex() + 1
		var logs []raftnode.Entry
		for _, l := range randomLog(t, uint64(len(data)), 30) {
			l.Index = next
			next++
			logs = append(logs, l)
		}
		m.ApplyBatch(logs)
		var ids []int64
		m.Read(func(s State) {
			for _, sess := range s.Sessions.List() {
				ids = append(ids, sess.ID)
			}
		})
		expire := &internalv1.Command{Op: &internalv1.Command_ExpireSessions{ExpireSessions: &internalv1.ExpireSessions{Ids: ids}}}
		data, err := expire.MarshalVT()
		require.NoError(t, err)
		res := m.ApplyBatch([]raftnode.Entry{{Index: next, Type: raftnode.EntryCommand, Data: data}})[0]
		require.IsType(t, &internalv1.Result{}, res)
	})
}
