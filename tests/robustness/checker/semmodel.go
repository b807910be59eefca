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
//
// The model checks read-write locks and mutexes too, as semaphores: a
// mutex is a semaphore of capacity 1, and a read-write lock one of
// capacity RWCapacity, of which a reader takes one permit and a writer
// every permit.
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
	// KindSemUpgrade converts Owner's read grant of a read-write lock into
	// the write grant, in place: Succeeded with the write grant's Token,
	// or not Succeeded when refused because others read
	// (ErrWouldDeadlock), or not Succeeded and Lost when the server
	// answered LOST (client.ErrConversionLost): the owner's grant had
	// ended, and the conversion took nothing. The model holds the cluster
	// to rules version 2 or later (the harness waits for it before the
	// workloads start): an owner that no longer holds is answered LOST,
	// never granted or queued anew.
	KindSemUpgrade history.Kind = "sem-upgrade"
	// KindSemDowngrade converts Owner's write grant into a read grant:
	// Succeeded with the write grant's Token, or not Succeeded and Lost as
	// for KindSemUpgrade.
	KindSemDowngrade history.Kind = "sem-downgrade"
	// KindSemForce is an operator's force-release of the lock's holders
	// under Token (every holder when 0): Succeeded with Holders the number
	// released, or not Succeeded when none held (ErrNotHeld).
	KindSemForce history.Kind = "sem-force"
)

// RWCapacity is the capacity of a read-write lock as the model sees it: a
// reader takes one permit, a writer all of them.
const RWCapacity = 1 << 20

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
	// Owner is the grant acted for (requested, released, converted); for
	// an inspection, the inspecting client's own grant (or "").
	Owner string
	// Session is the operation's session (the session seen gone, for
	// KindLockSessionGone).
	Session int64
	// Seals: see LockInput.
	Seals bool
	// Permits asked for.
	Permits int
	// Token released under (or force-released, 0 for every holder).
	Token uint64
	// Protected: see LockInput.
	Protected int64
	// Hold, for an acquire with a hold time, is the least time (in clock
	// nanoseconds) the grant lasts after it is made; 0 without one.
	Hold int64
	// Call is the operation's invocation, a lower bound of its
	// linearization point.
	Call int64
	// Return bounds the linearization point (math.MaxInt64 when unknown).
	Return int64
	// MayRefuse: a try-acquire that may be refused whatever the lock's
	// holders: it claimed several locks (another may be held), or a
	// waiter for several locks may have queued for this one while it
	// was free (it waits for another).
	MayRefuse bool
	// MayQueue: a try-acquire during which a waiting request for this
	// lock may have been queued (a waiter queues only behind holders).
	MayQueue bool
}

// SemOutput is what a semaphore operation returned.
type SemOutput struct {
	Unknown, Bounded bool
	// OK: granted, released, converted, force-released.
	OK    bool
	Token uint64
	// Holders is what an inspection read.
	Holders []SemHolderView
	// Released is the number of holders a force-release ended.
	Released int
	// Lost: a conversion answered LOST (the converted grant had ended; it
	// took nothing). OK is then false.
	Lost bool
}

