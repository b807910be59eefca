package fsm

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
	"github.com/concord-dev/concord/internal/lock"
	"github.com/concord-dev/concord/internal/raftnode"
)

// Lock commands through the whole state machine: random logs of every lock
// command (acquires of mutexes, read-write locks, semaphores of k of N
// permits and several mutexes at once, waiting or trying, with hold times;
// resumes; conversions of read-write grants held or ended; releases with
// and without a token; cancels; force-releases;
// hold expiries of several grants in one entry) among sessions created,
// revoked and expired in batches, and bad lock commands. After every entry:
// no lock holds more than its kind allows, no holder or waiter belongs to a
// session the session table no longer has, every new grant's token is its
// entry's index and above the lock's earlier tokens, every grant told to
// the observer holds at the end of its entry, no waiter is granted before
// one that queued earlier on the lock, and a refused entry changes
// nothing. At the end, a state machine fed the same log in other
// batches, and one restored from a snapshot taken midway and fed the rest,
// give the same results and the same state hash. (The lock package's
// TestLockTableProperties checks the table itself in depth.)
//
// The logs run under each rules version, raised by their first entry.
// Under the baseline a conversion is applied as the same acquire without
// it, as members of a release before conversions apply it: a state machine
// fed the log with every conversion field cleared gives the same results
// and the same state hash.
func TestLockLogProperties(t *testing.T) {
	for rules := uint32(BaselineRulesVersion); rules <= MaxRulesVersion; rules++ {
		t.Run(fmt.Sprint("rules", rules), func(t *testing.T) {
			seen := map[string]int{}
			for seed := uint64(1); seed <= 6; seed++ {
				t.Run(fmt.Sprint(seed), func(t *testing.T) { runLockLog(t, seed, 700, rules, seen) })
			}
			// The logs reach what the properties are about.
			conv := "conversion of an ended grant"
			if rules < RulesConversion {
				conv = "conversion of an ended grant granted anew"
			}
			for _, what := range []string{"granted at once", "granted from the queue", "granted several locks",
				lock.ReasonReleased, lock.ReasonSessionEnded, lock.ReasonHoldTime, lock.ReasonForced, lock.ReasonUpgraded,
				"dequeued " + lock.ReasonSessionEnded, "dequeued cancelled", "refused", conv, "converted in place"} {
				require.Positive(t, seen[what], "no entry did %q: %v", what, seen)
			}
			if rules >= RulesLockLimit {
				require.Positive(t, seen["refused past the lock limit"], "no acquire met the lock limit: %v", seen)
			}
			if rules >= RulesHoldCheckpoint {
				require.Positive(t, seen["hold time checkpointed"], "no checkpoint counted a hold time: %v", seen)
			}
			t.Logf("%v", seen)
		})
	}
}

// lockCounter counts what the lock table tells its observer, and keeps the
// grants told since the last entry.
type lockCounter struct {
	seen map[string]int
	told []lock.Grant
}

func (c *lockCounter) Granted(g lock.Grant) {
	c.told = append(c.told, g)
	c.count(g)
}

func (c *lockCounter) count(g lock.Grant) {
	seen := c.seen
	switch {
	case g.Part > 0:
		seen["granted several locks"]++
	case g.Waiter != 0:
		seen["granted from the queue"]++
	default:
		seen["granted at once"]++
	}
}

func (c *lockCounter) Released(r lock.Release)          { c.seen[r.Reason]++ }
func (c *lockCounter) Dequeued(_ uint64, reason string) { c.seen["dequeued "+reason]++ }
func (c *lockCounter) Replaced([]lock.Grant)            {}

// stateDigest hashes every section of the state but the header (which
// holds the applied index and the time, which every entry moves).
func stateDigest(t testing.TB, f *FSM) [32]byte {
	c := f.captureFor(true)
	c.header = &internalv1.SnapshotHeader{}
	h := sha256.New()
	_, err := c.WriteTo(h)
	require.NoError(t, err)
	return [32]byte(h.Sum(nil))
}

