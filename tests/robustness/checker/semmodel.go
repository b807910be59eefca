package checker

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"strings"

	"github.com/anishathalye/porcupine"

	"github.com/concord-dev/concord/tests/robustness/history"
)

// Semaphore operation kinds. The semaphore's name is the operation's Key,
// the permits an acquire asks for (or a release gives back) its Count. The
// semaphore workload's clients also record KindLockSessionGone when they
// see one of their sessions gone.
const (
	// KindSemAcquire waits for Count permits: Succeeded with the granted
	// Token, or an unknown outcome.
	KindSemAcquire history.Kind = "sem-acquire"
	// KindSemTry is a try-acquire of Count permits: Succeeded with the
	// granted Token, or not Succeeded when refused (ErrLocked).
	KindSemTry history.Kind = "sem-try"
	// KindSemRelease releases Owner's grant under Token: Succeeded, or not
	// Succeeded when the server said it was not held (ErrNotHeld).
	KindSemRelease history.Kind = "sem-release"
	// KindSemInspect reads a semaphore linearizably (InspectLock): Holders
	// is the number of holders, Value their list (EncodeSemHolders), Count
	// the permits they hold in all; Self is the inspecting client's own
	// grant of the semaphore, if any.
	KindSemInspect history.Kind = "sem-inspect"
)

// SemHolderView is one holder of a semaphore as an inspection read it.
type SemHolderView struct {
	Owner   string `json:"o"`
	Permits int    `json:"p"`
	Token   uint64 `json:"t"`
}

// EncodeSemHolders renders an inspection's holders for Op.Value.
func EncodeSemHolders(hs []SemHolderView) string {
	hs = append([]SemHolderView(nil), hs...)
	sort.Slice(hs, func(i, j int) bool { return hs[i].Owner < hs[j].Owner })
	b, _ := json.Marshal(hs)
	return string(b)
}

// DecodeSemHolders parses what EncodeSemHolders wrote.
func DecodeSemHolders(s string) ([]SemHolderView, error) {
	if s == "" {
		return nil, nil
	}
	var hs []SemHolderView
	err := json.Unmarshal([]byte(s), &hs)
	return hs, err
}

// SemInput is one semaphore operation as the model sees it.
type SemInput struct {
	Kind history.Kind
	Name string
	// Capacity is the semaphore's capacity N.
	Capacity int
	// Owner is the grant acted for (requested, released); for an
	// inspection, the inspecting client's own grant (or "").
	Owner string
	// Session is the operation's session (the session seen gone, for
	// KindLockSessionGone).
	Session int64
	// Permits asked for.
	Permits int
	// Token released under.
	Token uint64
	// Protected: see LockInput.
	Protected int64
	// Return bounds the linearization point (math.MaxInt64 when unknown).
	Return int64
}

// SemOutput is what a semaphore operation returned.
type SemOutput struct {
	Unknown, Bounded bool
	// OK: granted, released.
	OK    bool
	Token uint64
	// Holders is what an inspection read.
	Holders []SemHolderView
}

// SemHolder is one grant of the model's semaphore.
type SemHolder struct {
	Owner   string
	Session int64
	Permits int
	// Token is the grant's token; 0 while unknown (an acquire of unknown
	// outcome), then MinToken bounds it from below.
	Token, MinToken uint64
	// Protected: until then the grant ends only by a release.
	Protected int64
}

// SemState is the model's state of one semaphore: its grants, sorted by
// owner.
type SemState struct {
	Holders []SemHolder
	// Floor is the highest token known granted; later grants carry a
	// token at least Floor.
	Floor uint64
	// Sealed: an operation was linearized after the last grant carrying
	// Floor, so that command is over: later grants are above Floor.
	Sealed bool
}

func (s SemState) used() int {
	n := 0
	for _, h := range s.Holders {
		n += h.Permits
	}
	return n
}

func (s SemState) find(owner string) int {
	for i, h := range s.Holders {
		if h.Owner == owner {
			return i
		}
	}
	return -1
}

func (s SemState) clone() SemState {
	s.Holders = append([]SemHolder(nil), s.Holders...)
	return s
}

// without returns s without the holders whose bit is set in mask.
func (s SemState) without(mask int) SemState {
	out := SemState{Floor: s.Floor, Sealed: s.Sealed}
	for i, h := range s.Holders {
		if mask&(1<<i) == 0 {
			out.Holders = append(out.Holders, h)
		}
	}
	return out
}

func (s SemState) with(h SemHolder) SemState {
	s = s.clone()
	s.Holders = append(s.Holders, h)
	sort.Slice(s.Holders, func(i, j int) bool { return s.Holders[i].Owner < s.Holders[j].Owner })
	return s
}

