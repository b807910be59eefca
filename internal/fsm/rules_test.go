package fsm

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/fsm/record"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
	"github.com/concord-dev/concord/internal/raftnode"
)

func raiseRules(v uint32) *internalv1.Command {
	return &internalv1.Command{Op: &internalv1.Command_RaiseRules{RaiseRules: &internalv1.RaiseRules{Version: v}}}
}

func putCmd(key string) *internalv1.Command {
	return &internalv1.Command{Op: &internalv1.Command_Put{Put: &concordv1.PutRequest{Key: []byte(key), Value: []byte("v")}}}
}

// entries numbers cmds from index first on.
func entries(t testing.TB, first uint64, cmds ...*internalv1.Command) []raftnode.Entry {
	var out []raftnode.Entry
	for i, c := range cmds {
		idx := first + uint64(i)
		c.TimeUnixNano = int64(idx) * 1e6
		out = append(out, raftnode.Entry{Index: idx, Term: 1, Type: raftnode.EntryCommand, Data: encode(t, c)})
	}
	return out
}

func headerOf(t testing.TB, snap []byte) *internalv1.SnapshotHeader {
	t.Helper()
	var hdr internalv1.SnapshotHeader
	require.NoError(t, record.NewReader(bytes.NewReader(snap)).Read(&hdr))
	return &hdr
}

// The rules version starts at the baseline, RaiseRules raises it, never
// lowers it, and a snapshot keeps it: in format 2 above the baseline, in
// format 1 without it at the baseline, as a build before rules versions
// wrote it.
func TestRulesVersionRaisedAndSnapshotted(t *testing.T) {
	f := New(Config{})
	require.EqualValues(t, BaselineRulesVersion, f.RulesVersion())
	f.ApplyBatch(entries(t, 1, putCmd("a")))
	hdr := headerOf(t, snapshotBytes(t, f))
	require.EqualValues(t, 1, hdr.GetFormat())
	require.Zero(t, hdr.GetRulesVersion())

	res := f.ApplyBatch(entries(t, 2, raiseRules(2), raiseRules(1), putCmd("b")))
	for _, r := range res {
		require.NoError(t, ResultError(r.(*internalv1.Result)))
	}
	require.EqualValues(t, 2, f.RulesVersion(), "the version never goes down")
	require.EqualValues(t, 4, f.AppliedIndex())
	f.Read(func(s State) { require.EqualValues(t, 2, s.RulesVersion) })

	snap := snapshotBytes(t, f)
	hdr = headerOf(t, snap)
	require.EqualValues(t, 2, hdr.GetFormat())
	require.EqualValues(t, 2, hdr.GetRulesVersion())
	g := New(Config{})
	require.NoError(t, g.Restore(bytes.NewReader(snap)))
	require.EqualValues(t, 2, g.RulesVersion())
	_, hf := hashOf(t, f)
	_, hg := hashOf(t, g)
	require.Equal(t, hf, hg)

	// The version is part of the state: states that differ only in it
	// hash differently.
	h := New(Config{})
	h.ApplyBatch(entries(t, 1, putCmd("a"), raiseRules(1), raiseRules(1), putCmd("b")))
	_, hh := hashOf(t, h)
	require.NotEqual(t, hf, hh)

	// A backup moved for a new cluster keeps it.
	var moved bytes.Buffer
	_, err := ForNewCluster(bytes.NewReader(snap), &moved, NewClusterOptions{IndexBump: 10})
	require.NoError(t, err)
	m := New(Config{})
	require.NoError(t, m.Restore(bytes.NewReader(moved.Bytes())))
	require.EqualValues(t, 2, m.RulesVersion())
}