type lockLogWorld struct {
	t        *testing.T
	rng      *rand.Rand
	rules    uint32
	f        *FSM
	sessions []int64 // created, perhaps ended
	// lastToken is the highest token each lock ever granted; known are the
	// grants held after the last entry.
	lastToken map[string]uint64
	known     map[string]bool
	told      *lockCounter
	// checkpoints draws the hold-time checkpoints, apart from rng so that
	// the other commands are drawn as they were.
	checkpoints *rand.Rand
}

func runLockLog(t *testing.T, seed uint64, n int, rules uint32, seen map[string]int) {
	w := &lockLogWorld{t: t, rng: rand.New(rand.NewPCG(seed, 11)), rules: rules, f: New(Config{}), lastToken: map[string]uint64{}, known: map[string]bool{}}
	w.checkpoints = rand.New(rand.NewPCG(seed, 17))
	w.told = &lockCounter{seen: seen}
	w.f.SetLockObserver(w.told)
	limits := rand.New(rand.NewPCG(seed, 13))
	var logs []raftnode.Entry
	var results []*internalv1.Result
	// Snapshots taken along the way, by the index they reflect.
	snaps := map[uint64][]byte{}
	for i := uint64(1); i <= uint64(n); i++ {
		cmd, bad := w.next()
		if i == 1 {
			cmd, bad = &internalv1.Command{Op: &internalv1.Command_RaiseRules{RaiseRules: &internalv1.RaiseRules{Version: rules}}}, nil
		}
		cmd.TimeUnixNano = int64(i) * 1e6
		entriesBefore := 0
		w.f.Read(func(st State) { entriesBefore = st.Locks.Entries() })
		if cmd.GetLockAcquire() != nil && limits.IntN(3) == 0 {
			// The proposing member's --max-locks, near the table's size
			// (drawn apart, so that the logs are the ones they were).
			// Bad input still gets its own error first.
			cmd.LockLimit = int64(entriesBefore + limits.IntN(4))
		}
		before := stateDigest(t, w.f)
		countedBefore := w.counted()
		e := raftnode.Entry{Index: i, Term: 1, Type: raftnode.EntryCommand, Data: encode(t, cmd)}
		res := w.f.ApplyBatch([]raftnode.Entry{e})[0].(*internalv1.Result)
		logs, results = append(logs, e), append(results, res)
		if cs := res.GetCreateSession(); cs != nil {
			w.sessions = append(w.sessions, cs.GetId())
		}
		err := ResultError(res)
		if bad != nil {
			require.ErrorIs(t, err, bad, "entry %d: %v", i, cmd)
		}
		if err != nil {
			seen["refused"]++
			require.Equal(t, before, stateDigest(t, w.f), "entry %d was refused (%v) but changed the state: %v", i, err, cmd)
		}
		if i == 1 {
			require.NoError(t, err)
			require.Equal(t, rules, w.f.RulesVersion())
		}
		if errors.Is(err, ErrQuotaExceeded) {
			require.GreaterOrEqual(t, rules, uint32(RulesLockLimit), "entry %d: the lock limit was kept below its rules version: %v", i, cmd)
			seen["refused past the lock limit"]++
		}
		if limit := cmd.GetLockLimit(); limit > 0 && rules >= RulesLockLimit {
			entriesAfter := 0
			w.f.Read(func(st State) { entriesAfter = st.Locks.Entries() })
			require.LessOrEqual(t, int64(entriesAfter), max(int64(entriesBefore), limit),
				"entry %d: an acquire under a lock limit of %d took the table from %d to %d entries: %v", i, limit, entriesBefore, entriesAfter, cmd)
		}
		if a := res.GetLockAcquire(); a != nil && cmd.GetLockAcquire().GetConversion() && rules < RulesConversion {
			require.NotEqual(t, lock.ReasonConvertedEnded, a.GetReason(), "entry %d: a conversion under rules %d: %v", i, rules, cmd)
			if a.GetState() == concordv1.AcquireState_ACQUIRE_STATE_GRANTED && a.GetConverted() == 0 {
				seen["conversion of an ended grant granted anew"]++
			}
			if a.GetConverted() != 0 {
				seen["converted in place"]++
			}
		}
		if a := res.GetLockAcquire(); a != nil && cmd.GetLockAcquire().GetConversion() && rules >= RulesConversion {
			switch {
			case a.GetState() == concordv1.AcquireState_ACQUIRE_STATE_LOST:
				seen["conversion of an ended grant"]++
				require.Equal(t, lock.ReasonConvertedEnded, a.GetReason(), "entry %d: %v", i, cmd)
				require.Equal(t, before, stateDigest(t, w.f), "entry %d: a conversion of an ended grant changed the state: %v", i, cmd)
			case a.GetConverted() != 0:
				seen["converted in place"]++
			}
		}
		if cp := cmd.GetLockCheckpointHolds(); cp != nil {
			w.checkCheckpoint(i, cp, err, countedBefore, seen)
		}
		w.check(i, cmd)
		if i%100 == uint64(seed) {
			snaps[i] = snapshotBytes(t, w.f)
		}
	}
	_, want := hashOf(t, w.f)

	// The same log in other batches.
	b := New(Config{})
	got := applyInBatches(b, logs, rand.New(rand.NewPCG(seed, 3)))
	for i := range got {
		require.True(t, proto.Equal(results[i], got[i].(*internalv1.Result)), "entry %d: %v, then %v", i+1, results[i], got[i])
	}
	_, hb := hashOf(t, b)
	require.Equal(t, want, hb, "the same log in other batches ended otherwise")

	if rules < RulesLockLimit {
		// The log as a member of a release before the lock limit applies
		// it: without the field.
		old := New(Config{})
		for i, e := range logs {
			var cmd internalv1.Command
			require.NoError(t, cmd.UnmarshalVT(e.Data))
			cmd.LockLimit = 0
			e.Data = encode(t, &cmd)
			res := old.ApplyBatch([]raftnode.Entry{e})[0].(*internalv1.Result)
			require.True(t, proto.Equal(results[i], res), "entry %d under rules %d: %v, and without the lock limit %v", i+1, rules, results[i], res)
		}
		_, ho := hashOf(t, old)
		require.Equal(t, want, ho, "the log without lock limits ended otherwise under rules %d", rules)
	}

	if rules < RulesHoldCheckpoint {
		// The log as a member of a release before hold-time checkpoints
		// applies it: it cannot decode the entry (an op it does not know),
		// and applies a command without one.
		old := New(Config{})
		for i, e := range logs {
			var cmd internalv1.Command
			require.NoError(t, cmd.UnmarshalVT(e.Data))
			if cmd.GetLockCheckpointHolds() != nil {
				cmd.Op = nil
			}
			e.Data = encode(t, &cmd)
			res := old.ApplyBatch([]raftnode.Entry{e})[0].(*internalv1.Result)
			require.True(t, proto.Equal(results[i], res), "entry %d under rules %d: %v, and without the checkpoint %v", i+1, rules, results[i], res)
		}
		_, ho := hashOf(t, old)
		require.Equal(t, want, ho, "the log without checkpoints ended otherwise under rules %d", rules)
	}

	if rules < RulesConversion {
		// The log as a member of a release before conversions applies
		// it: without the field.
		old := New(Config{})
		for i, e := range logs {
			var cmd internalv1.Command
			require.NoError(t, cmd.UnmarshalVT(e.Data))
			if a := cmd.GetLockAcquire(); a != nil {
				a.Conversion = false
			}
			e.Data = encode(t, &cmd)
			res := old.ApplyBatch([]raftnode.Entry{e})[0].(*internalv1.Result)
			require.True(t, proto.Equal(results[i], res), "entry %d under rules %d: %v, and without conversion %v", i+1, rules, results[i], res)
		}
		_, ho := hashOf(t, old)
		require.Equal(t, want, ho, "the log without conversions ended otherwise under rules %d", rules)
	}

	// A member restored from a snapshot taken on the way continues alike.
	require.NotEmpty(t, snaps)
	for mid, snap := range snaps {
		c := New(Config{})
		require.NoError(t, c.Restore(bytes.NewReader(snap)))
		require.Equal(t, mid, c.AppliedIndex())
		got = applyInBatches(c, logs[mid:], rand.New(rand.NewPCG(seed, mid)))
		for i := range got {
			require.True(t, proto.Equal(results[int(mid)+i], got[i].(*internalv1.Result)), "entry %d after a restore at %d: %v, then %v", int(mid)+i+1, mid, results[int(mid)+i], got[i])
		}
		_, hc := hashOf(t, c)
		require.Equal(t, want, hc, "the member restored at %d ended otherwise", mid)
	}
}

