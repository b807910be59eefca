package checker

import (
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"strings"

	"github.com/anishathalye/porcupine"

	"github.com/concord-dev/concord/tests/robustness/history"
)

// ID operation kinds. Each returns IDs and names the Stream they belong to.
const (
	// KindIDAlloc is AllocSegment(Key, Count): IDs is [start, end).
	KindIDAlloc history.Kind = "id-alloc"
	// KindIDNext is NextIDs(Key, Count) from a member's buffer.
	KindIDNext history.Kind = "id-next"
	// KindIDBuffer is Count numbers taken from the SDK's segment buffer
	// (idgen.Segments) of tag Key.
	KindIDBuffer history.Kind = "id-buffer"
	// KindSnowflake is Count IDs of an SDK snowflake generator.
	KindSnowflake history.Kind = "id-snowflake"
	// KindMemberSnowflake is NextSnowflakes(Count) from a member's
	// generator.
	KindMemberSnowflake history.Kind = "id-member-snowflake"
	// KindIDSequence is NextSequence(Key, Count) of a strict sequence: IDs
	// is [first, last+1). It is checked as an allocation: a counter whose
	// calls return contiguous ranges, never applied twice; and, the
	// sequence being gap-free, every value below the final one was handed
	// out by an acknowledged call or by one of unknown outcome.
	KindIDSequence history.Kind = "id-sequence"
)

// isAlloc reports whether an ID operation allocates a range from a
// counter (a segment tag or a sequence).
func isAlloc(k history.Kind) bool { return k == KindIDAlloc || k == KindIDSequence }

// isIDKind reports whether k is an ID operation.
func isIDKind(k history.Kind) bool {
	switch k {
	case KindIDAlloc, KindIDSequence, KindIDNext, KindIDBuffer, KindSnowflake, KindMemberSnowflake:
		return true
	}
	return false
}

// SnowflakeNamespace is the uniqueness namespace of snowflakes of the
// default pool (the SDK's generators and the members' share it).
const SnowflakeNamespace = "snowflake"

// TagNamespace is the uniqueness namespace of a segment tag's numbers.
func TagNamespace(tag string) string { return "tag " + tag }

// SequenceNamespace is the uniqueness namespace of a sequence's values.
func SequenceNamespace(name string) string { return "sequence " + name }

// Namespace returns the uniqueness namespace of an ID operation.
func Namespace(o history.Op) string {
	switch o.Kind {
	case KindSnowflake, KindMemberSnowflake:
		return SnowflakeNamespace
	case KindIDSequence:
		return SequenceNamespace(o.Key)
	default:
		return TagNamespace(o.Key)
	}
}

// idRanges returns the IDs an operation returned as ranges [lo, hi).
func idRanges(o history.Op) [][2]int64 {
	if isAlloc(o.Kind) {
		if len(o.IDs) != 2 {
			return nil
		}
		return [][2]int64{{o.IDs[0], o.IDs[1]}}
	}
	out := make([][2]int64, len(o.IDs))
	for i, id := range o.IDs {
		out[i] = [2]int64{id, id + 1}
	}
	return out
}

// Partitions of the ID model.
const (
	// idCounter checks a tag's AllocSegment calls against the tag's
	// counter.
	idCounter = "counter"
	// idMonotonic checks that a stream's IDs increase.
	idMonotonic = "monotonic"
)

// IDInput is one ID operation as the model sees it.
type IDInput struct {
	// Partition is the tag (for the counter) or the stream; Mode says
	// which.
	Partition string
	Mode      string
	Kind      history.Kind
	Count     int64
	// IDs are the IDs returned ([start, end) for an allocation).
	IDs []int64
}