// A snapshot written by the build before rules versions (format 1, no
// rules version; testdata/snapshot-before-rules.snap) reads as the
// baseline, and the state hashes as it did on that build: members of the
// two releases compare their states with /debug/hash while they run
// together.
func TestSnapshotBeforeRulesReadsAsBaseline(t *testing.T) {
	snap, err := os.ReadFile("testdata/snapshot-before-rules.snap")
	require.NoError(t, err)
	want, err := os.ReadFile("testdata/snapshot-before-rules.hash")
	require.NoError(t, err)
	require.EqualValues(t, 1, headerOf(t, snap).GetFormat())

	f := New(Config{})
	require.NoError(t, f.Restore(bytes.NewReader(snap)))
	require.EqualValues(t, BaselineRulesVersion, f.RulesVersion())
	idx, h := hashOf(t, f)
	require.EqualValues(t, 302, idx)
	require.Equal(t, strings.TrimSpace(string(want)), h)
	require.Equal(t, snap, snapshotBytes(t, f), "a baseline state is written as the build before rules versions wrote it")
}

// A member whose build applies rules up to 1 stops at a RaiseRules to 2:
// that entry and every later one are not applied (by older rules they
// could leave a state the other members do not have), it says so once,
// and it takes no snapshot of a state Raft would record at a later index.
func TestRaiseAboveBuildHalts(t *testing.T) {
	var halts []error
	f := New(Config{MaxRulesVersion: 1, OnHalt: func(err error) { halts = append(halts, err) }})
	require.EqualValues(t, 1, f.MaxRulesVersion())
	f.ApplyBatch(entries(t, 1, putCmd("a")))
	before := stateDigest(t, f)
	_, hashBefore := hashOf(t, f)

	res := f.ApplyBatch(entries(t, 2, raiseRules(2), putCmd("b")))
	for i, r := range res {
		// A result keeps the message, not the sentinel.
		require.ErrorContains(t, ResultError(r.(*internalv1.Result)), ErrRulesTooNew.Error(), "entry %d", i+2)
	}
	require.EqualValues(t, 1, f.AppliedIndex())
	require.EqualValues(t, 1, f.RulesVersion())
	require.Len(t, halts, 1)
	require.ErrorIs(t, halts[0], ErrRulesTooNew)
	require.ErrorIs(t, f.Halted(), ErrRulesTooNew)

	f.ApplyBatch(entries(t, 4, putCmd("c")))
	require.EqualValues(t, 1, f.AppliedIndex())
	require.Len(t, halts, 1, "reported once")
	require.Equal(t, before, stateDigest(t, f))
	_, hashAfter := hashOf(t, f)
	require.Equal(t, hashBefore, hashAfter, "not even the entry's time was applied")
	_, err := f.Snapshot()
	require.ErrorIs(t, err, ErrRulesTooNew)
}

// A snapshot at a rules version above the build's is refused with
// ErrRulesTooNew, stops the member, and leaves the state as it was.
func TestRestoreAboveBuildHalts(t *testing.T) {
	src := New(Config{})
	src.ApplyBatch(entries(t, 1, putCmd("a"), raiseRules(2), putCmd("b")))
	snap := snapshotBytes(t, src)

	var halts []error
	f := New(Config{MaxRulesVersion: 1, OnHalt: func(err error) { halts = append(halts, err) }})
	f.ApplyBatch(entries(t, 1, putCmd("x")))
	_, before := hashOf(t, f)
	err := f.Restore(bytes.NewReader(snap))
	require.ErrorIs(t, err, ErrRulesTooNew)
	require.NotErrorIs(t, err, record.ErrCorrupt)
	require.Len(t, halts, 1)
	require.ErrorIs(t, halts[0], ErrRulesTooNew)
	_, after := hashOf(t, f)
	require.Equal(t, before, after)
	require.EqualValues(t, 1, f.AppliedIndex())
	f.ApplyBatch(entries(t, 2, putCmd("y")))
	require.EqualValues(t, 1, f.AppliedIndex(), "a halted member applies nothing")

	// This build reads it.
	_, err = VerifySnapshot(bytes.NewReader(snap))
	require.NoError(t, err)
	require.False(t, errors.Is(err, ErrSnapshotFormat))
}
