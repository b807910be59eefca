package fsm

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/internal/fsm/record"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
)

func setClusterID(id string) *internalv1.Command {
	return &internalv1.Command{Op: &internalv1.Command_SetClusterId{SetClusterId: &internalv1.SetClusterID{Id: id}}}
}

func TestClusterIDsAreRandomHex(t *testing.T) {
	a, b := NewClusterID(), NewClusterID()
	require.True(t, ValidClusterID(a), a)
	require.NotEqual(t, a, b)
	for _, bad := range []string{"", "abc", a[:31], a + "0", "0123456789ABCDEF0123456789abcdef", "0123456789abcdef0123456789abcdeg"} {
		require.False(t, ValidClusterID(bad), bad)
	}
}

// Below RulesClusterID a SetClusterID changes nothing, as on a member of a
// release that does not know it: the state hashes as it did. From it, the
// first valid one names the cluster, and later ones change nothing.
func TestSetClusterIDOnceFromItsRulesVersion(t *testing.T) {
	id1, id2 := NewClusterID(), NewClusterID()
	f := New(Config{})
	res := f.ApplyBatch(entries(t, 1, raiseRules(RulesConversion), setClusterID(id1)))
	require.ErrorIs(t, ResultError(res[1].(*internalv1.Result)), ErrBadCommand)
	require.Empty(t, f.ClusterID())
	_, hf := hashOf(t, f)
	// The same state as with a Noop in its place.
	n := New(Config{})
	n.ApplyBatch(entries(t, 1, raiseRules(RulesConversion), &internalv1.Command{Op: &internalv1.Command_Noop{Noop: &internalv1.Noop{}}}))
	_, hn := hashOf(t, n)
	require.Equal(t, hn, hf, "refused below its rules version, it changed nothing")
	require.Empty(t, headerOf(t, snapshotBytes(t, f)).GetClusterId())

	res = f.ApplyBatch(entries(t, 3, raiseRules(RulesClusterID), setClusterID("not-hex"), setClusterID(id1), setClusterID(id2)))
	require.NoError(t, ResultError(res[0].(*internalv1.Result)))
	require.ErrorIs(t, ResultError(res[1].(*internalv1.Result)), ErrBadCommand)
	require.NoError(t, ResultError(res[2].(*internalv1.Result)))
	require.NoError(t, ResultError(res[3].(*internalv1.Result)), "a later one is no error: leaders may race to propose one")
	require.Equal(t, id1, f.ClusterID(), "the first one stays")
	f.Read(func(s State) { require.Equal(t, id1, s.ClusterID) })

	// The ID is part of the state: it is snapshotted, restored and hashed.
	snap := snapshotBytes(t, f)
	require.Equal(t, id1, headerOf(t, snap).GetClusterId())
	g := New(Config{})
	require.NoError(t, g.Restore(bytes.NewReader(snap)))
	require.Equal(t, id1, g.ClusterID())
	_, h1 := hashOf(t, f)
	_, hg := hashOf(t, g)
	require.Equal(t, h1, hg)
	// Two states of the same entries but for the ID hash differently.
	x, y := New(Config{}), New(Config{})
	x.ApplyBatch(entries(t, 1, raiseRules(RulesClusterID), setClusterID(id1), putCmd("k")))
	y.ApplyBatch(entries(t, 1, raiseRules(RulesClusterID), setClusterID(id2), putCmd("k")))
	_, hx := hashOf(t, x)
	_, hy := hashOf(t, y)
	require.NotEqual(t, hx, hy, "states that differ only in their cluster ID hash differently")

	// A backup moved for a new cluster names no cluster: its first leader
	// names it anew.
	var moved bytes.Buffer
	_, err := ForNewCluster(bytes.NewReader(snap), &moved, NewClusterOptions{})
	require.NoError(t, err)
	m := New(Config{})
	require.NoError(t, m.Restore(bytes.NewReader(moved.Bytes())))
	require.Empty(t, m.ClusterID())
	require.EqualValues(t, RulesClusterID, m.RulesVersion())

	// A snapshot carrying a malformed ID is refused as corrupt, and the
	// state stays.
	c := f.capture()
	c.header.ClusterId = "NOT-HEX"
	var bad bytes.Buffer
	_, err = c.WriteTo(&bad)
	require.NoError(t, err)
	require.ErrorIs(t, g.Restore(bytes.NewReader(bad.Bytes())), record.ErrCorrupt)
	require.Equal(t, id1, g.ClusterID())
}
