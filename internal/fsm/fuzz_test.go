package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/concord-dev/concord/api/vtcodec"
	"github.com/concord-dev/concord/internal/fsm/record"
	"github.com/concord-dev/concord/internal/raftnode"
	"github.com/stretchr/testify/require"

	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
)

var commandDescriptor = (&internalv1.Command{}).ProtoReflect().Descriptor()

// FuzzApplyCommand feeds arbitrary bytes to the command decoder and apply
// path: it must never panic, must always return a result, and two state
// machines must agree on every outcome. Their states must also hash alike,
// for every entry a member can write: a string that is not UTF-8 never
// reaches the log (the API's decoder refuses it, and applyCommand does not
// check again, by design), and a state holding one does not snapshot
// ("string field contains invalid UTF-8": the fuzzer found a session name
// of one byte, 0xee).
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
		if vtcodec.Check(data, commandDescriptor) != nil {
			return // no member writes such an entry (above)
		}
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
	f.Fuzz(checkRestore)
}

// checkRestore is FuzzRestore's check of one input.
func checkRestore(t *testing.T, data []byte) {
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
	m.Read(func(s State) {
		// Read never shows a state newer than its index.
		require.LessOrEqual(t, s.KV.MaxRevision(), s.Applied)
		require.LessOrEqual(t, s.Locks.MaxRevision(), s.Applied)
		require.LessOrEqual(t, uint64(s.Sessions.MaxID()), s.Applied)
		// Every session ID is one an entry could have made.
		for _, sess := range s.Sessions.List() {
			require.Positive(t, sess.ID)
		}
	})
	// What a state machine restored writes back is what it restored:
	// a member that installs it gets the same state, the same hash.
	again := snapshotBytes(t, m)
	m2 := New(Config{})
	require.NoError(t, m2.Restore(bytes.NewReader(again)))
	require.Equal(t, again, snapshotBytes(t, m2), "a restored snapshot does not encode back to itself")
	// What `concord snapshot restore` writes for a new cluster restores.
	var fresh bytes.Buffer
	_, err := ForNewCluster(bytes.NewReader(data), &fresh, NewClusterOptions{})
	require.NoError(t, err)
	_, err = VerifySnapshot(&fresh)
	require.NoError(t, err)
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
	data, err = expire.MarshalVT()
	require.NoError(t, err)
	res := m.ApplyBatch([]raftnode.Entry{{Index: next, Type: raftnode.EntryCommand, Data: data}})[0]
	require.IsType(t, &internalv1.Result{}, res)
}

// FuzzRestoreRecord replaces one record of a real snapshot (a KeyValue, a
// lock or a waiter, an ID pool, a dedupe entry...) with arbitrary bytes,
// keeping the framing, so that the fuzzer works on what the sections
// decode rather than on the framing and the section headers. The checks
// are FuzzRestore's.
func FuzzRestoreRecord(f *testing.F) {
	a := New(Config{})
	a.ApplyBatch(randomLog(f, 5, 200))
	snap := snapshotBytes(f, a)
	var recs [][]byte
	for rest := snap; len(rest) > 0; {
		n, k := binary.Uvarint(rest)
		recs = append(recs, rest[k:k+int(n)])
		rest = rest[k+int(n):]
	}
	for i, r := range recs {
		f.Add(uint16(i), r)
	}
	f.Fuzz(func(t *testing.T, i uint16, rec []byte) {
		var buf []byte
		for j, r := range recs {
			if j == int(i)%len(recs) {
				r = rec
			}
			buf = binary.AppendUvarint(buf, uint64(len(r)))
			buf = append(buf, r...)
		}
		checkRestore(t, buf)
	})
}