// SemHolder is one grant of the model's semaphore.
type SemHolder struct {
	Owner   string
	Session int64
	Permits int
	// Token is the grant's token; 0 while unknown (an acquire of unknown
	// outcome), then MinToken bounds it from below.
	Token, MinToken uint64
	// Protected: until then the grant ends only by a release, unless its
	// hold time ends first.
	Protected int64
	// Hold is the least time the grant lasts with its hold time (0: none);
	// HoldEnd is the earliest the hold time may end it.
	Hold, HoldEnd int64
	// Abandoned: the outcome of the operation that made or converted the
	// grant is unknown, so the SDK takes it back (client/lock.go abandon)
	// at a moment of its own: it may end at any time.
	Abandoned bool
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
	// Gone lists the sessions seen gone so far that grants of the
	// semaphore were requested in (sorted, comma-separated, as
	// LockState.Gone): none can be granted afterwards.
	Gone string
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
	out := SemState{Floor: s.Floor, Sealed: s.Sealed, Gone: s.Gone}
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

// replaced returns s with holder i replaced by h.
func (s SemState) replaced(i int, h SemHolder) SemState {
	s = s.clone()
	s.Holders[i] = h
	return s
}

func (s SemState) sealed() SemState { s.Sealed = true; return s }

// endable reports whether the grant may have ended by ret: its session may
// have expired, or its hold time may be over.
func (h SemHolder) endable(ret int64) bool {
	return h.Abandoned || ret >= h.Protected || (h.HoldEnd > 0 && ret >= h.HoldEnd)
}

// endableMask returns the holders that may have ended by ret.
func (s SemState) endableMask(ret int64) int {
	m := 0
	for i, h := range s.Holders {
		if h.endable(ret) {
			m |= 1 << i
		}
	}
	return m
}

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
	endable := s.endableMask(ret)
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

// grantNew is an acquire of permits by an owner that holds nothing: the
// states it leads to. ownCommand: the grant is made by the operation's own
// command (a try-acquire), so its token is above every earlier one.
func (s SemState) grantNew(in SemInput, out SemOutput, permits int, ownCommand bool) []SemState {
	h := SemHolder{Owner: in.Owner, Session: in.Session, Permits: permits, Hold: in.Hold}
	if in.Hold > 0 {
		h.HoldEnd = in.Call + in.Hold
	}
	above := s.Sealed || ownCommand
	if goneHas(s.Gone, in.Session) {
		// No grant is made in a session seen gone: an acquire of unknown
		// outcome never applied (when Bounded), one granted cannot be.
		if out.Unknown {
			return []SemState{s}
		}
		return nil
	}
	switch {
	case out.Unknown:
		h.Abandoned = true
		h.MinToken = s.Floor
		if above {
			h.MinToken++
		}
		var next []SemState
		for _, r := range s.makeRoom(permits, in.Capacity, in.Return) {
			next = append(next, r.with(h))
		}
		if out.Bounded {
			next = append(next, s)
		}
		return next
	case out.OK:
		if out.Token < s.Floor || (out.Token == s.Floor && above) {
			return nil
		}
		h.Token, h.Protected = out.Token, in.Protected
		var next []SemState
		for _, r := range s.makeRoom(permits, in.Capacity, in.Return) {
			r = r.with(h)
			r.Floor, r.Sealed = out.Token, false
			next = append(next, r)
		}
		return next
	}
	return nil
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
// (KindLockSessionGone) holds nothing afterwards, and is granted nothing.
//
// Read-write locks (capacity RWCapacity) add conversions. An upgrade of
// the only reader makes it the writer under a new token, above every
// earlier one; it is refused while others hold. A downgrade keeps the
// writer's token. A conversion converts the owner's grant or nothing (the
// rules of cluster rules version 2, which the harness waits for before
// the workloads start): one that succeeds is legal only where the owner
// still holds the grant it converts, so that an owner whose grant ended
// meanwhile (a force-release, its hold time, its session) is never
// granted anew; and one refused (others read) only where the owner still
// holds. A force-release ends every holder under its token (every holder
// when 0) and says how many; it is refused when none holds. A conversion
// answered LOST says that the owner's grant had ended (force-released, its
// hold time or its session over): it is legal only where the owner holds
// nothing, or holds a grant that may have ended by the answer (as the
// model ends grants lazily, it ends that grant then), and it takes
// nothing. A grant that provably still lasts (its session vouched for,
// its hold time not over, not released or force-released since) cannot be
// answered LOST. A conversion of unknown outcome may have done either:
// the owner's grant, converted or not, may end at any time (the SDK takes
// it back).
//
// As in LockStep, grants may end at any time their session may have
// expired (the operation's linearization point may lie past Protected) or
// their hold time may be over (past HoldEnd); the model ends them lazily,
// when an operation needs them gone: an acquire ends minimal sets of them
// to make room, a release refused or an inspection not listing a grant
// ends it. Acquires of unknown outcome are granted, with a token not yet
// known, when their linearization point is placed (never, when placed at
// the end of the history); when their session was seen gone (Bounded)
// they may also never have applied. The model never holds more than N
// permits, so any observation of more is a violation.
func SemSteps(s SemState, in SemInput, out SemOutput) []SemState {
	// A sample of the holder's session deadline extends its protection.
	if i := s.find(in.Owner); in.Owner != "" && i >= 0 && !s.Holders[i].Abandoned && in.Protected > s.Holders[i].Protected {
		s = s.clone()
		s.Holders[i].Protected = in.Protected
	}
	switch in.Kind {
	case KindSemAcquire, KindSemTry:
		if s.find(in.Owner) >= 0 {
			return nil // owners are never reused
		}
		if out.Unknown || out.OK {
			return s.grantNew(in, out, in.Permits, in.Kind == KindSemTry)
		}
		if in.Kind != KindSemTry {
			return nil
		}
		// Refused only when the permits do not fit beside holders that may
		// still hold, or waiters may queue (behind a holder).
		if !in.MayRefuse && s.used()+in.Permits <= in.Capacity && (!in.MayQueue || len(s.Holders) == 0) {
			return nil
		}
		return []SemState{s.sealed()}
	case KindSemUpgrade, KindSemDowngrade:
		return s.convert(in, out)
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
			next := s.without(1 << i).sealed()
			next.Floor = max(next.Floor, in.Token)
			return []SemState{next}
		default:
			if !matches {
				return []SemState{s.sealed()}
			}
			var next []SemState
			if s.Holders[i].endable(in.Return) {
				next = append(next, s.without(1<<i).sealed())
			}
			if s.Holders[i].Token == 0 {
				next = append(next, s.sealed()) // its token may be another
			}
			return next
		}
	case KindSemForce:
		return s.force(in, out)
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
		next := SemState{Floor: s.Floor, Sealed: true, Gone: s.Gone}
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
		next := SemState{Floor: s.Floor, Sealed: true, Gone: s.Gone}
		if in.Seals {
			next.Gone = goneAdd(s.Gone, in.Session)
		}
		for _, h := range s.Holders {
			if h.Session != in.Session || in.Session == 0 {
				next.Holders = append(next.Holders, h)
			}
		}
		return []SemState{next}
	}
	return nil
}

// convert is an upgrade or a downgrade of Owner's grant of a read-write
// lock (see SemSteps).
func (s SemState) convert(in SemInput, out SemOutput) []SemState {
	upgrade := in.Kind == KindSemUpgrade
	permits := 1 // what the owner holds afterwards
	if upgrade {
		permits = in.Capacity
	}
	var next []SemState
	i := s.find(in.Owner)
	if out.Lost {
		// The owner's grant had ended: the conversion took nothing.
		switch {
		case i < 0:
			return []SemState{s.sealed()}
		case s.Holders[i].endable(in.Return):
			return []SemState{s.without(1 << i).sealed()}
		}
		return nil // the owner still held
	}
	if i < 0 {
		// The owner holds nothing to convert: the server answers LOST and
		// takes nothing, so a conversion granted (or refused because
		// others read) cannot be; one of unknown outcome changed nothing.
		if out.Unknown {
			return []SemState{s}
		}
		return nil
	}
	h := s.Holders[i]
	if out.Unknown {
		// The SDK takes the conversion back, ending the owner's grant
		// (converted or not) whenever its take-back applies; if the grant
		// had ended first, the conversion took nothing, which ending the
		// abandoned grant lazily covers.
		h.Abandoned = true
		s = s.replaced(i, h)
	}
	if h.Permits == permits {
		// Already held so: acquiring again answers with the grant.
		switch {
		case out.Unknown:
			next = append(next, s)
		case out.OK && out.Token == h.Token:
			next = append(next, s.sealed())
		}
		return next
	}
	converted := h
	converted.Permits = permits
	if upgrade {
		// A new grant under the upgrade's own index, timed anew; every
		// other holder must be gone.
		others := s.without(1 << i)
		othersGone := others.endableMask(in.Return) == (1<<len(others.Holders))-1
		switch {
		case out.Unknown:
			next = append(next, s)
			if othersGone {
				converted.Token, converted.MinToken = 0, max(s.Floor, h.Token)+1
				if h.Hold > 0 {
					converted.HoldEnd = in.Call + h.Hold
				}
				next = append(next, SemState{Holders: []SemHolder{converted}, Floor: s.Floor, Sealed: true, Gone: s.Gone})
			}
		case out.OK:
			if out.Token <= s.Floor || out.Token <= h.Token || !othersGone {
				return next
			}
			converted.Token, converted.MinToken = out.Token, 0
			if h.Hold > 0 {
				converted.HoldEnd = in.Call + h.Hold
			}
			next = append(next, SemState{Holders: []SemHolder{converted}, Floor: out.Token, Sealed: true, Gone: s.Gone})
		default:
			if len(s.Holders) > 1 {
				next = append(next, s.sealed()) // refused: others read
			}
		}
		return next
	}
	// A downgrade keeps the grant, its token and its hold clock.
	switch {
	case out.Unknown:
		next = append(next, s, s.replaced(i, converted).sealed())
	case out.OK:
		switch {
		case h.Token == out.Token:
		case h.Token == 0 && out.Token >= h.MinToken:
			converted.Token, converted.MinToken = out.Token, 0
		default:
			return next
		}
		r := s.replaced(i, converted).sealed()
		r.Floor = max(r.Floor, out.Token)
		next = append(next, r)
	}
	return next
}

// force is a force-release (see SemSteps).
func (s SemState) force(in SemInput, out SemOutput) []SemState {
	// Holders released for certain, and holders whose token is not known
	// (an acquire of unknown outcome) that may carry in.Token.
	var def, maybe []int
	for i, h := range s.Holders {
		switch {
		case in.Token == 0 || h.Token == in.Token:
			def = append(def, i)
		case h.Token == 0 && in.Token >= h.MinToken:
			maybe = append(maybe, i)
		}
	}
	defMask, defEndable := 0, 0
	for _, i := range def {
		defMask |= 1 << i
		if s.Holders[i].endable(in.Return) {
			defEndable++
		}
	}
	var next []SemState
	for sub := 0; sub < 1<<len(maybe); sub++ {
		mask, n := defMask, 0
		for j, i := range maybe {
			if sub&(1<<j) != 0 {
				mask |= 1 << i
				n++
			}
		}
		switch {
		case out.Unknown:
			next = append(next, s.without(mask).sealed())
		case out.OK:
			// The definite holders that may have ended before it are
			// not counted.
			if k := out.Released - n; out.Released >= 1 && k >= len(def)-defEndable && k <= len(def) {
				next = append(next, s.without(mask).sealed())
			}
		default:
			if sub == 0 && defEndable == len(def) {
				next = append(next, s.without(defMask).sealed())
			}
		}
	}
	if out.Unknown {
		next = append(next, s)
	}
	return next
}

// SemModel is the porcupine model of concord's semaphores, partitioned per
// semaphore name (SemSteps, through porcupine's power-set construction).
var SemModel = semModel.ToModel()

func semEqual(a, b SemState) bool {
	if a.Floor != b.Floor || a.Sealed != b.Sealed || a.Gone != b.Gone || len(a.Holders) != len(b.Holders) {
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
		fmt.Fprintf(h, "%d|%t|%s", s.Floor, s.Sealed, s.Gone)
		for _, x := range s.Holders {
			fmt.Fprintf(h, "|%s,%d,%d,%d,%d,%d,%d,%d", x.Owner, x.Session, x.Permits, x.Token, x.MinToken, x.Protected, x.Hold, x.HoldEnd)
			fmt.Fprintf(h, ",%t", x.Abandoned)
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
				parts = append(parts, fmt.Sprintf("%s:%s@%d", v.Owner, describePermits(v.Permits, in.Capacity), v.Token))
			}
			res = "[" + strings.Join(parts, " ") + "]"
		case out.Lost:
			res = "lost (converted grant ended)"
		case in.Kind == KindSemForce && out.OK:
			res = fmt.Sprintf("%d released", out.Released)
		case in.Kind == KindSemUpgrade && !out.OK:
			res = "refused (others read)"
		case out.OK && in.Kind != KindSemRelease:
			res = fmt.Sprintf("granted @%d", out.Token)
		case in.Kind == KindSemTry:
			res = "refused"
		case out.OK:
			res = "released"
		default:
			res = "not held"
		}
		hold := ""
		if in.Hold > 0 {
			hold = fmt.Sprintf(", hold >= %.3fs", float64(in.Hold)/1e9)
		}
		switch in.Kind {
		case KindSemAcquire:
			return fmt.Sprintf("acquire(%s, %s/%s%s) -> %s", in.Owner, describePermits(in.Permits, in.Capacity), describeCapacity(in.Capacity), hold, res)
		case KindSemTry:
			return fmt.Sprintf("try(%s, %s/%s%s) -> %s", in.Owner, describePermits(in.Permits, in.Capacity), describeCapacity(in.Capacity), hold, res)
		case KindSemRelease:
			return fmt.Sprintf("release(%s@%d) -> %s", in.Owner, in.Token, res)
		case KindSemUpgrade:
			return fmt.Sprintf("upgrade(%s) -> %s", in.Owner, res)
		case KindSemDowngrade:
			return fmt.Sprintf("downgrade(%s) -> %s", in.Owner, res)
		case KindSemForce:
			return fmt.Sprintf("force-release(@%d) -> %s", in.Token, res)
		case KindLockSessionGone:
			return fmt.Sprintf("session %d gone", in.Session)
		default:
			return fmt.Sprintf("inspect -> %s", res)
		}
	},
	DescribeState: func(state interface{}) string {
		s := state.(SemState)
		var parts []string
		capacity := 0
		for _, h := range s.Holders {
			tok := fmt.Sprint(h.Token)
			if h.Token == 0 {
				tok = fmt.Sprintf("?>=%d", h.MinToken)
			}
			if h.Permits == RWCapacity {
				capacity = RWCapacity
			}
			p := fmt.Sprintf("%s:%s@%s (session %d", h.Owner, describePermits(h.Permits, capacity), tok, h.Session)
			if h.Protected > 0 {
				p += fmt.Sprintf(", lives until %.3fs", float64(h.Protected)/1e9)
			}
			if h.HoldEnd > 0 {
				p += fmt.Sprintf(", hold may end from %.3fs", float64(h.HoldEnd)/1e9)
			}
			parts = append(parts, p+")")
		}
		sealed := ""
		if s.Sealed {
			sealed = ", sealed"
		}
		if s.Gone != "" {
			sealed += ", sessions gone: " + s.Gone
		}
		return fmt.Sprintf("%d held [%s] (floor %d%s)", s.used(), strings.Join(parts, "; "), s.Floor, sealed)
	},
	DescribeOperationMetadata: describeMetadata,
}

