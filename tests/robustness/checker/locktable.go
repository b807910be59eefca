package checker

import (
	"fmt"
	"hash/fnv"
	"math/bits"
	"slices"
	"strings"

	"github.com/anishathalye/porcupine"

	"github.com/concord-dev/concord/tests/robustness/history"
)

// MaxTableLocks is the most mutexes the lock-table model follows at once:
// it checks them together, in one partition, so its state stays small.
const MaxTableLocks = 4

// LockTableState is the model's state of a cluster's whole lock table
// under a lock limit (--max-locks): the state of each of its mutexes, in
// the order of the model's names.
type LockTableState struct {
	Locks [MaxTableLocks]LockState
}

// held is how many of the mutexes are held.
func (t LockTableState) held() int {
	n := 0
	for _, s := range t.Locks {
		if s.Holder != "" {
			n++
		}
	}
	return n
}

// LockTableInput is one operation of the lock-table model: a lock
// operation on the mutex at Index, or, for KindLockSessionGone, on every
// mutex, with Seals holding a bit for each one grants of which were
// requested in the session. An acquire of several mutexes at once
// (LockAll) is one operation: Also holds a bit for each mutex it claims
// besides the one at Index.
type LockTableInput struct {
	LockInput
	Index int
	Seals uint32
	Also  uint32
}

// claims is the set of mutexes the operation acts on, as bits.
func (in LockTableInput) claims() uint32 { return in.Also | 1<<in.Index }

// LockTable is the sequential specification of concord's mutexes under a
// lock limit, for a workload whose clients only try-lock (no waiter is
// ever queued): a held mutex is two entries of the limit (the lock and its
// grant), a free one none.
//
// A try-lock of several mutexes at once (LockAll) takes all of them or
// none: it fails as locked when any of them is held; otherwise it is
// granted, with one token for all, exactly when the entries of all of
// them fit (2·held + 2·k ≤ Limit), and refused over the limit when they
// do not, even when some of them alone would fit. Its release is taken
// one mutex at a time, which accepts every history the atomic release
// would.
//
// Every mutex behaves as in LockStep. In addition, as the state machine
// admits an acquire (lock.Request.Admit): a try-lock of a free mutex is
// granted only if its two entries fit (2·held + 2 ≤ Limit), and is
// refused with QUOTA_EXCEEDED exactly when they do not; a try-lock of a
// held mutex fails as locked, never as over the limit. Grants of other
// mutexes whose sessions may have expired may have ended by then: a grant
// the limit needs ended is ended (any of them, which makes the model
// nondeterministic), and a refusal needs the grants alive, which the model
// keeps alive until an operation needs them ended. An acquire of unknown
// outcome may have been refused over the limit, so it may have changed
// nothing. A refusal needs the acquire's session alive, as a grant does:
// none is answered in a session seen gone.
type LockTable struct {
	// Names are the mutexes, at most MaxTableLocks.
	Names []string
	// Limit is the cluster's --max-locks.
	Limit int
}

// Steps returns the states an operation may lead to (none when it cannot
// happen).
func (m LockTable) Steps(t LockTableState, in LockTableInput, out LockOutput) []LockTableState {
	if in.Kind == KindLockSessionGone {
		for i := range m.Names {
			li := in.LockInput
			li.Seals = in.Seals&(1<<i) != 0
			ok, next := LockStep(t.Locks[i], li, LockOutput{})
			if !ok {
				return nil
			}
			t.Locks[i] = next
		}
		return []LockTableState{t}
	}
	i := in.Index
	acquire := in.Kind == KindLockAcquire || in.Kind == KindLockTry
	if acquire && in.Also != 0 {
		return m.stepsAll(t, in, out)
	}
	switch {
	case acquire && out.Quota:
		// Refused over the limit: the session lived (the state machine
		// answers SESSION_NOT_FOUND before it counts), the mutex was
		// free (its grant, if any, ended) and the others' grants fill
		// the limit.
		s := t.Locks[i]
		if goneHas(s.Gone, in.Session) {
			return nil
		}
		if s.Holder != "" {
			if !s.endable(in.Return) {
				return nil
			}
			t.Locks[i] = s.free()
		}
		if 2*t.held()+2 <= m.Limit {
			return nil
		}
		return []LockTableState{t}
	case acquire && (out.OK || out.Unknown):
		var next []LockTableState
		if out.Unknown {
			// Refused over the limit, or never applied: nothing changed.
			next = append(next, t)
		}
		for _, s := range LockSteps(t.Locks[i], in.LockInput, out) {
			if s.Holder == "" || s.Holder != in.Owner {
				continue // not granted (a Bounded acquire that never applied: offered above)
			}
			g := t
			g.Locks[i] = s
			next = append(next, m.admit(g, 1<<i, in.Return)...)
		}
		return next
	default:
		var next []LockTableState
		for _, s := range LockSteps(t.Locks[i], in.LockInput, out) {
			n := t
			n.Locks[i] = s
			next = append(next, n)
		}
		return next
	}
}

