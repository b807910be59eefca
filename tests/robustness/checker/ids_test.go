package checker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/tests/robustness/history"
)

// idop builds an ID operation of process p on stream s; times in ms.
func idop(p int, kind history.Kind, stream string, call, ret int64, ids ...int64) history.Op {
	return history.Op{Process: p, Workload: "ids", Kind: kind, Key: "t", Stream: stream, Count: int64(len(ids)), IDs: ids,
		Call: call * 1e6, Return: ret * 1e6, Status: history.OK}
}

func alloc(p int, call, ret, start, end int64) history.Op {
	o := idop(p, KindIDAlloc, "alloc/"+owner(p), call, ret, start, end)
	o.Count = end - start
	return o
}

func allocUnknown(p int, call, ret, count int64) history.Op {
	return history.Op{Process: p, Workload: "ids", Kind: KindIDAlloc, Key: "t", Stream: "alloc/" + owner(p), Count: count,
		Call: call * 1e6, Return: ret * 1e6, Status: history.Unknown}
}

func TestIDModel(t *testing.T) {
	tests := []struct {
		name  string
		ops   []history.Op
		legal bool
	}{
		{"allocations move the tag forward", []history.Op{alloc(0, 0, 10, 100, 110), alloc(1, 11, 20, 110, 115), alloc(0, 21, 30, 115, 120)}, true},
		{"gaps are allowed (allocations of unknown outcome, other buffers)", []history.Op{
			alloc(0, 0, 10, 100, 110), allocUnknown(1, 11, 20, 5), alloc(0, 21, 30, 500, 510),
		}, true},
		{"concurrent allocations in either order", []history.Op{alloc(0, 0, 10, 110, 120), alloc(1, 0, 10, 100, 110)}, true},
		{"an allocation after another one returned is below it", []history.Op{alloc(0, 0, 10, 110, 120), alloc(1, 11, 20, 100, 110)}, false},
		{"overlapping allocations", []history.Op{alloc(0, 0, 10, 100, 110), alloc(1, 0, 10, 105, 115)}, false},
		{"a segment of the wrong size", []history.Op{func() history.Op { o := alloc(0, 0, 10, 100, 110); o.Count = 5; return o }()}, false},
		{"a stream's IDs increase", []history.Op{
			idop(0, KindIDNext, "s", 0, 10, 1, 2, 7), idop(0, KindIDNext, "s", 11, 20, 9), idop(1, KindIDNext, "r", 11, 20, 3),
		}, true},
		{"a stream's IDs go back", []history.Op{idop(0, KindIDNext, "s", 0, 10, 1, 2, 7), idop(0, KindIDNext, "s", 11, 20, 5)}, false},
		{"a stream repeats an ID", []history.Op{idop(0, KindSnowflake, "s", 0, 10, 1, 2, 7), idop(0, KindSnowflake, "s", 11, 20, 7)}, false},
		{"IDs out of order within a call", []history.Op{idop(0, KindMemberSnowflake, "s", 0, 10, 1, 7, 2)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, vs := CheckLinearizable(IDModel, IDOperations(tt.ops), LinearizableOptions{Name: "ids", Timeout: 10 * time.Second, PartitionName: IDPartitionName})
			if tt.legal {
				require.Empty(t, vs)
			} else {
				require.NotEmpty(t, vs)
				require.Equal(t, "linearizability", vs[0].Checker)
			}
		})
	}
}

func TestIDOperations(t *testing.T) {
	ops := []history.Op{
		alloc(0, 0, 10, 100, 110),
		allocUnknown(1, 11, 20, 5),
		idop(2, KindIDNext, "n", 21, 30, 7),
		idop(3, KindIDNext, "n", 21, 30),
	}
	got := IDOperations(ops)
	require.Len(t, got, 3, "an allocation goes to its stream and its tag's counter; calls that returned nothing are left out")
	var names []string
	for _, p := range partitionIDs(got) {
		names = append(names, IDPartitionName(p))
	}
	require.Equal(t, []string{"allocations of tag t", "stream alloc/a", "stream n"}, names)
}

