package checker

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/tests/robustness/history"
)

// appendOp is a fenced append of element w@token onto the list read;
// times in milliseconds.
func appendOp(w string, token uint64, read string, call, ret int64, status history.Status, applied bool, rev uint64) history.Op {
	e := FenceEntry(w, token)
	return history.Op{Workload: "fence", Kind: KindFencedWrite, Key: "fence/list", Owner: w, Token: token, Entry: e, Value: read + e,
		Call: call * 1e6, Return: ret * 1e6, Status: status, Succeeded: applied, Rev: rev}
}

func listRead(v string, call, ret int64) history.Op {
	return history.Op{Workload: "fence", Kind: KindFenceRead, Key: "fence/list", Value: v, Found: v != "", Call: call * 1e6, Return: ret * 1e6, Status: history.OK}
}

func TestParseFenceList(t *testing.T) {
	items, err := ParseFenceList("a@5;b.1@12;")
	require.NoError(t, err)
	require.Equal(t, []FenceItem{{"a@5;", 5}, {"b.1@12;", 12}}, items)
	_, err = ParseFenceList("a@5;b@")
	require.Error(t, err)
	_, err = ParseFenceList("a;")
	require.Error(t, err)
	items, err = ParseFenceList("")
	require.NoError(t, err)
	require.Empty(t, items)
}

func TestCheckFence(t *testing.T) {
	a, b, c := FenceEntry("a", 5), FenceEntry("b", 9), FenceEntry("c", 14)
	tests := []struct {
		name  string
		ops   []history.Op
		final string
		want  string // substring of the first violation; "" for none
	}{
		{"appends in order", []history.Op{
			listRead("", 0, 1), appendOp("a", 5, "", 2, 10, history.OK, true, 6),
			listRead(a, 11, 12), appendOp("b", 9, a, 13, 20, history.OK, true, 10),
		}, a + b, ""},
		{"stale holder refused", []history.Op{
			appendOp("a", 5, "", 2, 10, history.OK, true, 6), appendOp("b", 9, a, 13, 20, history.OK, true, 10),
			appendOp("a.2", 5, a, 30, 40, history.OK, false, 0),
		}, a + b, ""},
		{"unknown append applied or not", []history.Op{
			appendOp("a", 5, "", 2, 10, history.Unknown, false, 0), appendOp("b", 9, a, 13, 20, history.OK, true, 10),
			appendOp("c", 14, a+b, 21, 30, history.Unknown, false, 0),
		}, a + b, ""},
		{"acknowledged append lost", []history.Op{
			appendOp("a", 5, "", 2, 10, history.OK, true, 6), appendOp("b", 9, "", 13, 20, history.OK, true, 10),
		}, b, "acknowledged append"},
		{"stale holder's write applied over a newer one", []history.Op{
			appendOp("b", 9, "", 2, 10, history.OK, true, 10), appendOp("a", 5, "", 12, 20, history.OK, true, 21),
		}, a, "acknowledged append \"b@9;\""},
		{"refused write applied", []history.Op{
			appendOp("a", 5, "", 2, 10, history.OK, false, 0),
		}, a, "refused"},
		{"element never appended", nil, a, "never appended"},
		{"element twice", []history.Op{appendOp("a", 5, "", 2, 10, history.OK, true, 6)}, a + a, "twice"},
		{"token goes back in the list", []history.Op{
			appendOp("b", 9, "", 2, 10, history.OK, true, 10), appendOp("a", 5, b, 12, 20, history.OK, true, 21),
		}, b + a, "token went back"},
		{"tokens go back by revision", []history.Op{
			appendOp("b", 9, "", 2, 10, history.OK, true, 10), appendOp("a", 5, "", 12, 20, history.Unknown, false, 0),
			appendOp("c", 14, b, 21, 30, history.OK, true, 8),
		}, b + c, "token went back"},
		{"applied below its token", []history.Op{appendOp("a", 5, "", 2, 10, history.OK, true, 5)}, a, "not above its grant's token"},
		{"an append of unknown outcome that never applied", []history.Op{
			appendOp("a", 5, "", 2, 10, history.Unknown, false, 0), appendOp("c", 14, "", 20, 30, history.OK, true, 15),
			appendOp("d", 19, c, 31, 40, history.OK, true, 41),
		}, c + FenceEntry("d", 19), ""},
		{"stale read", []history.Op{
			appendOp("a", 5, "", 2, 10, history.OK, true, 6), listRead("", 11, 12),
		}, a, "stale read"},
		{"a read older than an earlier read (of an append of unknown outcome)", []history.Op{
			appendOp("a", 5, "", 2, 10, history.Unknown, false, 0), listRead(a, 11, 12), listRead("", 13, 14),
		}, a, "stale read"},
		{"concurrent reads may see the append or not", []history.Op{
			appendOp("a", 5, "", 2, 10, history.Unknown, false, 0), listRead(a, 11, 20), listRead("", 12, 13),
		}, a, ""},
		{"read of a list that was lost", []history.Op{
			appendOp("a", 5, "", 2, 10, history.Unknown, false, 0), listRead(a, 11, 12),
		}, "", "not a prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, vs := CheckFence(tt.ops, tt.final)
			if tt.want == "" {
				require.Empty(t, vs)
				return
			}
			require.NotEmpty(t, vs)
			require.Equal(t, "fence", vs[0].Checker)
			var all string
			for _, v := range vs {
				all += v.Summary + "\n"
			}
			require.Contains(t, all, tt.want)
		})
	}
}

func TestCheckFenceOrder(t *testing.T) {
	// c is acknowledged before b is invoked, yet b precedes c in the list
	// (each wrote what it read, so the prefixes hold).
	b, c := FenceEntry("b", 9), FenceEntry("c", 14)
	ops := []history.Op{
		appendOp("b", 9, "", 31, 40, history.Unknown, false, 0),
		appendOp("c", 14, b, 20, 30, history.OK, true, 15),
	}
	_, vs := CheckFence(ops, b+c)
	require.Len(t, vs, 1)
	require.Contains(t, vs[0].Summary, "acknowledged before it was invoked")
}