// stepsAll is Steps for an acquire of several mutexes at once (the bits
// of in.claims()).
func (m LockTable) stepsAll(t LockTableState, in LockTableInput, out LockOutput) []LockTableState {
	set := in.claims()
	for i := range m.Names {
		if set&(1<<i) != 0 && goneHas(t.Locks[i].Gone, in.Session) {
			// No grant and no refusal over the limit in a session seen
			// gone: an acquire of unknown outcome never applied.
			switch {
			case out.Unknown:
				return []LockTableState{t}
			case out.OK || out.Quota:
				return nil
			}
		}
	}
	switch {
	case out.Quota:
		// Every claimed mutex was free (a held one fails the call as
		// locked before the limit is counted) and their entries did not
		// fit.
		for i := range m.Names {
			if set&(1<<i) == 0 || t.Locks[i].Holder == "" {
				continue
			}
			if !t.Locks[i].endable(in.Return) {
				return nil
			}
			t.Locks[i] = t.Locks[i].free()
		}
		if 2*t.held()+2*bits.OnesCount32(set) <= m.Limit {
			return nil
		}
		return []LockTableState{t}
	case out.OK || out.Unknown:
		var next []LockTableState
		if out.Unknown {
			// Refused over the limit, or never applied: nothing changed.
			next = append(next, t)
		}
		g := t
		for i := range m.Names {
			if set&(1<<i) == 0 {
				continue
			}
			li := in.LockInput
			li.Name = m.Names[i]
			ok, s := LockStep(t.Locks[i], li, LockOutput{Unknown: out.Unknown, OK: out.OK, Token: out.Token})
			if !ok || s.Holder != in.Owner {
				return next
			}
			g.Locks[i] = s
		}
		return append(next, m.admit(g, set, in.Return)...)
	default:
		// Not acquired: at least one of them was held.
		for i := range m.Names {
			if set&(1<<i) != 0 && t.Locks[i].Holder != "" {
				return []LockTableState{t}
			}
		}
		return nil
	}
}

// admit returns the states in which t, just after a grant of the mutexes
// in set, fits the limit: t itself, or t with as few other grants ended
// as the limit needs, among those that may have ended by ret (every such
// choice).
func (m LockTable) admit(t LockTableState, set uint32, ret int64) []LockTableState {
	over := t.held() - m.Limit/2
	if over <= 0 {
		return []LockTableState{t}
	}
	var endable []int
	for j := range m.Names {
		if set&(1<<j) == 0 && t.Locks[j].Holder != "" && t.Locks[j].endable(ret) {
			endable = append(endable, j)
		}
	}
	var out []LockTableState
	for set := uint32(0); set < 1<<len(endable); set++ {
		if bits.OnesCount32(set) != over {
			continue
		}
		n := t
		for k, j := range endable {
			if set&(1<<k) != 0 {
				n.Locks[j] = n.Locks[j].free()
			}
		}
		out = append(out, n)
	}
	return out
}