func TestCheckIDs(t *testing.T) {
	snow := func(p int, ids ...int64) history.Op {
		o := idop(p, KindSnowflake, "g", 0, 1, ids...)
		o.Key = ""
		return o
	}
	member := func(p int, ids ...int64) history.Op {
		o := idop(p, KindMemberSnowflake, "m", 0, 1, ids...)
		o.Key = ""
		return o
	}
	tags := map[string]TagFinal{TagNamespace("t"): {Start: 100, Next: 200, Exclusive: true}}
	seqs := map[string]TagFinal{SequenceNamespace("s"): {Start: 1, Next: 11, Exclusive: true}}
	// tagS allocates [start, end) from tag "s", named as sequence s is.
	tagS := func(p int, start, end int64) history.Op { o := alloc(p, 0, 1, start, end); o.Key = "s"; return o }
	seq := func(p int, first, end int64) history.Op {
		o := alloc(p, 0, 1, first, end)
		o.Kind, o.Key, o.Stream = KindIDSequence, "s", "sequence/"+owner(p)
		return o
	}
	seqUnknown := func(p int, count int64) history.Op {
		o := allocUnknown(p, 0, 1, count)
		o.Kind, o.Key, o.Stream = KindIDSequence, "s", "sequence/"+owner(p)
		return o
	}
	tests := []struct {
		name string
		ops  []history.Op
		tags map[string]TagFinal
		want string
	}{
		{"unique", []history.Op{alloc(0, 0, 1, 100, 110), idop(1, KindIDNext, "n", 0, 1, 150, 151), snow(2, 150)}, map[string]TagFinal{TagNamespace("t"): {Start: 100, Next: 200}}, ""},
		{"a number in a segment and from a buffer", []history.Op{alloc(0, 0, 1, 100, 110), idop(1, KindIDNext, "n", 0, 1, 105)}, nil, "returned twice"},
		{"a snowflake from the SDK and from a member", []history.Op{snow(0, 7, 8), member(1, 8)}, nil, "snowflake: ID 8 returned twice"},
		{"tags are separate namespaces", []history.Op{alloc(0, 0, 1, 100, 110), func() history.Op { o := idop(1, KindIDNext, "n", 0, 1, 105); o.Key = "u"; return o }()}, nil, ""},
		{"a number the tag never handed out", []history.Op{idop(1, KindIDBuffer, "b", 0, 1, 250)}, map[string]TagFinal{TagNamespace("t"): {Start: 100, Next: 200}}, "outside"},
		{"accounted for", []history.Op{alloc(0, 0, 1, 100, 150), allocUnknown(1, 0, 1, 50)}, tags, ""},
		{"an allocation applied twice", []history.Op{alloc(0, 0, 1, 100, 150), allocUnknown(1, 0, 1, 20)}, tags, "applied twice"},
		// A sequence is gap-free: [1, 11) handed out by calls asking for
		// 6 and 4 values (one of unknown outcome) is whole.
		{"a sequence accounted for", []history.Op{seq(0, 1, 7), seqUnknown(1, 4)}, seqs, ""},
		{"a sequence that skipped values", []history.Op{seq(0, 1, 7)}, seqs, "numbers skipped"},
		{"a sequence value twice", []history.Op{seq(0, 1, 7), seq(1, 6, 11)}, seqs, "sequence s: ID 6 returned twice"},
		{"a sequence and a tag of one name are separate", []history.Op{seq(0, 1, 7), seqUnknown(1, 4), tagS(2, 1, 3)}, nil, ""},
		// The tag's allocation does not account for the sequence's values.
		{"a sequence that skipped values, beside a tag of its name", []history.Op{seq(0, 1, 7), tagS(2, 1, 5)}, map[string]TagFinal{
			SequenceNamespace("s"): {Start: 1, Next: 11, Exclusive: true}, TagNamespace("s"): {Start: 1, Next: 5, Exclusive: true},
		}, "sequence s handed out 10 numbers, more than the 6"},
		// Nor is the tag's range the sequence's.
		{"a tag's numbers checked against its own range, not a sequence's", []history.Op{seq(0, 1, 11), tagS(2, 100, 104)}, map[string]TagFinal{
			SequenceNamespace("s"): {Start: 1, Next: 11, Exclusive: true}, TagNamespace("s"): {Start: 100, Next: 104, Exclusive: true},
		}, ""},
		{"a tag's number outside its range, beside a sequence of its name", []history.Op{seq(0, 1, 11), tagS(2, 100, 105)}, map[string]TagFinal{
			SequenceNamespace("s"): {Start: 1, Next: 11, Exclusive: true}, TagNamespace("s"): {Start: 100, Next: 104, Exclusive: true},
		}, "tag s: ID 104 lies outside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, vs := CheckIDs(tt.ops, tt.tags)
			if tt.want == "" {
				require.Empty(t, vs)
				return
			}
			require.NotEmpty(t, vs)
			require.Equal(t, "ids", vs[0].Checker)
			require.Contains(t, vs[0].Summary, tt.want)
		})
	}
}
