package checker

import (
	"fmt"
	"hash/fnv"
	"math"

	"github.com/anishathalye/porcupine"

	"github.com/concord-dev/concord/tests/robustness/history"
)

// Key-value operation kinds.
const (
	KindGet    history.Kind = "get"
	KindPut    history.Kind = "put"
	KindCAS    history.Kind = "cas"
	KindDelete history.Kind = "delete"
)

// KVInput is the input of a register operation on one key.
type KVInput struct {
	Kind  history.Kind
	Key   string
	Value string // put, cas: the new value
	Old   string // cas: the expected value
}

// KVOutput is what a register operation returned. Unknown marks a write
// whose outcome the client never learned: it may have applied, or not.
type KVOutput struct {
	Unknown   bool
	Found     bool   // get
	Value     string // get
	Rev       uint64 // get: mod revision read; writes: the write's revision
	Succeeded bool   // cas
	Deleted   int64  // delete
}

// KVState is the model's state of one key. Values are unique per write, so
// the value names the write that produced it.
type KVState struct {
	Exists bool
	Value  string
	// Rev is the mod revision of Value, 0 while unknown (the value was
	// written by an operation of unknown outcome and not read since).
	Rev uint64
	// Floor is the highest revision of any write linearized so far:
	// revisions are Raft indexes, so writes apply in revision order.
	Floor uint64
}

// KVStep is the sequential specification of one key of concord's KV store:
// a register with get, put, compare-and-swap and delete, where every write
// carries the revision (Raft index) it was applied at, revisions of
// successive writes increase, and a get returns the revision of the write
// it reads.
func KVStep(s KVState, in KVInput, out KVOutput) (bool, KVState) {
	switch in.Kind {
	case KindGet:
		if !out.Found {
			return !s.Exists, s
		}
		if !s.Exists || s.Value != out.Value {
			return false, s
		}
		// A known revision must match; an unknown one (the value came
		// from a write of unknown outcome) must follow every write
		// linearized before that write.
		if (s.Rev != 0 && s.Rev != out.Rev) || (s.Rev == 0 && out.Rev <= s.Floor) {
			return false, s
		}
		s.Rev = out.Rev
		s.Floor = max(s.Floor, out.Rev)
		return true, s
	case KindPut:
		if out.Unknown {
			return true, KVState{Exists: true, Value: in.Value, Floor: s.Floor}
		}
		if out.Rev <= s.Floor {
			return false, s
		}
		return true, KVState{Exists: true, Value: in.Value, Rev: out.Rev, Floor: out.Rev}
	case KindCAS:
		holds := s.Exists && s.Value == in.Old
		if out.Unknown {
			if holds {
				return true, KVState{Exists: true, Value: in.Value, Floor: s.Floor}
			}
			return true, s
		}
		if !out.Succeeded {
			return !holds, s
		}
		if !holds || out.Rev <= s.Floor {
			return false, s
		}
		return true, KVState{Exists: true, Value: in.Value, Rev: out.Rev, Floor: out.Rev}
	case KindDelete:
		if out.Unknown {
			return true, KVState{Floor: s.Floor}
		}
		if (out.Deleted == 1) != s.Exists || out.Deleted > 1 || out.Rev <= s.Floor {
			return false, s
		}
		return true, KVState{Floor: out.Rev}
	}
	return false, s
}

// KVModel is the porcupine model of the KV store, partitioned per key.
var KVModel = porcupine.Model{
	Partition: partitionBy(func(op porcupine.Operation) string { return op.Input.(KVInput).Key }),
	Init:      func() interface{} { return KVState{} },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		return KVStep(state.(KVState), input.(KVInput), output.(KVOutput))
	},
	Equal: func(a, b interface{}) bool { return a.(KVState) == b.(KVState) },
	Hash: func(state interface{}) uint64 {
		s := state.(KVState)
		h := fnv.New64a()
		fmt.Fprintf(h, "%t|%s|%d|%d", s.Exists, s.Value, s.Rev, s.Floor)
		return h.Sum64()
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(KVInput), output.(KVOutput)
		res := ""
		switch {
		case out.Unknown:
			res = "unknown"
		case in.Kind == KindGet && !out.Found:
			res = "not found"
		case in.Kind == KindGet:
			res = fmt.Sprintf("%q@%d", out.Value, out.Rev)
		case in.Kind == KindCAS && !out.Succeeded:
			res = "compare failed"
		case in.Kind == KindDelete:
			res = fmt.Sprintf("deleted %d @%d", out.Deleted, out.Rev)
		default:
			res = fmt.Sprintf("@%d", out.Rev)
		}
		switch in.Kind {
		case KindPut:
			return fmt.Sprintf("put(%q) -> %s", in.Value, res)
		case KindCAS:
			return fmt.Sprintf("cas(%q→%q) -> %s", in.Old, in.Value, res)
		case KindDelete:
			return fmt.Sprintf("delete -> %s", res)
		default:
			return fmt.Sprintf("get -> %s", res)
		}
	},
	DescribeState: func(state interface{}) string {
		s := state.(KVState)
		if !s.Exists {
			return fmt.Sprintf("absent (floor %d)", s.Floor)
		}
		if s.Rev == 0 {
			return fmt.Sprintf("%q@? (floor %d)", s.Value, s.Floor)
		}
		return fmt.Sprintf("%q@%d (floor %d)", s.Value, s.Rev, s.Floor)
	},
	DescribeOperationMetadata: describeMetadata,
}

// KVOperations turns recorded key-value operations into porcupine
// operations. Successful operations keep their interval. Writes of unknown
// outcome get an open interval (they may take effect at any time after
// their call); reads and writes that certainly failed are dropped, as they
// had no effect.
func KVOperations(ops []history.Op) []porcupine.Operation {
	var end int64
	for _, o := range ops {
		end = max(end, o.Return, o.Call)
	}
	infinity := end + 1
	if infinity <= 0 {
		infinity = math.MaxInt64
	}
	out := make([]porcupine.Operation, 0, len(ops))
	for _, o := range ops {
		in := KVInput{Kind: o.Kind, Key: o.Key, Value: o.Value, Old: o.Old}
		switch o.Kind {
		case KindGet, KindPut, KindCAS, KindDelete:
		default:
			continue
		}
		var outp KVOutput
		ret := o.Return
		switch o.Status {
		case history.OK:
			outp = KVOutput{Found: o.Found, Rev: o.Rev, Succeeded: o.Succeeded, Deleted: o.Deleted}
			if o.Kind == KindGet {
				in.Value = ""
				outp.Value = o.Value
			}
		case history.Unknown:
			if o.Kind == KindGet {
				continue
			}
			outp = KVOutput{Unknown: true}
			ret = infinity
		default:
			continue
		}
		out = append(out, porcupine.Operation{
			ClientId: o.Process, Input: in, Output: outp, Call: o.Call, Return: ret,
			Metadata: fmt.Sprintf("op %d, process %d%s", o.ID, o.Process, endpointNote(o.Endpoint)),
		})
	}
	return out
}

func endpointNote(ep string) string {
	if ep == "" {
		return ""
	}
	return ", via " + ep
}