// Model returns the porcupine model: one partition, the whole table.
func (m LockTable) Model() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Init: func() []interface{} { return []interface{}{LockTableState{}} },
		Step: func(state, input, output interface{}) []interface{} {
			next := m.Steps(state.(LockTableState), input.(LockTableInput), output.(LockOutput))
			out := make([]interface{}, len(next))
			for i, s := range next {
				out[i] = s
			}
			return out
		},
		Equal: func(a, b interface{}) bool { return a.(LockTableState) == b.(LockTableState) },
		Hash: func(state interface{}) uint64 {
			h := fnv.New64a()
			for _, s := range state.(LockTableState).Locks {
				fmt.Fprintf(h, "%s|%d|%d|%d|%d|%s;", s.Holder, s.Token, s.Session, s.Protected, s.Floor, s.Gone)
			}
			return h.Sum64()
		},
		DescribeOperation: func(input, output interface{}) string {
			in, out := input.(LockTableInput), output.(LockOutput)
			if in.Kind == KindLockSessionGone {
				return lockModel.DescribeOperation(in.LockInput, out)
			}
			names := m.namesOf(in.claims())
			if out.Quota {
				return fmt.Sprintf("trylock %s (%s) -> over the limit", names, in.Owner)
			}
			return names + ": " + lockModel.DescribeOperation(in.LockInput, out)
		},
		DescribeState: func(state interface{}) string {
			t := state.(LockTableState)
			parts := make([]string, len(m.Names))
			for i, n := range m.Names {
				parts[i] = n + " " + lockModel.DescribeState(t.Locks[i])
			}
			return fmt.Sprintf("limit %d; ", m.Limit) + strings.Join(parts, "; ")
		},
		DescribeOperationMetadata: describeMetadata,
	}
	return nm.ToModel()
}

// namesOf joins the names of the mutexes in set with "+".
func (m LockTable) namesOf(set uint32) string {
	var names []string
	for i, n := range m.Names {
		if set&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	return strings.Join(names, "+")
}

// Operations turns recorded operations into the model's (as LockOperations
// does): an observation that a session is gone becomes one operation on
// the whole table, and so does an acquire of several mutexes at once (the
// workload records one operation per mutex, each with the call's owner,
// which no other call uses, and its return). Operations on other locks
// than Names are dropped.
func (m LockTable) Operations(ops []history.Op, opt LockOptions) []porcupine.Operation {
	lops := LockOperations(ops, opt)
	out := make([]porcupine.Operation, 0, len(lops))
	type observation struct {
		process      int
		call, ret    int64
		session      int64
		metadataText string
	}
	gone := map[observation]int{} // an observation -> its operation in out
	type call struct {
		process int
		ret     int64
		kind    history.Kind
		owner   string
	}
	acquires := map[call]int{} // an acquire -> its operation in out
	for _, op := range lops {
		in := op.Input.(LockInput)
		i := slices.Index(m.Names, in.Name)
		if i < 0 {
			continue
		}
		if in.Kind == KindLockAcquire || in.Kind == KindLockTry {
			key := call{op.ClientId, op.Return, in.Kind, in.Owner}
			if k, seen := acquires[key]; seen {
				t := out[k].Input.(LockTableInput)
				t.Also |= 1 << i
				out[k].Input = t
				out[k].Call = min(out[k].Call, op.Call)
				continue
			}
			acquires[key] = len(out)
		}
		if in.Kind != KindLockSessionGone {
			op.Input = LockTableInput{LockInput: in, Index: i}
			out = append(out, op)
			continue
		}
		key := observation{op.ClientId, op.Call, op.Return, in.Session, fmt.Sprint(op.Metadata)}
		k, seen := gone[key]
		if !seen {
			k = len(out)
			gone[key] = k
			in.Name = ""
			op.Input = LockTableInput{LockInput: in}
			out = append(out, op)
		}
		if in.Seals {
			t := out[k].Input.(LockTableInput)
			t.Seals |= 1 << i
			t.LockInput.Seals = false
			out[k].Input = t
		}
	}
	return out
}

// LockTablePartitionName names the model's one partition.
func LockTablePartitionName([]porcupine.Operation) string { return "lock table" }