var lockLogNames = []string{"m1", "m2", "m3", "rw", "s4"}

// session draws a live session mostly, now and then one that ended or
// never was.
func (w *lockLogWorld) session() int64 {
	var live []int64
	w.f.Read(func(s State) {
		for _, id := range w.sessions {
			if s.Sessions.Exists(id) {
				live = append(live, id)
			}
		}
	})
	switch {
	case len(live) > 0 && w.rng.IntN(8) != 0:
		return live[w.rng.IntN(len(live))]
	case len(w.sessions) > 0 && w.rng.IntN(2) == 0:
		return w.sessions[w.rng.IntN(len(w.sessions))]
	}
	return int64(1 + w.rng.IntN(1000))
}

func (w *lockLogWorld) owner() string { return []string{"a", "b"}[w.rng.IntN(2)] }

func (w *lockLogWorld) claim(name string) *concordv1.LockClaim {
	switch name {
	case "rw":
		return &concordv1.LockClaim{Name: name, Kind: concordv1.LockKind_LOCK_KIND_RWLOCK, Mode: concordv1.LockMode(1 + w.rng.IntN(2))}
	case "s4":
		return &concordv1.LockClaim{Name: name, Kind: concordv1.LockKind_LOCK_KIND_SEMAPHORE, Permits: 1 + w.rng.Int64N(4), Capacity: 4}
	}
	return &concordv1.LockClaim{Name: name, Kind: concordv1.LockKind_LOCK_KIND_MUTEX}
}

