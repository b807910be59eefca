package fsm

import (
	"bytes"
	"testing"

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
// cleanly or succeed, never panic.
func FuzzRestore(f *testing.F) {
	a := New(Config{})
	a.ApplyBatch(randomLog(f, 5, 50))
	f.Add(snapshotBytes(f, a))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = VerifySnapshot(bytes.NewReader(data))
	})
}