func (h SemHolder) endable(ret int64) bool { return ret >= h.Protected }

// makeRoom returns the states in which permits more fit under capacity,
// reached by ending minimal sets of grants that may have ended by ret
// (their sessions may have expired). None when no set makes room.
func (s SemState) makeRoom(permits, capacity int, ret int64) []SemState {
	if permits < 1 || permits > capacity {
		return nil
	}
	need := s.used() + permits - capacity
	if need <= 0 {
		return []SemState{s}
	}
	var endable int
	for i, h := range s.Holders {
		if h.endable(ret) {
			endable |= 1 << i
		}
	}
	freed := func(mask int) int {
		n := 0
		for i, h := range s.Holders {
			if mask&(1<<i) != 0 {
				n += h.Permits
			}
		}
		return n
	}
	var out []SemState
	for mask := endable; mask > 0; mask = (mask - 1) & endable {
		if freed(mask) < need {
			continue
		}
		minimal := true
		for i := range s.Holders {
			if mask&(1<<i) != 0 && freed(mask&^(1<<i)) >= need {
				minimal = false
				break
			}
		}
		if minimal {
			out = append(out, s.without(mask))
		}
	}
	return out
}

// SemSteps is the sequential specification of one of concord's counting
// semaphores of capacity N, with the states an operation may lead to (none
// when it cannot happen).
//
// A grant of k permits (1 <= k <= N) is made only when the permits held
// stay within N. Tokens are Raft indexes: a grant's token is at least the
// highest token granted before it, and equal to it only while no other
// operation was linearized since (grants made by one command share its
// index); a try-acquire's grant is made by its own command, so it is
// strictly above. A try-acquire is refused while the permits would exceed
// N or others queue: the model does not track the queue, and since a
// waiter queues only behind a holder, it allows a refusal whenever the
// semaphore has a holder, and forbids it when it has none. A release
// succeeds exactly when the owner holds under that token. An inspection
// reads every holder with its permits and token. A session seen gone
// (KindLockSessionGone) holds nothing afterwards.
//
// As in LockStep, grants may end at any time their session may have
// expired (the operation's linearization point may lie past Protected);
// the model ends them lazily, when an operation needs them gone: an
// acquire ends minimal sets of them to make room, a release refused or an
// inspection not listing a grant ends it. Acquires of unknown outcome are
// granted, with a token not yet known, when their linearization point is
// placed (never, when placed at the end of the history); when their session
// was seen gone (Bounded) they may also never have applied. The model never
// holds more than N permits, so any observation of more is a violation.
func SemSteps(s SemState, in SemInput, out SemOutput) []SemState {
	// A sample of the holder's session deadline extends its protection.
	if i := s.find(in.Owner); in.Owner != "" && i >= 0 && in.Protected > s.Holders[i].Protected {
		s = s.clone()
		s.Holders[i].Protected = in.Protected
	}
	seal := func(s SemState) SemState { s.Sealed = true; return s }
	switch in.Kind {
	case KindSemAcquire, KindSemTry:
		if s.find(in.Owner) >= 0 {
			return nil // owners are never reused
		}
		switch {
		case out.Unknown:
			min := s.Floor
			if s.Sealed || in.Kind == KindSemTry {
				min++
			}
			var next []SemState
			for _, r := range s.makeRoom(in.Permits, in.Capacity, in.Return) {
				next = append(next, r.with(SemHolder{Owner: in.Owner, Session: in.Session, Permits: in.Permits, MinToken: min}))
			}
			if out.Bounded {
				next = append(next, s)
			}
			return next
		case out.OK:
			if out.Token < s.Floor || (out.Token == s.Floor && (s.Sealed || in.Kind == KindSemTry)) {
				return nil
			}
			var next []SemState
			for _, r := range s.makeRoom(in.Permits, in.Capacity, in.Return) {
				r = r.with(SemHolder{Owner: in.Owner, Session: in.Session, Permits: in.Permits, Token: out.Token, Protected: in.Protected})
				r.Floor, r.Sealed = out.Token, false
				next = append(next, r)
			}
			return next
		default:
			if in.Kind != KindSemTry || len(s.Holders) == 0 {
				return nil
			}
			return []SemState{seal(s)}
		}
	case KindSemRelease:
		i := s.find(in.Owner)
		matches := i >= 0 && (s.Holders[i].Token == in.Token || (s.Holders[i].Token == 0 && in.Token >= s.Holders[i].MinToken))
		switch {
		case out.Unknown:
			if matches {
				return []SemState{s.without(1 << i)}
			}
			return []SemState{s}
		case out.OK:
			if !matches {
				return nil
			}
			next := seal(s.without(1 << i))
			next.Floor = max(next.Floor, in.Token)
			return []SemState{next}
		default:
			if !matches {
				return []SemState{seal(s)}
			}
			var next []SemState
			if s.Holders[i].endable(in.Return) {
				next = append(next, seal(s.without(1<<i)))
			}
			if s.Holders[i].Token == 0 {
				next = append(next, seal(s)) // its token may be another
			}
			return next
		}
	case KindSemInspect:
		if out.Unknown {
			return []SemState{s}
		}
		seen := map[string]SemHolderView{}
		total := 0
		for _, v := range out.Holders {
			if _, dup := seen[v.Owner]; dup {
				return nil
			}
			seen[v.Owner] = v
			total += v.Permits
		}
		if total > in.Capacity {
			return nil
		}
		next := SemState{Floor: s.Floor, Sealed: true}
		for _, h := range s.Holders {
			v, ok := seen[h.Owner]
			if !ok {
				if !h.endable(in.Return) {
					return nil
				}
				continue
			}
			delete(seen, h.Owner)
			if v.Permits != h.Permits {
				return nil
			}
			switch {
			case h.Token == v.Token:
			case h.Token == 0 && v.Token >= h.MinToken:
				h.Token = v.Token
				next.Floor = max(next.Floor, v.Token)
			default:
				return nil
			}
			next.Holders = append(next.Holders, h)
		}
		if len(seen) > 0 {
			return nil // a holder the model never granted
		}
		return []SemState{next}
	case KindLockSessionGone:
		next := SemState{Floor: s.Floor, Sealed: true}
		for _, h := range s.Holders {
			if h.Session != in.Session || in.Session == 0 {
				next.Holders = append(next.Holders, h)
			}
		}
		return []SemState{next}
	}
	return nil
}