// describePermits names what a grant holds: its permits, or "read" and
// "write" for a read-write lock.
func describePermits(permits, capacity int) string {
	switch {
	case capacity == RWCapacity && permits == RWCapacity:
		return "write"
	case capacity == RWCapacity && permits == 1:
		return "read"
	}
	return fmt.Sprint(permits)
}

func describeCapacity(capacity int) string {
	if capacity == RWCapacity {
		return "rw"
	}
	return fmt.Sprint(capacity)
}

// SemPartitionName names a semaphore partition by its semaphore.
func SemPartitionName(ops []porcupine.Operation) string {
	if len(ops) == 0 {
		return "empty"
	}
	in := ops[0].Input.(SemInput)
	switch in.Capacity {
	case RWCapacity:
		return "read-write lock " + in.Name
	case 1:
		return "mutex " + in.Name
	}
	return "semaphore " + in.Name
}

// SemOptions: the clocks of the run (as for locks), and each semaphore's
// capacity (RWCapacity for a read-write lock, 1 for a mutex).
type SemOptions struct {
	LockOptions
	// Capacity returns a semaphore's capacity.
	Capacity func(name string) int
}

// SemOperations turns recorded semaphore operations into porcupine
// operations, as LockOperations does: operations of unknown outcome get an
// open interval, closed when their session was seen gone (Bounded), at the
// observation's return or theirs if later; failed ones and inspections of
// unknown outcome are dropped. Every observation that a session is gone
// becomes an operation of every semaphore's partition, which seals the
// session (no grant in it afterwards) where grants were requested in it.
func SemOperations(ops []history.Op, opt SemOptions) []porcupine.Operation {
	var end int64
	gone := map[int64]int64{}
	var names []string
	seenName := map[string]bool{}
	type nameSession struct {
		name    string
		session int64
	}
	requested := map[nameSession]bool{} // sessions grants of a semaphore were requested in
	for _, o := range ops {
		end = max(end, o.Return, o.Call)
		switch o.Kind {
		case KindSemAcquire, KindSemTry, KindSemUpgrade, KindSemDowngrade:
			if o.Session != 0 {
				requested[nameSession{o.Key, o.Session}] = true
			}
		}
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
	// When a waiter for several locks may be queued on each: from its
	// call until granted, or, when its outcome is unknown, until its
	// session is seen gone.
	type span struct{ from, to int64 }
	multiWaits := map[string][]span{}
	for _, o := range ops {
		if o.Kind != KindSemAcquire || o.Locks < 2 || o.Status == history.Fail {
			continue
		}
		to := o.Return
		if o.Status == history.Unknown {
			to = end + 1
			if g, ok := gone[o.Session]; ok && o.Session != 0 {
				to = max(g, o.Return)
			}
		}
		multiWaits[o.Key] = append(multiWaits[o.Key], span{o.Call, to})
	}
	waits := map[string][]span{}
	for _, o := range ops {
		switch o.Kind {
		case KindSemAcquire, KindSemUpgrade, KindSemDowngrade:
		default:
			continue
		}
		if o.Status == history.OK && !o.Succeeded {
			continue // refused: never queued
		}
		to := o.Return
		if o.Status != history.OK {
			to = end + 1
			if g, ok := gone[o.Session]; ok && o.Session != 0 {
				to = max(g, o.Return)
			}
		}
		waits[o.Key] = append(waits[o.Key], span{o.Call, to})
	}
	mayQueue := func(o history.Op) bool {
		for _, w := range waits[o.Key] {
			if o.Kind == KindSemTry && w.from <= o.Return && o.Call <= w.to {
				return true
			}
		}
		return false
	}
	mayRefuse := func(o history.Op) bool {
		if o.Kind != KindSemTry {
			return false
		}
		if o.Locks > 1 {
			return true
		}
		for _, w := range multiWaits[o.Key] {
			if w.from <= o.Return && o.Call <= w.to {
				return true
			}
		}
		return false
	}
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
					Input:  SemInput{Kind: o.Kind, Name: n, Capacity: capacity(n), Session: o.Session, Seals: requested[nameSession{n, o.Session}], Return: o.Return},
					Output: SemOutput{}})
			}
			continue
		}
		switch o.Kind {
		case KindSemAcquire, KindSemTry, KindSemRelease, KindSemInspect, KindSemUpgrade, KindSemDowngrade, KindSemForce:
		default:
			continue
		}
		in := SemInput{Kind: o.Kind, Name: o.Key, Capacity: capacity(o.Key), Owner: o.Owner, Session: o.Session,
			Permits: int(o.Count), Token: o.Token, Protected: opt.Protected(o), Hold: opt.Hold(o), Call: o.Call, Return: o.Return, MayRefuse: mayRefuse(o), MayQueue: mayQueue(o)}
		var outp SemOutput
		ret := o.Return
		switch o.Status {
		case history.OK:
			outp.OK = o.Succeeded
			// Only a conversion that did not succeed is answered LOST.
			outp.Lost = o.Lost && !o.Succeeded && (o.Kind == KindSemUpgrade || o.Kind == KindSemDowngrade)
			switch o.Kind {
			case KindSemAcquire, KindSemTry, KindSemUpgrade, KindSemDowngrade:
				outp.Token, in.Token = o.Token, 0
			case KindSemForce:
				outp.Released = o.Holders
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
			if o.Kind != KindSemRelease && o.Kind != KindSemForce {
				in.Token = 0
			}
			ret, in.Return = infinity, math.MaxInt64
			if g, ok := gone[o.Session]; ok && o.Session != 0 {
				g = max(g, o.Return)
				ret, in.Return, outp.Bounded = g, g, true
			}
		default:
			continue
		}
		out = append(out, porcupine.Operation{ClientId: o.Process, Input: in, Output: outp, Call: o.Call, Return: ret, Metadata: meta})
	}
	return out
}
