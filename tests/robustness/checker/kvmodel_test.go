package checker

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/tests/robustness/history"
)

// op builds a recorded KV operation; times are in milliseconds.
func op(process int, kind history.Kind, key string, call, ret int64, status history.Status, f func(*history.Op)) history.Op {
	o := history.Op{Process: process, Workload: "kv", Kind: kind, Key: key, Call: call * 1e6, Return: ret * 1e6, Status: status}
	if f != nil {
		f(&o)
	}
	return o
}

func put(p int, key, v string, call, ret int64, rev uint64) history.Op {
	return op(p, KindPut, key, call, ret, history.OK, func(o *history.Op) { o.Value, o.Rev = v, rev })
}

func putUnknown(p int, key, v string, call, ret int64) history.Op {
	return op(p, KindPut, key, call, ret, history.Unknown, func(o *history.Op) { o.Value = v })
}

func get(p int, key, v string, call, ret int64, rev uint64) history.Op {
	return op(p, KindGet, key, call, ret, history.OK, func(o *history.Op) { o.Found, o.Value, o.Rev = true, v, rev })
}

func getMissing(p int, key string, call, ret int64) history.Op {
	return op(p, KindGet, key, call, ret, history.OK, nil)
}

func cas(p int, key, old, v string, call, ret int64, ok bool, rev uint64) history.Op {
	return op(p, KindCAS, key, call, ret, history.OK, func(o *history.Op) { o.Old, o.Value, o.Succeeded, o.Rev = old, v, ok, rev })
}

func del(p int, key string, call, ret int64, deleted int64, rev uint64) history.Op {
	return op(p, KindDelete, key, call, ret, history.OK, func(o *history.Op) { o.Deleted, o.Rev = deleted, rev })
}

