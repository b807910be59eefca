package checker

import (
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/concord-dev/concord/tests/robustness/history"
)

// Lock operation kinds. The lock's name is the operation's Key.
const (
	// KindLockAcquire waits for a mutex: Succeeded with the granted Token,
	// or an unknown outcome.
	KindLockAcquire history.Kind = "lock-acquire"
	// KindLockTry is a try-lock: Succeeded with the granted Token, or not
	// Succeeded when the mutex was held (ErrLocked).
	KindLockTry history.Kind = "lock-try"
	// KindLockRelease releases Owner's grant under Token: Succeeded, or
	// not Succeeded when the server said it was not held (ErrNotHeld).
	KindLockRelease history.Kind = "lock-release"
	// KindLockInspect reads a lock linearizably (InspectLock): Holders,
	// and the holder's Owner and Token when there is one.
	KindLockInspect history.Kind = "lock-inspect"
	// KindFencedWrite is a transaction guarded by LockHeld(Key, Token),
	// sent by the holder Owner: Succeeded when it applied, not Succeeded
	// when the guard failed.
	KindFencedWrite history.Kind = "fenced-write"
	// KindLockSessionGone observes that a lock client's Session is gone
	// (a revoke acknowledged, or refused because the session no longer
	// existed): no grant of it exists after the operation returned, and
	// none can be made. It bounds the operations of unknown outcome the
	// client made in that session.
	KindLockSessionGone history.Kind = "lock-session-gone"
)

// LockInput is one lock operation as the model sees it.
type LockInput struct {
	Kind history.Kind
	Name string
	// Owner is the grant the operation acts for: the one requested,
	// released or written under; for an inspection, the grant the
	// inspecting client held (or "").
	Owner string
	// Token is the token released or written under.
	Token uint64
	// Session is the session the operation acts in (the session seen
	// gone, for KindLockSessionGone); 0 when not recorded.
	Session int64
	// Seals, for KindLockSessionGone, marks a session grants of this lock
	// were requested in: the state remembers it gone (LockState.Gone).
	Seals bool
	// Protected is a clock reading until which the session of Owner's
	// grant is known to live (0: nothing known). A confirmed keep-alive
	// vouches for it, as in CheckSessions.
	Protected int64
	// Return bounds the operation's linearization point: its return, or
	// math.MaxInt64 when the outcome is unknown.
	Return int64
	// Queued is, for a waiting acquire, when the client learned it was
	// queued (history.Op.Queued), 0 if it never did. Only the lock-table
	// model (LockTable) follows the queue; LockStep ignores it.
	Queued int64
	// Shared marks a read claim of a read-write lock (history.Op.Shared):
	// an acquire to read, or the release of a read grant. Only the
	// lock-table model (LockTable) takes them; LockStep refuses them.
	Shared bool
	// Permits is, for a claim of a semaphore, the permits it takes
	// (history.Op.Count); only the lock-table model follows semaphores.
	Permits int
}

// LockOutput is what a lock operation returned.
type LockOutput struct {
	// Unknown marks an operation whose outcome the client never learned.
	Unknown bool
	// Bounded marks an operation of unknown outcome whose effect lies
	// within its interval: its session was seen gone when it returned.
	// An acquire may then have been granted within it, or never.
	Bounded bool
	// OK: acquire and try-lock granted, release released, fenced write
	// applied.
	OK bool
	// Quota: an acquire refused over the cluster's lock limit
	// (QUOTA_EXCEEDED). Only the lock-table model (LockTable) allows it.
	Quota bool
	// Queued: a waiting acquire took a place in the queue (the first
	// part of a wait, in the lock-table model only).
	Queued bool
	// Token is the token an acquire was granted.
	Token uint64
	// Holders, Holder and HolderToken are what an inspection read.
	Holders     int
	Holder      string
	HolderToken uint64
}

// LockState is the model's state of one mutex.
type LockState struct {
	// Holder is the owner of the current grant, "" when free.
	Holder string
	// Token is the current grant's token; 0 while unknown (granted to an
	// acquire of unknown outcome, not read since).
	Token uint64
	// Session is the current grant's session (0 when not recorded).
	Session int64
	// Protected is the clock reading until which the holder's session is
	// known to live: until then the grant cannot end but by a release.
	Protected int64
	// Floor is the highest token granted so far (a lower bound of it when
	// the last grant's token is unknown): every later grant is above it.
	Floor uint64
	// Gone lists the sessions seen gone so far that grants of the lock
	// were requested in (sorted, comma-separated): none can be granted
	// afterwards.
	Gone string
}