// IDStep is the sequential specification of ID allocation.
//
// Counter (a tag's AllocSegment calls, state: the tag's next number): an
// allocation of count returns [start, start+count) with start at or above
// the tag's next number, which then moves to its end. Allocations that
// never returned may have consumed numbers (gaps are allowed), so they are
// left out.
//
// Monotonic (one stream, state: the highest ID it returned): the IDs of an
// operation increase, and the first is above every ID the stream returned
// before (for an allocation, its range lies above them).
func IDStep(state int64, in IDInput) (bool, int64) {
	if in.Mode == idCounter {
		if len(in.IDs) != 2 || in.IDs[0] < state || in.IDs[1]-in.IDs[0] != in.Count {
			return false, state
		}
		return true, in.IDs[1]
	}
	if len(in.IDs) == 0 {
		return true, state
	}
	if isAlloc(in.Kind) {
		if len(in.IDs) != 2 || in.IDs[0] <= state || in.IDs[1] <= in.IDs[0] {
			return false, state
		}
		return true, in.IDs[1] - 1
	}
	last := state
	for _, id := range in.IDs {
		if id <= last {
			return false, state
		}
		last = id
	}
	return true, last
}

// IDModel is the porcupine model of ID allocation, partitioned per tag
// (its AllocSegment calls, checked as a counter) and per stream (checked
// for increasing IDs).
var IDModel = porcupine.Model{
	Partition: partitionIDs,
	Init:      func() interface{} { return int64(math.MinInt64) },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		return IDStep(state.(int64), input.(IDInput))
	},
	Equal: func(a, b interface{}) bool { return a.(int64) == b.(int64) },
	Hash: func(state interface{}) uint64 {
		h := fnv.New64a()
		fmt.Fprint(h, state.(int64))
		return h.Sum64()
	},
	DescribeOperation: func(input, output interface{}) string {
		in := input.(IDInput)
		switch {
		case isAlloc(in.Kind) && len(in.IDs) == 2:
			return fmt.Sprintf("%s(%d) -> [%d, %d)", in.Kind, in.Count, in.IDs[0], in.IDs[1])
		case len(in.IDs) > 4:
			return fmt.Sprintf("%s(%d) -> %d, %d, ..., %d", in.Kind, in.Count, in.IDs[0], in.IDs[1], in.IDs[len(in.IDs)-1])
		default:
			return fmt.Sprintf("%s(%d) -> %v", in.Kind, in.Count, in.IDs)
		}
	},
	DescribeState: func(state interface{}) string {
		s := state.(int64)
		if s == math.MinInt64 {
			return "nothing returned yet"
		}
		return fmt.Sprintf("next/last %d", s)
	},
	DescribeOperationMetadata: describeMetadata,
}

// partitionIDs splits an ID history by mode and partition.
var partitionIDs = partitionBy(func(op porcupine.Operation) string {
	in := op.Input.(IDInput)
	return in.Mode + " " + in.Partition
})

// IDPartitionName names an ID partition.
func IDPartitionName(ops []porcupine.Operation) string {
	if len(ops) == 0 {
		return "empty"
	}
	in := ops[0].Input.(IDInput)
	if in.Mode == idCounter {
		return "allocations of " + in.Partition
	}
	return "stream " + in.Partition
}

// IDOperations turns recorded ID operations into porcupine operations:
// every operation that returned IDs goes to its stream's partition, and
// every allocation also to its tag's counter. Operations that returned
// nothing are left out.
func IDOperations(ops []history.Op) []porcupine.Operation {
	var out []porcupine.Operation
	for _, o := range ops {
		if !isIDKind(o.Kind) {
			continue
		}
		if o.Status != history.OK || len(o.IDs) == 0 {
			continue
		}
		meta := fmt.Sprintf("op %d, process %d", o.ID, o.Process)
		add := func(partition, mode string) {
			out = append(out, porcupine.Operation{ClientId: o.Process, Call: o.Call, Return: o.Return, Metadata: meta,
				Input: IDInput{Partition: partition, Mode: mode, Kind: o.Kind, Count: o.Count, IDs: o.IDs}})
		}
		if o.Stream != "" {
			add(o.Stream, idMonotonic)
		}
		if isAlloc(o.Kind) {
			add(Namespace(o), idCounter) // "tag t" or "sequence s": apart
		}
	}
	return out
}