func TestKVModel(t *testing.T) {
	tests := []struct {
		name  string
		ops   []history.Op
		legal bool
	}{
		{"empty key reads absent", []history.Op{getMissing(0, "a", 0, 1)}, true},
		{"read of a value never written", []history.Op{get(0, "a", "x", 0, 1, 5)}, false},
		{"read your write", []history.Op{put(0, "a", "x", 0, 10, 5), get(0, "a", "x", 11, 12, 5)}, true},
		{"stale read after an acknowledged write", []history.Op{
			put(0, "a", "x", 0, 10, 5), put(0, "a", "y", 11, 20, 7), get(1, "a", "x", 21, 22, 5),
		}, false},
		{"concurrent read may see old or new", []history.Op{
			put(0, "a", "x", 0, 10, 5), put(0, "a", "y", 11, 20, 7), get(1, "a", "x", 12, 22, 5),
		}, true},
		{"read at the wrong revision", []history.Op{put(0, "a", "x", 0, 10, 5), get(1, "a", "x", 11, 12, 6)}, false},
		{"revisions of successive writes must grow", []history.Op{
			put(0, "a", "x", 0, 10, 7), put(0, "a", "y", 11, 20, 5),
		}, false},
		{"concurrent writes ordered by revision", []history.Op{
			put(0, "a", "x", 0, 10, 7), put(1, "a", "y", 0, 10, 5), get(2, "a", "x", 11, 12, 7),
		}, true},
		{"concurrent writes, read contradicts revision order", []history.Op{
			put(0, "a", "x", 0, 10, 7), put(1, "a", "y", 0, 10, 5), get(2, "a", "y", 11, 12, 5),
		}, false},
		{"unknown write may apply later", []history.Op{
			putUnknown(0, "a", "x", 0, 5), getMissing(1, "a", 6, 7), get(1, "a", "x", 8, 9, 3),
		}, true},
		{"unknown write may never apply", []history.Op{putUnknown(0, "a", "x", 0, 5), getMissing(1, "a", 100, 101)}, true},
		{"unknown write seen, then its effect vanishes", []history.Op{
			putUnknown(0, "a", "x", 0, 5), get(1, "a", "x", 6, 7, 3), getMissing(1, "a", 8, 9),
		}, false},
		{"unknown write read at a revision below an earlier write", []history.Op{
			put(0, "a", "x", 0, 10, 8), putUnknown(1, "a", "y", 11, 20), get(2, "a", "y", 21, 22, 6),
		}, false},
		{"cas succeeds on the current value", []history.Op{
			put(0, "a", "x", 0, 10, 5), cas(0, "a", "x", "y", 11, 20, true, 6), get(0, "a", "y", 21, 22, 6),
		}, true},
		{"cas succeeds on a stale value", []history.Op{
			put(0, "a", "x", 0, 10, 5), put(0, "a", "z", 11, 20, 6), cas(1, "a", "x", "y", 21, 30, true, 7),
		}, false},
		{"cas fails although its compare holds", []history.Op{
			put(0, "a", "x", 0, 10, 5), cas(1, "a", "x", "y", 11, 20, false, 0),
		}, false},
		{"cas fails on another value", []history.Op{
			put(0, "a", "x", 0, 10, 5), cas(1, "a", "w", "y", 11, 20, false, 0), get(1, "a", "x", 21, 22, 5),
		}, true},
		{"delete then read absent", []history.Op{
			put(0, "a", "x", 0, 10, 5), del(0, "a", 11, 20, 1, 6), getMissing(1, "a", 21, 22),
		}, true},
		{"delete of an absent key deletes nothing", []history.Op{del(0, "a", 0, 1, 1, 3)}, false},
		{"read sees a deleted value", []history.Op{
			put(0, "a", "x", 0, 10, 5), del(0, "a", 11, 20, 1, 6), get(1, "a", "x", 21, 22, 5),
		}, false},
		{"acknowledged write lost", []history.Op{put(0, "a", "x", 0, 10, 5), getMissing(1, "a", 11, 12)}, false},
		{"acknowledged write lost under a later read of an older value", []history.Op{
			put(0, "a", "x", 0, 10, 5), put(1, "a", "y", 11, 20, 6), get(2, "a", "y", 21, 22, 6), get(2, "a", "x", 23, 24, 5),
		}, false},
		{"a write that certainly failed is read", []history.Op{
			op(0, KindPut, "a", 0, 10, history.Fail, func(o *history.Op) { o.Value = "x" }), get(1, "a", "x", 11, 12, 5),
		}, false},
		{"unknown cas applies only if its compare held", []history.Op{
			put(0, "a", "x", 0, 10, 5), put(0, "a", "z", 11, 20, 6),
			op(1, KindCAS, "a", 21, 30, history.Unknown, func(o *history.Op) { o.Old, o.Value = "x", "y" }), get(2, "a", "y", 31, 32, 7),
		}, false},
		{"unknown delete may apply late", []history.Op{
			put(0, "a", "x", 0, 10, 5), op(1, KindDelete, "a", 11, 20, history.Unknown, nil), get(2, "a", "x", 21, 22, 5), getMissing(2, "a", 23, 24),
		}, true},
		{"keys are independent", []history.Op{
			put(0, "a", "x", 0, 10, 5), put(0, "b", "y", 11, 20, 6), get(1, "a", "x", 21, 22, 5), getMissing(1, "c", 21, 22),
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, vs := CheckLinearizable(KVModel, KVOperations(tt.ops), LinearizableOptions{Name: "kv", Timeout: 10 * time.Second, PartitionName: KVPartitionName})
			if tt.legal {
				require.Empty(t, vs)
			} else {
				require.NotEmpty(t, vs)
				require.Equal(t, "linearizability", vs[0].Checker)
			}
		})
	}
}

func TestKVOperationsDropsFailuresAndOpensUnknownWrites(t *testing.T) {
	ops := []history.Op{
		put(0, "a", "x", 0, 10, 5),
		op(1, KindGet, "a", 1, 2, history.Fail, nil),
		putUnknown(2, "a", "y", 3, 4),
		op(3, KindPut, "a", 5, 6, history.Fail, func(o *history.Op) { o.Value = "z" }),
	}
	got := KVOperations(ops)
	require.Len(t, got, 2)
	require.Greater(t, got[1].Return, int64(10e6), "an unknown write stays open past the end of the history")
	require.True(t, got[1].Output.(KVOutput).Unknown)
}

func TestIllegalHistoryIsVisualized(t *testing.T) {
	dir := t.TempDir()
	ops := []history.Op{put(0, "k", "x", 0, 10, 5), put(0, "k", "y", 11, 20, 7), get(1, "k", "x", 21, 22, 5)}
	st, vs := CheckLinearizable(KVModel, KVOperations(append(ops, put(2, "j", "x", 0, 1, 3))), LinearizableOptions{Name: "kv", VisualizationDir: dir, PartitionName: KVPartitionName})
	require.Equal(t, Stats{Checked: 4, Partitions: 2}, st, "two keys checked, none timed out")
	require.Len(t, vs, 1)
	require.Equal(t, filepath.Join(dir, "kv-key_k.html"), vs[0].Artifact)
	b, err := os.ReadFile(vs[0].Artifact)
	require.NoError(t, err)
	require.Contains(t, string(b), "<html")
	require.Contains(t, vs[0].Details, `get -> "x"@5`)
}