func (s LockState) free() LockState { return LockState{Floor: s.Floor, Gone: s.Gone} }

// endable reports whether the current grant may have ended, by its
// session's expiry, at a linearization point no later than ret: a grant
// ends only when released or when its session ends, and the session lives
// at least until Protected.
func (s LockState) endable(ret int64) bool { return s.Holder == "" || ret >= s.Protected }

// goneHas reports whether the sorted, comma-separated session list gone
// holds session.
func goneHas(gone string, session int64) bool {
	if session == 0 || gone == "" {
		return false
	}
	for _, f := range strings.Split(gone, ",") {
		if f == strconv.FormatInt(session, 10) {
			return true
		}
	}
	return false
}

// goneAdd returns the sorted, comma-separated session list gone with
// session added.
func goneAdd(gone string, session int64) string {
	if goneHas(gone, session) {
		return gone
	}
	ids := []int64{session}
	if gone != "" {
		for _, f := range strings.Split(gone, ",") {
			id, _ := strconv.ParseInt(f, 10, 64)
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	fs := make([]string, len(ids))
	for i, id := range ids {
		fs[i] = strconv.FormatInt(id, 10)
	}
	return strings.Join(fs, ",")
}

// holds reports whether the current grant is owner's under token (an
// unknown token matches any).
func (s LockState) holds(owner string, token uint64) bool {
	return s.Holder != "" && s.Holder == owner && (s.Token == token || s.Token == 0)
}

// LockSteps is the sequential specification of one of concord's mutexes,
// with the states an operation may lead to (none when it cannot happen).
// An acquire of unknown outcome whose session was seen gone by the end of
// its interval (Bounded) may have been granted, or not; every other
// operation is deterministic (see LockStep).
func LockSteps(s LockState, in LockInput, out LockOutput) []LockState {
	if out.Bounded && (in.Kind == KindLockAcquire || in.Kind == KindLockTry) {
		ok, granted := LockStep(s, in, out)
		if ok {
			return []LockState{s, granted}
		}
		return []LockState{s}
	}
	if ok, next := LockStep(s, in, out); ok {
		return []LockState{next}
	}
	return nil
}

// LockStep is the deterministic part of the specification of one of
// concord's mutexes,
// with grants that may end at any time their session may have expired.
//
// A grant carries a token strictly greater than every earlier grant of the
// lock (tokens are Raft indexes, so they are not consecutive) and is made
// only while the lock is free. A release succeeds exactly when the owner
// holds the lock under that token, and frees it. A try-lock fails only
// while the lock is held. An inspection reads the holder and its token. A
// fenced write applies exactly when the lock is held under its token.
//
// Sessions can expire under faults, which ends their grants without an
// operation. The model lets the current grant end whenever an operation
// needs the lock free, or not held under a token (a later grant, a
// release or fenced write refused, an inspection finding it free), provided
// the operation's linearization point may lie past the time until which
// the grant's session was known to live (Protected). Ending a grant lazily,
// when an operation needs it, accepts every history that ending it at any
// earlier moment would; an ended grant never comes back, so an operation
// that shows a grant alive after another one was made (a successful
// release, a fenced write applied, an inspection) is a violation, as is a
// grant made while the holder's session was known to live.
//
// A session seen gone (KindLockSessionGone) holds no grant afterwards, and
// none is made in it: an acquire of unknown outcome in it is placed before
// the observation or never applies, even when the observation and its
// interval overlap.
func LockStep(s LockState, in LockInput, out LockOutput) (bool, LockState) {
	// A sample of the holder's session deadline extends its protection.
	if in.Owner != "" && s.Holder == in.Owner && in.Protected > s.Protected {
		s.Protected = in.Protected
	}
	if in.Shared || in.Permits != 0 {
		// Readers and semaphores are the lock-table model's (LockTable).
		return false, s
	}
	switch in.Kind {
	case KindLockAcquire, KindLockTry:
		if out.Quota {
			// One mutex alone knows no limit (LockTable does).
			return false, s
		}
		if (out.Unknown || out.OK) && goneHas(s.Gone, in.Session) {
			// No grant is made in a session seen gone: an acquire of
			// unknown outcome never applied (when Bounded, LockSteps
			// offers that), and one granted is a violation.
			return false, s
		}
		switch {
		case out.Unknown:
			// Granted now, with a token above the floor, if at all
			// (porcupine places it last when it never applied; when
			// Bounded, LockSteps offers not applying too). Its grant may
			// end at any time: the SDK releases an abandoned acquire in
			// the background, and the client revokes the session.
			if !s.endable(in.Return) {
				return false, s
			}
			return true, LockState{Holder: in.Owner, Session: in.Session, Floor: s.Floor + 1, Gone: s.Gone}
		case out.OK:
			if !s.endable(in.Return) || out.Token <= s.Floor {
				return false, s
			}
			return true, LockState{Holder: in.Owner, Token: out.Token, Session: in.Session, Protected: in.Protected, Floor: out.Token, Gone: s.Gone}
		default:
			// Not acquired: only while held (for a mutex, somebody
			// queues only while it is held).
			return s.Holder != "", s
		}
	case KindLockRelease:
		switch {
		case out.Unknown:
			if s.holds(in.Owner, in.Token) {
				return true, s.free()
			}
			return true, s
		case out.OK:
			if !s.holds(in.Owner, in.Token) || (s.Token == 0 && in.Token < s.Floor) {
				return false, s
			}
			s.Floor = max(s.Floor, in.Token)
			return true, s.free()
		default:
			if s.Holder == in.Owner && s.Token == in.Token {
				if !s.endable(in.Return) {
					return false, s
				}
				return true, s.free()
			}
			return true, s
		}
	case KindLockInspect:
		switch out.Holders {
		case 0:
			if !s.endable(in.Return) {
				return false, s
			}
			return true, s.free()
		case 1:
			if s.Holder != out.Holder {
				return false, s
			}
			if s.Token == 0 {
				if out.HolderToken < s.Floor {
					return false, s
				}
				s.Token, s.Floor = out.HolderToken, out.HolderToken
				return true, s
			}
			return s.Token == out.HolderToken, s
		default:
			return false, s
		}
	case KindFencedWrite:
		if out.Unknown {
			return true, s
		}
		if out.OK {
			if !s.holds(in.Owner, in.Token) {
				return false, s
			}
			if s.Token == 0 {
				if in.Token < s.Floor {
					return false, s
				}
				s.Token, s.Floor = in.Token, in.Token
			}
			return true, s
		}
		if s.Holder == in.Owner && s.Token == in.Token {
			if !s.endable(in.Return) {
				return false, s
			}
			return true, s.free()
		}
		return true, s
	case KindLockSessionGone:
		// The session ended (revoked, or expired) within the
		// observation: its grant ended with it, whatever protected it,
		// and none can be made in it afterwards.
		if in.Seals {
			s.Gone = goneAdd(s.Gone, in.Session)
		}
		if s.Holder != "" && in.Session != 0 && s.Session == in.Session {
			return true, s.free()
		}
		return true, s
	}
	return false, s
}

// LockModel is the porcupine model of concord's mutexes, partitioned per
// lock name (LockSteps, through porcupine's power-set construction).
var LockModel = lockModel.ToModel()

var lockModel = porcupine.NondeterministicModel{
	Partition: partitionBy(func(op porcupine.Operation) string { return op.Input.(LockInput).Name }),
	Init:      func() []interface{} { return []interface{}{LockState{}} },
	Step: func(state, input, output interface{}) []interface{} {
		next := LockSteps(state.(LockState), input.(LockInput), output.(LockOutput))
		out := make([]interface{}, len(next))
		for i, s := range next {
			out[i] = s
		}
		return out
	},
	Equal: func(a, b interface{}) bool { return a.(LockState) == b.(LockState) },
	Hash: func(state interface{}) uint64 {
		s := state.(LockState)
		h := fnv.New64a()
		fmt.Fprintf(h, "%s|%d|%d|%d|%d|%s", s.Holder, s.Token, s.Session, s.Protected, s.Floor, s.Gone)
		return h.Sum64()
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(LockInput), output.(LockOutput)
		res := ""
		switch {
		case out.Bounded:
			res = "unknown (session gone by its end)"
		case out.Unknown:
			res = "unknown"
		case in.Kind == KindLockInspect && out.Holders == 0:
			res = "free"
		case in.Kind == KindLockInspect:
			res = fmt.Sprintf("held by %s@%d", out.Holder, out.HolderToken)
			if out.Holders > 1 {
				res += fmt.Sprintf(" and %d more", out.Holders-1)
			}
		case (in.Kind == KindLockAcquire || in.Kind == KindLockTry) && out.OK:
			res = fmt.Sprintf("granted @%d", out.Token)
		case in.Kind == KindLockTry:
			res = "locked"
		case in.Kind == KindLockRelease && out.OK:
			res = "released"
		case in.Kind == KindLockRelease:
			res = "not held"
		case out.OK:
			res = "applied"
		default:
			res = "refused"
		}
		switch in.Kind {
		case KindLockAcquire:
			return fmt.Sprintf("lock(%s) -> %s", in.Owner, res)
		case KindLockTry:
			return fmt.Sprintf("trylock(%s) -> %s", in.Owner, res)
		case KindLockRelease:
			return fmt.Sprintf("unlock(%s@%d) -> %s", in.Owner, in.Token, res)
		case KindLockSessionGone:
			return fmt.Sprintf("session %d gone", in.Session)
		case KindFencedWrite:
			return fmt.Sprintf("fenced-write(%s@%d) -> %s", in.Owner, in.Token, res)
		default:
			return fmt.Sprintf("inspect -> %s", res)
		}
	},
	DescribeState: func(state interface{}) string {
		s := state.(LockState)
		gone := ""
		if s.Gone != "" {
			gone = fmt.Sprintf(", sessions gone: %s", s.Gone)
		}
		if s.Holder == "" {
			return fmt.Sprintf("free (floor %d%s)", s.Floor, gone)
		}
		tok := "?"
		if s.Token != 0 {
			tok = fmt.Sprint(s.Token)
		}
		prot := ""
		if s.Protected > 0 {
			prot = fmt.Sprintf(", session lives until %.3fs", float64(s.Protected)/1e9)
		}
		return fmt.Sprintf("held by %s@%s in session %d (floor %d%s%s)", s.Holder, tok, s.Session, s.Floor, prot, gone)
	},
	DescribeOperationMetadata: describeMetadata,
}

// LockPartitionName names a lock partition by its lock.
func LockPartitionName(ops []porcupine.Operation) string {
	if len(ops) == 0 {
		return "empty"
	}
	return "lock " + ops[0].Input.(LockInput).Name
}

// LockOptions describe the clocks of the run, which bound how long a
// session vouched for by a keep-alive lives (see SessionOptions).
type LockOptions struct {
	// MaxClockRate is the fastest lease clock rate any member ran with
	// (at least 1).
	MaxClockRate float64
	// Margin is subtracted from every protection window; default 10% of
	// the TTL plus 50ms.
	Margin func(ttl time.Duration) time.Duration
}

// Protected returns the clock reading until which an operation's session
// is known to live: the operation carries the SDK's Session.Deadline()
// (the send time of the last confirmed keep-alive plus the TTL, less the
// SDK's 0.5% margin) sampled when it was invoked; the session lives at
// least TTL/MaxClockRate − margin past that send time (see CheckSessions).
// Deadline − TTL, taken for the send time, is early by the SDK's margin,
// which only shortens the window. 0 when the operation carries no
// deadline.
func (o LockOptions) Protected(op history.Op) int64 {
	if op.Deadline == 0 || op.TTL <= 0 {
		return 0
	}
	rate := max(o.MaxClockRate, 1)
	ttl := time.Duration(op.TTL) * time.Millisecond
	margin := ttl/10 + 50*time.Millisecond
	if o.Margin != nil {
		margin = o.Margin(ttl)
	}
	sent := op.Deadline - int64(ttl)
	return sent + int64(float64(ttl)/rate) - int64(margin)
}

// Hold returns the least time a grant made by op, an acquire with a hold
// time, lasts after it is made, in clock nanoseconds: the leader counts the
// hold time on its lease clock from when it applies the grant (anew when
// leadership moves), so it runs at most MaxClockRate fast; the margin is
// as for sessions. 0 without a hold time.
func (o LockOptions) Hold(op history.Op) int64 {
	if op.HoldMs <= 0 {
		return 0
	}
	hold := time.Duration(op.HoldMs) * time.Millisecond
	margin := hold/10 + 50*time.Millisecond
	if o.Margin != nil {
		margin = o.Margin(hold)
	}
	return max(int64(float64(hold)/max(o.MaxClockRate, 1))-int64(margin), 1)
}

// LockOperations turns recorded lock operations (and fenced writes) into
// porcupine operations. Acquires and releases of unknown outcome get an
// open interval, unless their session was seen gone (KindLockSessionGone):
// then their interval ends there (or at their return, if later), since no
// grant of the session exists afterwards. Failed inspections, fenced writes
// of unknown outcome (they change no lock) and operations that certainly
// failed are dropped. An observation that a session is gone goes to every
// lock's partition: the session's grant ends within it, and, when grants of
// that lock were requested in the session, none is made afterwards.
func LockOperations(ops []history.Op, opt LockOptions) []porcupine.Operation {
	var (
		end   int64
		names []string
	)
	gone := map[int64]int64{} // session -> earliest return of an observation that it is gone
	seenName := map[string]bool{}
	type nameSession struct {
		name    string
		session int64
	}
	requested := map[nameSession]bool{} // sessions grants of a lock were requested in
	for _, o := range ops {
		if (o.Kind == KindLockAcquire || o.Kind == KindLockTry) && o.Session != 0 {
			requested[nameSession{o.Key, o.Session}] = true
		}
		end = max(end, o.Return, o.Call)
		if o.Kind == KindLockSessionGone && o.Status == history.OK && o.Session != 0 {
			if g, ok := gone[o.Session]; !ok || o.Return < g {
				gone[o.Session] = o.Return
			}
		}
		if o.Key != "" && o.Kind != KindLockSessionGone && !seenName[o.Key] {
			seenName[o.Key] = true
			names = append(names, o.Key)
		}
	}
	infinity := end + 1
	out := make([]porcupine.Operation, 0, len(ops))
	for _, o := range ops {
		if o.Kind == KindLockSessionGone {
			if o.Status != history.OK || o.Session == 0 {
				continue
			}
			for _, n := range names {
				out = append(out, porcupine.Operation{
					ClientId: o.Process, Call: o.Call, Return: o.Return, Output: LockOutput{},
					Input:    LockInput{Kind: o.Kind, Name: n, Session: o.Session, Seals: requested[nameSession{n, o.Session}], Return: o.Return},
					Metadata: fmt.Sprintf("op %d, process %d", o.ID, o.Process),
				})
			}
			continue
		}
		switch o.Kind {
		case KindLockAcquire, KindLockTry, KindLockRelease, KindLockInspect, KindFencedWrite:
		default:
			continue
		}
		in := LockInput{Kind: o.Kind, Name: o.Key, Owner: o.Owner, Token: o.Token, Session: o.Session, Protected: opt.Protected(o), Return: o.Return,
			Shared: o.Shared, Permits: int(o.Count)}
		if o.Kind == KindLockAcquire {
			in.Queued = o.Queued
		}
		var outp LockOutput
		ret := o.Return
		status := o.Status
		if status == history.Fail && in.Queued != 0 {
			// A wait that failed after it was queued took a place, and
			// its waiter may have been granted before the failure.
			status = history.Unknown
		}
		switch status {
		case history.OK:
			outp.OK = o.Succeeded
			switch o.Kind {
			case KindLockAcquire, KindLockTry:
				outp.Token, in.Token, outp.Quota = o.Token, 0, o.Quota
			case KindLockInspect:
				in.Owner, in.Token = o.Self, 0
				outp = LockOutput{Holders: o.Holders, Holder: o.Owner, HolderToken: o.Token}
			}
		case history.Unknown:
			if o.Kind == KindLockInspect || o.Kind == KindFencedWrite {
				continue
			}
			outp = LockOutput{Unknown: true}
			if o.Kind == KindLockAcquire || o.Kind == KindLockTry {
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
		out = append(out, porcupine.Operation{
			ClientId: o.Process, Input: in, Output: outp, Call: o.Call, Return: ret,
			Metadata: fmt.Sprintf("op %d, process %d", o.ID, o.Process),
		})
	}
	return out
}

// CheckLockTokens reports every token granted to two different grants of
// one lock (acquires and try-locks that succeeded, with different owners).
// The lock model rejects such a history too; this check names the grants.
func CheckLockTokens(ops []history.Op) (Stats, []Violation) {
	var (
		stats      Stats
		violations []Violation
	)
	type grant struct {
		name  string
		token uint64
	}
	first := map[grant]history.Op{}
	for _, o := range ops {
		if (o.Kind != KindLockAcquire && o.Kind != KindLockTry) || o.Status != history.OK || !o.Succeeded {
			continue
		}
		stats.Checked++
		g := grant{o.Key, o.Token}
		prev, dup := first[g]
		if !dup {
			first[g] = o
			continue
		}
		if prev.Owner != o.Owner && len(violations) < 20 {
			violations = append(violations, Violation{Checker: "locks",
				Summary: fmt.Sprintf("lock %s: token %d granted twice, to %s and to %s", o.Key, o.Token, prev.Owner, o.Owner),
				Details: prev.String() + "\n" + o.String() + "\n"})
		}
	}
	return stats, violations
}