// TagFinal is a tag (or a sequence) as read after the heal: it handed out
// [Start, Next).
type TagFinal struct {
	Start, Next int64
	// Exclusive: only the recorded AllocSegment (NextSequence) calls
	// allocate from the tag, so their counts account for every number it
	// handed out.
	Exclusive bool
}

// CheckIDs checks what a sequential model cannot see, with tags holding
// the tags and sequences as read after the heal, keyed by their namespace
// (TagNamespace, SequenceNamespace: a tag and a sequence of one name are
// apart):
//
//   - uniqueness: no ID is returned twice, across every client, member
//     and generator, within its namespace (a segment tag; snowflakes of
//     the default pool), counting every number of an allocated segment;
//   - range: every number of a tag lies in [start, next) of the tag as
//     read after the heal (handed out by a committed allocation);
//   - accounting, for tags only the recorded allocations use: the tag
//     handed out no more numbers than the acknowledged allocations and
//     those of unknown outcome asked for (an allocation retried by the SDK
//     is applied once). For a sequence, gap-free, the same bound says that
//     every value it passed was handed out by an acknowledged call or may
//     have been by one of unknown outcome: none was skipped.
func CheckIDs(ops []history.Op, tags map[string]TagFinal) (Stats, []Violation) {
	var (
		stats      Stats
		violations []Violation
	)
	report := func(summary string, involved ...history.Op) {
		if len(violations) >= 20 {
			return
		}
		var details string
		for _, o := range involved {
			s := o.String()
			if len(s) > 600 {
				s = s[:600] + "..."
			}
			details += s + "\n"
		}
		violations = append(violations, Violation{Checker: "ids", Summary: summary, Details: details})
	}
	seen := map[string]map[int64]history.Op{}
	asked := map[string]int64{} // namespace -> numbers asked by acknowledged or unknown allocations
	for _, o := range ops {
		if !isIDKind(o.Kind) {
			continue
		}
		ns := Namespace(o)
		if isAlloc(o.Kind) && o.Status != history.Fail {
			asked[ns] += o.Count
		}
		if o.Status != history.OK {
			continue
		}
		m := seen[ns]
		if m == nil {
			m = map[int64]history.Op{}
			seen[ns] = m
		}
		tag, isTag := tags[ns]
		for _, r := range idRanges(o) {
			for id := r[0]; id < r[1]; id++ {
				stats.Checked++
				if prev, dup := m[id]; dup {
					report(fmt.Sprintf("%s: ID %d returned twice", ns, id), prev, o)
					continue
				}
				m[id] = o
				if isTag && (id < tag.Start || id >= tag.Next) {
					report(fmt.Sprintf("%s: ID %d lies outside what the tag handed out, [%d, %d)", ns, id, tag.Start, tag.Next), o)
				}
			}
		}
	}
	var names []string
	for name := range tags {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		tag := tags[name]
		if !tag.Exclusive {
			continue
		}
		if used := tag.Next - tag.Start; used > asked[name] {
			report(fmt.Sprintf("%s handed out %d numbers, more than the %d its allocations asked for (acknowledged or of unknown outcome): an allocation applied twice, or numbers skipped",
				name, used, asked[name]))
		}
	}
	return stats, violations
}

// DescribeIDs summarizes the IDs of a history, for logs.
func DescribeIDs(ops []history.Op) string {
	count := map[history.Kind]int{}
	for _, o := range ops {
		if o.Status == history.OK {
			for _, r := range idRanges(o) {
				count[o.Kind] += int(r[1] - r[0])
			}
		}
	}
	var parts []string
	for _, k := range []history.Kind{KindIDAlloc, KindIDSequence, KindIDNext, KindIDBuffer, KindSnowflake, KindMemberSnowflake} {
		if count[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, count[k]))
		}
	}
	return strings.Join(parts, ", ")
}