// SemModel is the porcupine model of concord's semaphores, partitioned per
// semaphore name (SemSteps, through porcupine's power-set construction).
var SemModel = semModel.ToModel()

func semEqual(a, b SemState) bool {
	if a.Floor != b.Floor || a.Sealed != b.Sealed || len(a.Holders) != len(b.Holders) {
		return false
	}
	for i := range a.Holders {
		if a.Holders[i] != b.Holders[i] {
			return false
		}
	}
	return true
}

var semModel = porcupine.NondeterministicModel{
	Partition: partitionBy(func(op porcupine.Operation) string { return op.Input.(SemInput).Name }),
	Init:      func() []interface{} { return []interface{}{SemState{}} },
	Step: func(state, input, output interface{}) []interface{} {
		next := SemSteps(state.(SemState), input.(SemInput), output.(SemOutput))
		out := make([]interface{}, len(next))
		for i, s := range next {
			out[i] = s
		}
		return out
	},
	Equal: func(a, b interface{}) bool { return semEqual(a.(SemState), b.(SemState)) },
	Hash: func(state interface{}) uint64 {
		s := state.(SemState)
		h := fnv.New64a()
		fmt.Fprintf(h, "%d|%t", s.Floor, s.Sealed)
		for _, x := range s.Holders {
			fmt.Fprintf(h, "|%s,%d,%d,%d,%d,%d", x.Owner, x.Session, x.Permits, x.Token, x.MinToken, x.Protected)
		}
		return h.Sum64()
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(SemInput), output.(SemOutput)
		res := ""
		switch {
		case out.Bounded:
			res = "unknown (session gone by its end)"
		case out.Unknown:
			res = "unknown"
		case in.Kind == KindSemInspect:
			var parts []string
			for _, v := range out.Holders {
				parts = append(parts, fmt.Sprintf("%s:%d@%d", v.Owner, v.Permits, v.Token))
			}
			res = "[" + strings.Join(parts, " ") + "]"
		case (in.Kind == KindSemAcquire || in.Kind == KindSemTry) && out.OK:
			res = fmt.Sprintf("granted @%d", out.Token)
		case in.Kind == KindSemTry:
			res = "refused"
		case in.Kind == KindSemRelease && out.OK:
			res = "released"
		case in.Kind == KindSemRelease:
			res = "not held"
		default:
			res = "ok"
		}
		switch in.Kind {
		case KindSemAcquire:
			return fmt.Sprintf("acquire(%s, %d/%d) -> %s", in.Owner, in.Permits, in.Capacity, res)
		case KindSemTry:
			return fmt.Sprintf("try(%s, %d/%d) -> %s", in.Owner, in.Permits, in.Capacity, res)
		case KindSemRelease:
			return fmt.Sprintf("release(%s@%d) -> %s", in.Owner, in.Token, res)
		case KindLockSessionGone:
			return fmt.Sprintf("session %d gone", in.Session)
		default:
			return fmt.Sprintf("inspect -> %s", res)
		}
	},
	DescribeState: func(state interface{}) string {
		s := state.(SemState)
		var parts []string
		for _, h := range s.Holders {
			tok := fmt.Sprint(h.Token)
			if h.Token == 0 {
				tok = fmt.Sprintf("?>=%d", h.MinToken)
			}
			p := fmt.Sprintf("%s:%d@%s (session %d", h.Owner, h.Permits, tok, h.Session)
			if h.Protected > 0 {
				p += fmt.Sprintf(", lives until %.3fs", float64(h.Protected)/1e9)
			}
			parts = append(parts, p+")")
		}
		sealed := ""
		if s.Sealed {
			sealed = ", sealed"
		}
		return fmt.Sprintf("%d held [%s] (floor %d%s)", s.used(), strings.Join(parts, "; "), s.Floor, sealed)
	},
	DescribeOperationMetadata: describeMetadata,
}