// held lists every grant and waiter in the state.
func (w *lockLogWorld) held() (holders []*concordv1.LockHolder, names []string, waiters []lock.Waiter) {
	w.f.Read(func(s State) {
		for _, n := range s.Locks.Names("", "", 0) {
			l, ws, _ := s.Locks.Get(n)
			for _, h := range l.Holders {
				holders = append(holders, &concordv1.LockHolder{Session: h.Session, Owner: h.Owner, Token: h.Token, HoldMs: h.HoldMs, Mode: concordv1.LockMode(h.Mode)})
				names = append(names, n)
			}
			for _, x := range ws {
				if !slices.ContainsFunc(waiters, func(o lock.Waiter) bool { return o.ID == x.ID }) {
					waiters = append(waiters, x)
				}
			}
		}
	})
	return holders, names, waiters
}

// next draws the next command, and the error it must get when it is bad
// input.
func (w *lockLogWorld) next() (*internalv1.Command, error) {
	rng := w.rng
	holders, names, waiters := w.held()
	op := func(o any) *internalv1.Command {
		cmd := &internalv1.Command{}
		switch o := o.(type) {
		case *concordv1.AcquireRequest:
			cmd.Op = &internalv1.Command_LockAcquire{LockAcquire: o}
		case *concordv1.ReleaseRequest:
			cmd.Op = &internalv1.Command_LockRelease{LockRelease: o}
		case *concordv1.CancelWaitRequest:
			cmd.Op = &internalv1.Command_LockCancel{LockCancel: o}
		case *concordv1.ForceReleaseRequest:
			cmd.Op = &internalv1.Command_LockForceRelease{LockForceRelease: o}
		case *internalv1.ExpireLockHolds:
			cmd.Op = &internalv1.Command_LockExpireHolds{LockExpireHolds: o}
		case *internalv1.CheckpointLockHolds:
			cmd.Op = &internalv1.Command_LockCheckpointHolds{LockCheckpointHolds: o}
		case *internalv1.CreateSession:
			cmd.Op = &internalv1.Command_CreateSession{CreateSession: o}
		case *internalv1.RevokeSession:
			cmd.Op = &internalv1.Command_RevokeSession{RevokeSession: o}
		case *internalv1.ExpireSessions:
			cmd.Op = &internalv1.Command_ExpireSessions{ExpireSessions: o}
		}
		return cmd
	}
	if cp := w.checkpoints; cp.IntN(10) == 0 {
		// Hold-time checkpoints, as the leader batches them: of grants
		// with a hold time, counts below and past it, and now and then of
		// a grant that is not there.
		r := &internalv1.CheckpointLockHolds{}
		for i, h := range holders {
			if h.HoldMs > 0 && cp.IntN(2) == 0 {
				ref := &internalv1.LockHoldRef{Name: names[i], Token: h.Token, Session: h.Session, Owner: h.Owner}
				if cp.IntN(6) == 0 {
					ref.Token++
				}
				r.Holds = append(r.Holds, &internalv1.LockHoldCheckpoint{Ref: ref, CountedMs: cp.Int64N(2 * h.HoldMs)})
			}
		}
		if len(r.Holds) == 0 {
			r.Holds = append(r.Holds, &internalv1.LockHoldCheckpoint{Ref: &internalv1.LockHoldRef{Name: "m1", Token: 1, Session: 1, Owner: "a"}, CountedMs: 50})
		}
		if w.rules < RulesHoldCheckpoint {
			return op(r), ErrBadCommand
		}
		return op(r), nil
	}
	switch k := rng.IntN(100); {
	case k < 8:
		return op(&internalv1.CreateSession{TtlMs: 1000, Name: "s"}), nil
	case k < 45:
		r := &concordv1.AcquireRequest{Session: w.session(), Owner: w.owner(), Wait: rng.IntN(4) != 0}
		if rng.IntN(4) == 0 {
			for _, i := range rng.Perm(3)[:1+rng.IntN(3)] {
				r.Claims = append(r.Claims, w.claim(lockLogNames[i]))
			}
		} else {
			r.Claims = []*concordv1.LockClaim{w.claim(lockLogNames[rng.IntN(len(lockLogNames))])}
		}
		if rng.IntN(3) == 0 {
			r.HoldMs = 100
		}
		if len(holders) > 0 && rng.IntN(8) == 0 {
			i := rng.IntN(len(holders))
			r.Session, r.Owner, r.ResumeToken = holders[i].Session, holders[i].Owner, holders[i].Token
			r.Claims = []*concordv1.LockClaim{w.claim(names[i])}
		} else if len(r.Claims) == 1 && r.Claims[0].GetKind() == concordv1.LockKind_LOCK_KIND_RWLOCK && rng.IntN(3) == 0 {
			// A conversion: of the owner's grant if it holds one, else
			// of one that ended (Lost, nothing taken).
			r.Conversion = true
			for i, h := range holders {
				if names[i] == r.Claims[0].GetName() && rng.IntN(4) != 0 {
					// Into the other mode, most of the time.
					r.Session, r.Owner, r.HoldMs = h.Session, h.Owner, h.HoldMs
					if rng.IntN(4) != 0 {
						r.Claims[0].Mode = concordv1.LockMode_LOCK_MODE_EXCLUSIVE + concordv1.LockMode_LOCK_MODE_SHARED - h.GetMode()
					}
					break
				}
			}
		}
		return op(r), nil
	case k < 62:
		r := &concordv1.ReleaseRequest{Names: []string{lockLogNames[rng.IntN(len(lockLogNames))]}, Session: w.session(), Owner: w.owner()}
		if len(holders) > 0 && rng.IntN(4) != 0 {
			i := rng.IntN(len(holders))
			r.Names, r.Session, r.Owner = []string{names[i]}, holders[i].Session, holders[i].Owner
			if rng.IntN(3) == 0 {
				r.Token = holders[i].Token
			}
		}
		return op(r), nil
	case k < 68:
		if len(waiters) == 0 {
			return op(&concordv1.CancelWaitRequest{Waiter: uint64(1 + rng.IntN(100)), Session: w.session(), Owner: w.owner()}), lock.ErrNotWaiting
		}
		x := waiters[rng.IntN(len(waiters))]
		return op(&concordv1.CancelWaitRequest{Waiter: x.ID, Session: x.Session, Owner: x.Owner}), nil
	case k < 72:
		if len(holders) == 0 {
			return op(&concordv1.ForceReleaseRequest{Name: "m1", Reason: "r"}), lock.ErrNotHeld
		}
		i := rng.IntN(len(holders))
		return op(&concordv1.ForceReleaseRequest{Name: names[i], Token: holders[i].Token * uint64(rng.IntN(2)), Reason: "r"}), nil
	case k < 78:
		// Hold expiries, several in one entry as the leader batches them.
		r := &internalv1.ExpireLockHolds{}
		for i, h := range holders {
			if h.HoldMs > 0 && rng.IntN(2) == 0 {
				r.Holds = append(r.Holds, &internalv1.LockHoldRef{Name: names[i], Token: h.Token, Session: h.Session, Owner: h.Owner})
			}
		}
		return op(r), nil
	case k < 82:
		return op(&internalv1.RevokeSession{Id: w.session()}), nil
	case k < 88:
		r := &internalv1.ExpireSessions{}
		for range 1 + rng.IntN(3) {
			r.Ids = append(r.Ids, w.session())
		}
		return op(r), nil
	}
	// Bad input.
	s := w.session()
	if len(w.sessions) > 0 {
		s = w.sessions[len(w.sessions)-1]
	}
	switch rng.IntN(6) {
	case 4:
		if w.rules < RulesConversion {
			// An acquire of m1: the conversion field is ignored.
			return op(&concordv1.AcquireRequest{Session: s, Owner: "a", Conversion: true, Claims: []*concordv1.LockClaim{w.claim("m1")}}), nil
		}
		return op(&concordv1.AcquireRequest{Session: s, Owner: "a", Conversion: true, Claims: []*concordv1.LockClaim{w.claim("m1")}}), lock.ErrInvalidClaim
	case 0:
		return op(&concordv1.AcquireRequest{Session: s, Owner: "a", Claims: []*concordv1.LockClaim{{Name: "s4", Kind: concordv1.LockKind_LOCK_KIND_SEMAPHORE, Permits: 5, Capacity: 4}}}), lock.ErrTooManyPermits
	case 1:
		return op(&concordv1.AcquireRequest{Session: s, Owner: "", Claims: []*concordv1.LockClaim{w.claim("m1")}}), lock.ErrInvalidClaim
	case 2:
		return op(&concordv1.AcquireRequest{Session: s, Owner: "a", Claims: []*concordv1.LockClaim{w.claim("m1"), w.claim("rw")}}), lock.ErrInvalidClaim
	case 3:
		return op(&concordv1.ReleaseRequest{Session: s, Owner: "a"}), lock.ErrInvalidClaim
	}
	return op(&concordv1.CancelWaitRequest{Session: s, Owner: "a"}), lock.ErrNotWaiting
}

// counted returns every grant's checkpointed hold time, by its reference.
func (w *lockLogWorld) counted() map[lock.HoldRef]int64 {
	out := map[lock.HoldRef]int64{}
	w.f.Read(func(s State) {
		for _, n := range s.Locks.Names("", "", 0) {
			l, _, _ := s.Locks.Get(n)
			for _, h := range l.Holders {
				out[lock.HoldRef{Name: n, Token: h.Token, Session: h.Session, Owner: h.Owner}] = h.HoldCountedMs
			}
		}
	})
	return out
}

// checkCheckpoint checks a hold-time checkpoint (entry i): below its rules
// version it changed nothing (the caller checks the state is unchanged);
// from it each grant it names exactly counts the highest of what it
// counted and what the entry says, up to its hold time, and the others
// did not change.
func (w *lockLogWorld) checkCheckpoint(i uint64, cp *internalv1.CheckpointLockHolds, err error, before map[lock.HoldRef]int64, seen map[string]int) {
	t := w.t
	if w.rules < RulesHoldCheckpoint {
		require.ErrorIs(t, err, ErrBadCommand, "entry %d: a checkpoint under rules %d", i, w.rules)
		return
	}
	require.NoError(t, err, "entry %d", i)
	want := maps.Clone(before)
	holds := map[lock.HoldRef]int64{}
	w.f.Read(func(s State) {
		for _, g := range s.Locks.Holds() {
			holds[lock.HoldRef{Name: g.Name, Token: g.Token, Session: g.Session, Owner: g.Owner}] = g.HoldMs
		}
	})
	for _, h := range cp.GetHolds() {
		r := h.GetRef()
		ref := lock.HoldRef{Name: r.GetName(), Token: r.GetToken(), Session: r.GetSession(), Owner: r.GetOwner()}
		if c, ok := want[ref]; ok && holds[ref] > 0 {
			if n := min(h.GetCountedMs(), holds[ref]); n > c {
				want[ref] = n
				seen["hold time checkpointed"]++
			}
		}
	}
	require.Equal(t, want, w.counted(), "entry %d: %v", i, cp)
}