// SemPartitionName names a semaphore partition by its semaphore.
func SemPartitionName(ops []porcupine.Operation) string {
	if len(ops) == 0 {
		return "empty"
	}
	return "semaphore " + ops[0].Input.(SemInput).Name
}

// SemOptions: the clocks of the run (as for locks), and each semaphore's
// capacity.
type SemOptions struct {
	LockOptions
	// Capacity returns a semaphore's capacity.
	Capacity func(name string) int
}

// SemOperations turns recorded semaphore operations into porcupine
// operations, as LockOperations does: operations of unknown outcome get an
// open interval, closed when their session was later seen gone (Bounded);
// failed ones and inspections of unknown outcome are dropped. Every
// observation that a session is gone becomes an operation of every
// semaphore's partition.
func SemOperations(ops []history.Op, opt SemOptions) []porcupine.Operation {
	var end int64
	gone := map[int64]int64{}
	var names []string
	seenName := map[string]bool{}
	for _, o := range ops {
		end = max(end, o.Return, o.Call)
		if o.Kind == KindLockSessionGone && o.Status == history.OK && o.Session != 0 {
			if g, ok := gone[o.Session]; !ok || o.Return < g {
				gone[o.Session] = o.Return
			}
		}
		if o.Key != "" && !seenName[o.Key] && o.Kind != KindLockSessionGone {
			seenName[o.Key] = true
			names = append(names, o.Key)
		}
	}
	sort.Strings(names)
	capacity := func(name string) int {
		if opt.Capacity == nil {
			return 0
		}
		return opt.Capacity(name)
	}
	infinity := end + 1
	out := make([]porcupine.Operation, 0, len(ops))
	for _, o := range ops {
		meta := fmt.Sprintf("op %d, process %d", o.ID, o.Process)
		if o.Kind == KindLockSessionGone {
			if o.Status != history.OK || o.Session == 0 {
				continue
			}
			for _, n := range names {
				out = append(out, porcupine.Operation{ClientId: o.Process, Call: o.Call, Return: o.Return, Metadata: meta,
					Input:  SemInput{Kind: o.Kind, Name: n, Capacity: capacity(n), Session: o.Session, Return: o.Return},
					Output: SemOutput{}})
			}
			continue
		}
		switch o.Kind {
		case KindSemAcquire, KindSemTry, KindSemRelease, KindSemInspect:
		default:
			continue
		}
		in := SemInput{Kind: o.Kind, Name: o.Key, Capacity: capacity(o.Key), Owner: o.Owner, Session: o.Session,
			Permits: int(o.Count), Token: o.Token, Protected: opt.Protected(o), Return: o.Return}
		var outp SemOutput
		ret := o.Return
		switch o.Status {
		case history.OK:
			outp.OK = o.Succeeded
			switch o.Kind {
			case KindSemAcquire, KindSemTry:
				outp.Token, in.Token = o.Token, 0
			case KindSemInspect:
				in.Owner, in.Token = o.Self, 0
				hs, err := DecodeSemHolders(o.Value)
				if err != nil {
					continue
				}
				outp = SemOutput{Holders: hs}
			}
		case history.Unknown:
			if o.Kind == KindSemInspect {
				continue
			}
			outp = SemOutput{Unknown: true}
			if o.Kind != KindSemRelease {
				in.Token = 0
			}
			ret, in.Return = infinity, math.MaxInt64
			if g, ok := gone[o.Session]; ok && o.Session != 0 && g >= o.Return {
				ret, in.Return, outp.Bounded = g, g, true
			}
		default:
			continue
		}
		out = append(out, porcupine.Operation{ClientId: o.Process, Input: in, Output: outp, Call: o.Call, Return: ret, Metadata: meta})
	}
	return out
}