// check checks the lock table after entry i.
func (w *lockLogWorld) check(i uint64, cmd *internalv1.Command) {
	t := w.t
	now := map[string]bool{}
	w.f.Read(func(s State) {
		require.Equal(t, i, s.Applied)
		for _, n := range s.Locks.Names("", "", 0) {
			l, ws, _ := s.Locks.Get(n)
			var permits int64
			writers := 0
			for _, h := range l.Holders {
				require.True(t, s.Sessions.Exists(h.Session), "entry %d (%v): %s held by ended session %d", i, cmd, n, h.Session)
				permits += h.Permits
				if h.Mode == lock.Exclusive {
					writers++
				}
				key := fmt.Sprint(n, "/", h.Session, "/", h.Owner, "/", h.Token)
				now[key] = true
				if !w.known[key] {
					require.Equal(t, i, h.Token, "entry %d (%v): a grant of %s under another token than its index", i, cmd, n)
					require.Greater(t, h.Token, w.lastToken[n], "entry %d: token of %s did not increase", i, n)
				}
			}
			switch l.Kind {
			case lock.KindMutex:
				require.LessOrEqual(t, len(l.Holders), 1, "entry %d: mutex %s has %d holders", i, n, len(l.Holders))
			case lock.KindRW:
				require.True(t, writers == 0 || len(l.Holders) == 1, "entry %d: %s has a writer beside others", i, n)
			case lock.KindSemaphore:
				require.LessOrEqual(t, permits, l.Capacity, "entry %d: semaphore %s over its permits", i, n)
			}
			for _, x := range ws {
				require.True(t, s.Sessions.Exists(x.Session), "entry %d (%v): %s queues waiter %d of ended session %d", i, cmd, n, x.ID, x.Session)
			}
		}
	})
	// Every grant told while the entry applied holds at its end: a grant
	// that ended within the command that made it (a second grant of one
	// lock under one token) was never visible to anyone.
	// FIFO: a waiter is granted only when no waiter that queued before it
	// on the lock still waits.
	for _, g := range w.told.told {
		require.True(t, now[fmt.Sprint(g.Name, "/", g.Session, "/", g.Owner, "/", g.Token)], "entry %d (%v): grant %+v told, but not held", i, cmd, g)
		if g.Waiter != 0 {
			w.f.Read(func(s State) {
				_, ws, _ := s.Locks.Get(g.Name)
				for _, x := range ws {
					require.Greater(t, x.ID, g.Waiter, "entry %d (%v): waiter %d granted %s before waiter %d", i, cmd, g.Waiter, g.Name, x.ID)
				}
			})
		}
	}
	w.told.told = w.told.told[:0]
	for key := range now {
		if !w.known[key] {
			var name string
			fmt.Sscan(key[:bytes.IndexByte([]byte(key), '/')], &name)
			w.lastToken[name] = i
		}
	}
	w.known = now
}
