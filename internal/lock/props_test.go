package lock

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/fsm/record"
	"github.com/concord-dev/concord/internal/session"
)

// The property test of the lock table: random sequences of every command
// the state machine applies to it (acquires that wait or try, of mutexes,
// read-write locks, semaphores of k of N permits and several mutexes at
// once, with and without a hold time; conversions; resumes; releases with
// and without a token; cancels; force-releases; hold expiries; sessions
// ending in batches; and bad input of every documented kind), checked
// after every command against properties stated independently of the
// table's code:
//
//   - mutual exclusion: a mutex has at most one holder, a read-write lock
//     one writer and no reader beside it, a semaphore at most its capacity
//     in permits out;
//   - FIFO: each lock's queue is in the order its waiters queued (their
//     IDs, the index of the queueing command, increase), and no holder
//     arrived after a waiter still queued on the lock (a holder arrives
//     when it queued, or when it was granted at once): so a grant never
//     overtakes an earlier waiter, a try-lock never skips the queue, and a
//     reader arriving while a writer waits queues behind it (writers are
//     not starved);
//   - no idle lock: the head of a queue is never left waiting while it
//     could be granted, judged by the test's own compatibility rules;
//   - tokens: a grant's token is its command's index and strictly above
//     every earlier token of the lock; a held token never changes except
//     by an upgrade, which makes a new grant;
//   - all or none: a waiter is granted on every lock it claimed at once;
//   - sessions: no holder and no waiter of an ended session;
//   - a waiter never holds what it waits for, and every claim of a waiter
//     is queued on its lock exactly once;
//   - outcomes: a new acquire is granted iff every lock it claims has an
//     empty queue and room (by the test's rules), queued when it waits,
//     refused (NotAcquired) when it tries; a resume is Granted iff the
//     grant is held; a conversion whose owner neither holds nor waits for
//     the lock is Lost and changes nothing; a grant names the grant it
//     converted in place (Converted) exactly when the owner held the
//     read-write lock in the other mode, and a downgrade keeps its token;
//   - a refused command (an error, NotAcquired, Lost, a stale hold expiry)
//     changes nothing: the table's encoding before equals after, and the
//     observer hears nothing; the error is one of the documented sentinels,
//     the one expected for deliberately bad input;
//   - the observer hears exactly the grants the table made;
//   - determinism and restore: a twin table fed the same commands gives the
//     same outcomes and the same encoding after every command, and is now
//     and then replaced by a restore of the other's snapshot, which must
//     continue identically.
//
// CONCORD_LOCK_PROPS_SEEDS runs more seeds (and CONCORD_LOCK_PROPS_STEPS
// longer sequences) than the default few seconds.
func TestLockTableProperties(t *testing.T) {
	seeds, steps := envInt("CONCORD_LOCK_PROPS_SEEDS", 20), envInt("CONCORD_LOCK_PROPS_STEPS", 500)
	if testing.Short() && os.Getenv("CONCORD_LOCK_PROPS_SEEDS") == "" {
		seeds = 8
	}
	seen := map[string]int{}
	for seed := 1; seed <= seeds; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runProps(t, uint64(seed), steps, seen) })
	}
	// The sequences reach what the properties are about.
	for _, what := range []string{"queued grant", "LockAll queued grant", "grant of several waiters", "upgrade", "downgrade",
		"semaphore shared", "permits > 1", "restore", "session end ended", "session end granted", "force several locks",
		"hold expired", "hold expired legacy", "NotAcquired", "resume Granted", "resume Lost", "reattach", "conversion Lost", "conversion converted",
		"err LOCK_NOT_HELD", "err LOCK_KIND_MISMATCH", "err TOO_MANY_PERMITS", "err WOULD_DEADLOCK", "err INVALID_LOCK_REQUEST",
		"err LOCK_ALREADY_WAITING", "err LOCK_ALREADY_HELD", "err LOCK_NOT_WAITING", "err SESSION_NOT_FOUND", "release part of a grant", "would queue"} {
		require.Positive(t, seen[what], "no step did %q: %v", what, seen)
	}
	t.Logf("%v", seen)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// Commands of the property test.
const (
	pAcquire = iota
	pRelease
	pCancel
	pForce
	pExpire
	pEnd
)

type propCmd struct {
	op       int
	req      Request
	names    []string
	sess     int64
	owner    string
	token    uint64
	waiter   uint64
	name     string
	ref      HoldRef
	sessions []int64
	// want is the sentinel deliberately bad input must be refused with.
	want error
	what string
}

// stepMsg names a step in a failure; it is formatted only on failure.
type stepMsg struct {
	rev uint64
	c   *propCmd
	res *propResult
}

func (m stepMsg) String() string {
	return fmt.Sprintf("step %d: %s %+v -> %s", m.rev, m.c.what, *m.c, *m.res)
}

type propResult struct {
	out Outcome
	n   int
	ok  bool
	err error
}

func (r propResult) String() string {
	return fmt.Sprintf("%+v n=%d ok=%v err=%v", r.out, r.n, r.ok, r.err)
}

// applyProp applies c to tb at rev as the state machine does: the command,
// then Settle.
func applyProp(tb *Table, live liveSessions, rev uint64, c propCmd) propResult {
	var r propResult
	now := int64(rev)
	switch c.op {
	case pAcquire:
		r.out, r.err = tb.Acquire(rev, now, c.req)
	case pRelease:
		r.err = tb.Release(rev, now, c.names, c.sess, c.owner, c.token)
	case pCancel:
		r.err = tb.Cancel(rev, now, c.waiter, c.sess, c.owner)
	case pForce:
		r.n, r.err = tb.ForceRelease(rev, now, c.name, c.token, "props", "c")
	case pExpire:
		r.ok = tb.ExpireHold(rev, now, c.ref)
	case pEnd:
		for _, s := range c.sessions {
			r.n += int(tb.EndSession(rev, now, s))
		}
	}
	tb.Settle()
	return r
}

// documented are the sentinels the lock table refuses with (docs/errors.md).
var documented = []error{ErrNotHeld, ErrKindMismatch, ErrTooManyPermits, ErrWouldDeadlock, ErrInvalidClaim,
	ErrAlreadyWaiting, ErrAlreadyHeld, ErrNotWaiting, session.ErrNotFound}

// propView is a deep copy of what the table holds.
type propView struct {
	locks   map[string]Lock
	waiters map[uint64]Waiter
}

func viewOf(tb *Table) propView {
	v := propView{locks: map[string]Lock{}, waiters: map[uint64]Waiter{}}
	for n, l := range tb.locks {
		v.locks[n] = copyLock(l)
	}
	for id, w := range tb.waiters {
		v.waiters[id] = copyWaiter(w)
	}
	return v
}

func (v propView) holder(name string, sess int64, owner string) *Holder {
	for _, h := range v.locks[name].Holders {
		if h.Session == sess && h.Owner == owner {
			return h
		}
	}
	return nil
}

// fits is the test's own rule of whether claim c can be granted beside
// holders of a lock of kind and capacity.
func fits(kind Kind, capacity int64, holders []*Holder, c Claim) bool {
	if len(holders) == 0 {
		return true
	}
	switch kind {
	case KindRW:
		if c.Mode == Exclusive {
			return false
		}
		for _, h := range holders {
			if h.Mode != Shared {
				return false
			}
		}
		return true
	case KindSemaphore:
		var used int64
		for _, h := range holders {
			used += h.Permits
		}
		return used+c.Permits <= capacity
	}
	return false
}

type holdKey struct {
	name  string
	sess  int64
	owner string
	token uint64
}

type propWorld struct {
	t           *testing.T
	rng         *rand.Rand
	live        liveSessions
	nextSession int64
	tb, twin    *Table
	rec, twinRc *recorder
	// arrival is when each grant arrived: the ID of the waiter it was, or
	// the index of the acquire that was granted at once.
	arrival map[holdKey]uint64
	// lastToken is the highest token each lock ever granted.
	lastToken map[string]uint64
	ended     []int64
	// seen counts what the steps did.
	seen map[string]int
}

var (
	propMutexes = []string{"m1", "m2", "m3"}
	propCaps    = map[string]int64{"s3": 3, "s5": 5}
	propAll     = []string{"m1", "m2", "m3", "rw", "s3", "s5"}
)

func runProps(t *testing.T, seed uint64, steps int, seen map[string]int) {
	w := &propWorld{t: t, seen: seen, rng: rand.New(rand.NewPCG(seed, 0x5eed)), live: liveSessions{}, nextSession: 1,
		arrival: map[holdKey]uint64{}, lastToken: map[string]uint64{}}
	for range 5 {
		w.newSession()
	}
	w.tb, w.rec = NewTable(w.live), &recorder{}
	w.tb.SetObserver(w.rec)
	w.twin, w.twinRc = NewTable(w.live), &recorder{}
	w.twin.SetObserver(w.twinRc)
	for rev := uint64(1); rev <= uint64(steps); rev++ {
		if rev%7 == 0 && w.rng.IntN(6) == 0 {
			w.restoreTwin()
		}
		w.step(rev)
		w.checkRestorable()
	}
}

// checkRestorable restores the table's snapshot after every command: every
// state commands reach must pass the restore's checks, or a member could
// not install its leader's snapshot (a false corrupt). The twin's restores
// only see some of them.
func (w *propWorld) checkRestorable() {
	n, snap := encode(w.t, w.tb)
	if err := NewTable(w.live).Restore(n, record.NewReader(bytes.NewReader(snap))); err != nil {
		w.t.Fatalf("a state the commands reached does not restore: %v", err)
	}
	w.seen["restorable"]++
}

func (w *propWorld) newSession() {
	w.live[w.nextSession] = true
	w.nextSession++
}

// restoreTwin replaces the twin with a restore of the table's snapshot.
func (w *propWorld) restoreTwin() {
	n, snap := encode(w.t, w.tb)
	tw, rc := NewTable(w.live), &recorder{}
	tw.SetObserver(rc)
	require.NoError(w.t, tw.Restore(n, record.NewReader(bytes.NewReader(snap))))
	_, again := encode(w.t, tw)
	require.Equal(w.t, snap, again, "a restored table encodes otherwise")
	w.twin, w.twinRc = tw, rc
	w.seen["restore"]++
}

func (w *propWorld) session() int64 {
	ids := make([]int64, 0, len(w.live))
	for id := range w.live {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids[w.rng.IntN(len(ids))]
}

func (w *propWorld) owner() string { return []string{"a", "b"}[w.rng.IntN(2)] }

func (w *propWorld) claim(name string) Claim {
	switch {
	case name == "rw":
		if w.rng.IntN(2) == 0 {
			return reader(name)
		}
		return writer(name)
	case propCaps[name] > 0:
		return sem(name, 1+w.rng.Int64N(propCaps[name]), propCaps[name])
	}
	return mutex(name)
}

type propHeld struct {
	name string
	h    Holder
}

func (w *propWorld) holders() []propHeld {
	var out []propHeld
	for _, n := range w.tb.Names("", "", 0) {
		for _, h := range w.tb.locks[n].Holders {
			out = append(out, propHeld{n, *h})
		}
	}
	return out
}

// gen draws the next command.
func (w *propWorld) gen() propCmd {
	rng := w.rng
	held := w.holders()
	switch k := rng.IntN(100); {
	case k < 40:
		req := Request{Session: w.session(), Owner: w.owner(), Wait: rng.IntN(4) != 0}
		if rng.IntN(4) == 0 {
			for _, i := range rng.Perm(len(propMutexes))[:1+rng.IntN(len(propMutexes))] {
				req.Claims = append(req.Claims, mutex(propMutexes[i]))
			}
		} else {
			req.Claims = []Claim{w.claim(propAll[rng.IntN(len(propAll))])}
		}
		if rng.IntN(3) == 0 {
			req.HoldMs = 1 + rng.Int64N(2)
		}
		if req.Claims[0].Kind == KindRW && rng.IntN(4) == 0 {
			// A conversion, mostly of a grant the owner does not hold
			// (it ended before the conversion applied).
			req.Conversion = true
			return propCmd{op: pAcquire, req: req, what: "conversion"}
		}
		return propCmd{op: pAcquire, req: req, what: "acquire"}
	case k < 45:
		// A holder acquires again: reentrant, a conversion of a read-write
		// lock, or other permits (refused).
		if len(held) == 0 {
			return w.gen()
		}
		p := held[rng.IntN(len(held))]
		if i := slices.IndexFunc(held, func(p propHeld) bool { return p.name == "rw" }); i >= 0 && rng.IntN(2) == 0 {
			p = held[i] // conversions, most of the time
		}
		c := propCmd{op: pAcquire, req: Request{Session: p.h.Session, Owner: p.h.Owner, Wait: rng.IntN(2) == 0, HoldMs: p.h.HoldMs,
			Claims: []Claim{w.claim(p.name)}}, what: "again"}
		if rng.IntN(6) == 0 {
			// Another hold time than the grant's: refused, whatever else
			// it asks (a grant holds the hold time it was granted with).
			c.req.HoldMs = (p.h.HoldMs + 1 + rng.Int64N(2)) % 3
			c.want, c.what = ErrAlreadyHeld, "again with another hold time"
		}
		if p.name == "rw" && rng.IntN(2) == 0 {
			c.req.Conversion = true
		}
		return c
	case k < 49:
		// A resume: of a held grant, or of a token it does not hold.
		req := Request{Session: w.session(), Owner: w.owner(), ResumeToken: uint64(1 + rng.IntN(50))}
		req.Claims = []Claim{w.claim(propAll[rng.IntN(len(propAll))])}
		if len(held) > 0 && rng.IntN(3) != 0 {
			p := held[rng.IntN(len(held))]
			req.Session, req.Owner, req.ResumeToken = p.h.Session, p.h.Owner, p.h.Token
			req.Claims = []Claim{w.claim(p.name)}
			if rng.IntN(4) == 0 {
				req.ResumeToken++
			}
		}
		return propCmd{op: pAcquire, req: req, what: "resume"}
	case k < 66:
		if len(held) == 0 || rng.IntN(6) == 0 {
			return propCmd{op: pRelease, names: []string{propAll[rng.IntN(len(propAll))]}, sess: w.session(), owner: w.owner(), what: "release any"}
		}
		p := held[rng.IntN(len(held))]
		c := propCmd{op: pRelease, names: []string{p.name}, sess: p.h.Session, owner: p.h.Owner, what: "release"}
		// The other locks of its grant, some of the time.
		for _, o := range held {
			if o.name != p.name && o.h.Session == p.h.Session && o.h.Owner == p.h.Owner && o.h.Token == p.h.Token && rng.IntN(2) == 0 {
				c.names = append(c.names, o.name)
			}
		}
		// A grant ends whole: naming part of it is refused.
		for _, o := range held {
			if o.h.Session == p.h.Session && o.h.Owner == p.h.Owner && o.h.Token == p.h.Token && !slices.Contains(c.names, o.name) {
				c.want, c.what = ErrInvalidClaim, "release part of a grant"
			}
		}
		switch rng.IntN(4) {
		case 0:
			c.token = p.h.Token
		case 1:
			c.token, c.want, c.what = p.h.Token+1, ErrNotHeld, "release under another token"
		}
		return c
	case k < 73:
		ids := waiterIDs(w.tb)
		if len(ids) == 0 || rng.IntN(5) == 0 {
			return propCmd{op: pCancel, waiter: uint64(1 + rng.IntN(100)), sess: w.session(), owner: w.owner(), what: "cancel any"}
		}
		x := w.tb.waiters[ids[rng.IntN(len(ids))]]
		return propCmd{op: pCancel, waiter: x.ID, sess: x.Session, owner: x.Owner, what: "cancel"}
	case k < 78:
		if len(held) == 0 || rng.IntN(5) == 0 {
			return propCmd{op: pForce, name: propAll[rng.IntN(len(propAll))], token: uint64(rng.IntN(3)), what: "force any"}
		}
		p := held[rng.IntN(len(held))]
		c := propCmd{op: pForce, name: p.name, token: p.h.Token, what: "force"}
		if rng.IntN(3) == 0 {
			c.token = 0
		}
		return c
	case k < 83:
		// Mostly grants with a hold time; now and then one without (a ref
		// without session and owner names every grant of the lock with
		// its token, and readers granted by one command share it, some
		// with a hold time and some without): it must not end.
		var timed []propHeld
		for _, p := range held {
			if p.h.HoldMs > 0 || rng.IntN(4) == 0 {
				timed = append(timed, p)
			}
		}
		if len(timed) == 0 || rng.IntN(5) == 0 {
			ref := HoldRef{Name: propAll[rng.IntN(len(propAll))], Token: uint64(1 + rng.IntN(100)), Session: w.session(), Owner: w.owner()}
			return propCmd{op: pExpire, ref: ref, what: "expire any"}
		}
		p := timed[rng.IntN(len(timed))]
		ref := HoldRef{Name: p.name, Token: p.h.Token, Session: p.h.Session, Owner: p.h.Owner}
		if rng.IntN(5) == 0 {
			ref.Session, ref.Owner = 0, "" // a ref written before they were recorded
		}
		return propCmd{op: pExpire, ref: ref, what: "expire"}
	case k < 90:
		c := propCmd{op: pEnd, what: "end sessions"}
		for range 1 + rng.IntN(3) {
			if s := w.session(); !slices.Contains(c.sessions, s) && len(w.live) > len(c.sessions)+1 {
				c.sessions = append(c.sessions, s)
			}
		}
		return c
	}
	return w.bad()
}

// bad draws deliberately bad input and the sentinel it must get.
func (w *propWorld) bad() propCmd {
	rng := w.rng
	ok := Request{Session: w.session(), Owner: w.owner(), Wait: true, Claims: []Claim{w.claim(propAll[rng.IntN(len(propAll))])}}
	acq := func(what string, want error, edit func(r *Request)) propCmd {
		r := ok
		r.Claims = slices.Clone(ok.Claims)
		edit(&r)
		return propCmd{op: pAcquire, req: r, want: want, what: what}
	}
	cases := []func() propCmd{
		func() propCmd { return acq("no owner", ErrInvalidClaim, func(r *Request) { r.Owner = "" }) },
		func() propCmd { return acq("no claims", ErrInvalidClaim, func(r *Request) { r.Claims = nil }) },
		func() propCmd {
			return acq("65 claims", ErrInvalidClaim, func(r *Request) {
				r.Claims = nil
				for i := range MaxClaims + 1 {
					r.Claims = append(r.Claims, mutex(fmt.Sprint("x", i)))
				}
			})
		},
		func() propCmd { return acq("empty name", ErrInvalidClaim, func(r *Request) { r.Claims[0].Name = "" }) },
		func() propCmd {
			return acq("a name twice", ErrInvalidClaim, func(r *Request) { r.Claims = []Claim{mutex("m1"), mutex("m2"), mutex("m1")} })
		},
		func() propCmd { return acq("negative hold", ErrInvalidClaim, func(r *Request) { r.HoldMs = -1 }) },
		func() propCmd {
			return acq("conversion of a mutex", ErrInvalidClaim, func(r *Request) { r.Claims, r.Conversion = []Claim{mutex("m1")}, true })
		},
		func() propCmd {
			return acq("conversion of several locks", ErrInvalidClaim, func(r *Request) {
				r.Claims, r.Conversion = []Claim{mutex("m1"), mutex("m2")}, true
			})
		},
		func() propCmd {
			return acq("conversion with a resume token", ErrInvalidClaim, func(r *Request) {
				r.Claims, r.Conversion, r.ResumeToken = []Claim{writer("rw")}, true, 1
			})
		},
		func() propCmd { return acq("no kind", ErrInvalidClaim, func(r *Request) { r.Claims[0].Kind = 0 }) },
		func() propCmd {
			return acq("rw without mode", ErrInvalidClaim, func(r *Request) { r.Claims = []Claim{{Name: "rw", Kind: KindRW}} })
		},
		func() propCmd {
			return acq("several non-mutexes", ErrInvalidClaim, func(r *Request) { r.Claims = []Claim{mutex("m1"), reader("rw")} })
		},
		func() propCmd {
			return acq("permits above capacity", ErrTooManyPermits, func(r *Request) { r.Claims = []Claim{sem("s3", 4, 3)} })
		},
		func() propCmd {
			return acq("no permits", ErrTooManyPermits, func(r *Request) { r.Claims = []Claim{sem("s5", 0, 5)} })
		},
		func() propCmd {
			return acq("capacity 0", ErrTooManyPermits, func(r *Request) { r.Claims = []Claim{sem("s5", 1, 0)} })
		},
		func() propCmd {
			return acq("ended session", session.ErrNotFound, func(r *Request) { r.Session = w.nextSession + 100 })
		},
		func() propCmd {
			// Another kind (or capacity) than the lock exists as; a lock
			// that does not exist would be created so.
			names := w.tb.Names("", "", 0)
			if len(names) == 0 {
				return acq("no owner", ErrInvalidClaim, func(r *Request) { r.Owner = "" })
			}
			n := names[rng.IntN(len(names))]
			c := mutex(n)
			switch w.tb.locks[n].Kind {
			case KindMutex:
				c = writer(n)
			case KindRW:
				c = sem(n, 1, 2)
			case KindSemaphore:
				c = sem(n, 1, w.tb.locks[n].Capacity+1)
			}
			return acq("another kind", ErrKindMismatch, func(r *Request) { r.Claims = []Claim{c} })
		},
		func() propCmd {
			return propCmd{op: pRelease, names: nil, sess: w.session(), owner: w.owner(), want: ErrInvalidClaim, what: "release nothing"}
		},
		func() propCmd {
			// Naming a held lock twice (the table judges a lock not held
			// first: the server refuses the duplicate before proposing).
			held := w.holders()
			if len(held) == 0 {
				return propCmd{op: pRelease, names: nil, sess: w.session(), owner: w.owner(), want: ErrInvalidClaim, what: "release nothing"}
			}
			p := held[rng.IntN(len(held))]
			return propCmd{op: pRelease, names: []string{p.name, p.name}, sess: p.h.Session, owner: p.h.Owner, want: ErrInvalidClaim, what: "release twice"}
		},
		func() propCmd {
			names := make([]string, MaxClaims+1)
			for i := range names {
				names[i] = fmt.Sprint("x", i)
			}
			return propCmd{op: pRelease, names: names, sess: w.session(), owner: w.owner(), want: ErrInvalidClaim, what: "release 65"}
		},
		func() propCmd {
			return propCmd{op: pCancel, waiter: 0, sess: w.session(), owner: w.owner(), want: ErrNotWaiting, what: "cancel waiter 0"}
		},
	}
	return cases[rng.IntN(len(cases))]()
}

func (w *propWorld) step(rev uint64) {
	t := w.t
	c := w.gen()
	if c.op == pEnd {
		for _, s := range c.sessions {
			delete(w.live, s)
			w.ended = append(w.ended, s)
			w.newSession()
		}
	}
	before := viewOf(w.tb)
	_, encBefore := encode(t, w.tb)
	grantsBefore, releasesBefore, dequeuedBefore := len(w.rec.grants), len(w.rec.releases), len(w.rec.dequeued)
	twinGrants, twinReleases := len(w.twinRc.grants), len(w.twinRc.releases)

	wouldQueue := c.op == pAcquire && w.tb.WouldQueue(c.req)
	res := applyProp(w.tb, w.live, rev, c)
	twinRes := applyProp(w.twin, w.live, rev, c)
	msg := stepMsg{rev, &c, &res}

	// Determinism: the twin (perhaps restored from a snapshot) answers
	// and ends alike.
	require.Equal(t, res.String(), twinRes.String(), "%s: the twin answered otherwise", msg)
	_, encAfter := encode(t, w.tb)
	_, twinAfter := encode(t, w.twin)
	require.Equal(t, encAfter, twinAfter, "%s: the twin's table differs", msg)
	require.Equal(t, append([]Grant{}, w.rec.grants[grantsBefore:]...), append([]Grant{}, w.twinRc.grants[twinGrants:]...),
		"%s: the twin told other grants", msg)
	require.Equal(t, append([]Release{}, w.rec.releases[releasesBefore:]...), append([]Release{}, w.twinRc.releases[twinReleases:]...),
		"%s: the twin told other releases", msg)

	after := viewOf(w.tb)
	refused := res.err != nil || (c.op == pExpire && !res.ok) || (c.op == pAcquire && (res.out.State == NotAcquired || res.out.State == Lost))
	if c.want != nil {
		require.ErrorIs(t, res.err, c.want, msg)
	}
	if res.err != nil {
		require.True(t, slices.ContainsFunc(documented, func(e error) bool { return errors.Is(res.err, e) }), "%s: undocumented error", msg)
		w.seen["err "+errs.ReasonOf(res.err, "?")]++
	}
	w.count(c, res, before)
	if refused {
		require.Equal(t, encBefore, encAfter, "%s: refused, but changed the table", msg)
		require.Equal(t, grantsBefore, len(w.rec.grants), "%s: refused, but told a grant", msg)
		require.Equal(t, releasesBefore, len(w.rec.releases), "%s: refused, but told a release", msg)
		require.Equal(t, dequeuedBefore, len(w.rec.dequeued), "%s: refused, but told a dequeue", msg)
	}
	if c.op == pAcquire && res.err == nil {
		w.checkOutcome(msg, rev, c.req, res.out, before, after)
		// The leader's hint (--lock-queue-defer) holds back only what
		// queues: a grant held back would wait for nothing.
		if wouldQueue {
			require.Equal(t, Queued, res.out.State, "%s: WouldQueue said it would queue", msg)
			w.seen["would queue"]++
		}
	}
	if !refused {
		w.checkEnded(msg, c, before, after)
	}
	w.checkGrants(msg, c, rev, before, after, w.rec.grants[grantsBefore:])
	w.checkState(msg, after)
}

// checkOutcome judges an acquire's answer by the test's rules.
func (w *propWorld) checkOutcome(msg stepMsg, rev uint64, r Request, out Outcome, before, after propView) {
	t := w.t
	claims, err := normalize(r)
	require.NoError(t, err, msg)
	if r.ResumeToken != 0 {
		held := true
		for _, c := range claims {
			if h := before.holder(c.Name, r.Session, r.Owner); h == nil || h.Token != r.ResumeToken {
				held = false
			}
		}
		if held {
			require.Equal(t, Outcome{State: Granted, Token: r.ResumeToken}, out, "%s: a held grant was not resumed", msg)
		} else {
			require.Equal(t, Outcome{State: Lost}, out, "%s: a resume of what is not held", msg)
		}
		return
	}
	involved := false
	for _, c := range claims {
		if before.holder(c.Name, r.Session, r.Owner) != nil {
			involved = true
		}
		for _, id := range before.locks[c.Name].Queue {
			if x := before.waiters[id]; x.Session == r.Session && x.Owner == r.Owner {
				involved = true
			}
		}
	}
	// A grant converts the owner's grant in place when the owner held the
	// read-write lock in the other mode; it says so, with the converted
	// grant's token, and only then.
	var converted uint64
	if len(claims) == 1 && claims[0].Kind == KindRW {
		if h := before.holder(claims[0].Name, r.Session, r.Owner); h != nil && h.Mode != claims[0].Mode {
			converted = h.Token
		}
	}
	if out.State == Granted {
		require.Equal(t, converted, out.Converted, "%s: a grant that converted %d in place, or none (0), said otherwise", msg, converted)
		if converted != 0 && claims[0].Mode == Shared {
			require.Equal(t, converted, out.Token, "%s: a downgrade changed the token", msg)
		}
	} else {
		require.Zero(t, out.Converted, "%s: converted, but not granted", msg)
	}
	if r.Conversion {
		// A conversion of nothing held (the grant ended) takes nothing,
		// unless the owner waits (answered with its wait, as any request).
		waits := false
		for _, id := range before.locks[claims[0].Name].Queue {
			if x := before.waiters[id]; x.Session == r.Session && x.Owner == r.Owner {
				waits = true
			}
		}
		if before.holder(claims[0].Name, r.Session, r.Owner) == nil && !waits {
			require.Equal(t, Outcome{State: Lost, Reason: ReasonConvertedEnded}, out, "%s: a conversion of a grant that ended", msg)
			return
		}
	}
	switch out.State {
	case Granted:
		for _, c := range claims {
			h := after.holder(c.Name, r.Session, r.Owner)
			require.NotNil(t, h, "%s: granted but does not hold %s", msg, c.Name)
			require.Equal(t, out.Token, h.Token, "%s: granted under another token than it holds %s", msg, c.Name)
			require.Equal(t, c.Mode, h.Mode, "%s: granted %s in another mode", msg, c.Name)
			require.Equal(t, c.Permits, h.Permits, "%s: granted other permits of %s", msg, c.Name)
		}
	case Queued:
		x, ok := after.waiters[out.Waiter]
		require.True(t, ok, "%s: queued as a waiter that is not queued", msg)
		require.True(t, x.Session == r.Session && x.Owner == r.Owner && slices.Equal(x.Claims, claims), "%s: queued as another waiter %+v", msg, x)
		require.Equal(t, out.Position, slices.Index(after.locks[claims[0].Name].Queue, out.Waiter), "%s: wrong position", msg)
	}
	if involved {
		return
	}
	// A new acquire: granted at once iff every lock it claims has no
	// queue and room.
	free := true
	for _, c := range claims {
		l, ok := before.locks[c.Name]
		if ok && (len(l.Queue) > 0 || !fits(l.Kind, l.Capacity, l.Holders, c)) {
			free = false
		}
	}
	switch {
	case free:
		require.Equal(t, Outcome{State: Granted, Token: rev}, out, "%s: free but not granted at once", msg)
	case r.Wait:
		require.Equal(t, Queued, out.State, "%s: taken but not queued", msg)
		require.Equal(t, rev, out.Waiter, "%s: a waiter's ID is its command's index", msg)
	default:
		require.Equal(t, Outcome{State: NotAcquired}, out, "%s: a try-lock of a taken lock", msg)
	}
}

// checkGrants judges the grants a command made, found by comparing the
// table before and after (not by what the observer heard).
func (w *propWorld) checkGrants(msg stepMsg, c propCmd, rev uint64, before, after propView, told []Grant) {
	t := w.t
	var made []holdKey
	grantedWaiters := map[uint64]bool{}
	for name, l := range after.locks {
		for _, h := range l.Holders {
			k := holdKey{name, h.Session, h.Owner, h.Token}
			if _, known := w.arrival[k]; known {
				continue
			}
			made = append(made, k)
			require.Equal(t, rev, h.Token, "%s: a grant of %s is not under its command's index", msg, name)
			require.Greater(t, h.Token, w.lastToken[name], "%s: token of %s did not increase", msg, name)
			switch old := before.holder(name, h.Session, h.Owner); {
			case old != nil:
				// Only an upgrade replaces a held token: by the lock's only
				// holder, from read to write.
				bl := before.locks[name]
				require.True(t, bl.Kind == KindRW && old.Mode == Shared && h.Mode == Exclusive && len(bl.Holders) == 1,
					"%s: the token of a held grant of %s changed (%+v to %+v)", msg, name, *old, *h)
				w.arrival[k] = w.arrival[holdKey{name, old.Session, old.Owner, old.Token}]
			default:
				w.arrival[k] = rev
				for _, id := range before.locks[name].Queue {
					x := before.waiters[id]
					if x.Session == h.Session && x.Owner == h.Owner {
						_, still := after.waiters[id]
						require.False(t, still, "%s: waiter %d holds %s it waits for", msg, id, name)
						w.arrival[k] = id
						grantedWaiters[id] = true
					}
				}
			}
		}
	}
	if len(grantedWaiters) > 0 {
		w.seen["queued grant"]++
		if len(grantedWaiters) > 1 {
			w.seen["grant of several waiters"]++
		}
		if c.op == pEnd {
			w.seen["session end granted"]++
		}
	}
	// All or none: a granted waiter holds every lock it claimed.
	for id := range grantedWaiters {
		if len(before.waiters[id].Claims) > 1 {
			w.seen["LockAll queued grant"]++
		}
		for _, c := range before.waiters[id].Claims {
			h := after.holder(c.Name, before.waiters[id].Session, before.waiters[id].Owner)
			require.True(t, h != nil && h.Token == rev, "%s: waiter %d granted without %s", msg, id, c.Name)
			require.Equal(t, c.Mode, h.Mode, msg)
			require.Equal(t, c.Permits, h.Permits, msg)
		}
	}
	for _, k := range made {
		w.lastToken[k.name] = k.token
	}
	// The observer heard exactly the grants made.
	var heard []holdKey
	for _, g := range told {
		heard = append(heard, holdKey{g.Name, g.Session, g.Owner, g.Token})
	}
	cmpKey := func(a, b holdKey) int {
		return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
	}
	slices.SortFunc(made, cmpKey)
	slices.SortFunc(heard, cmpKey)
	require.Equal(t, made, heard, "%s: the observer heard other grants than were made", msg)
	// Forget grants that ended.
	for k := range w.arrival {
		if h := after.holder(k.name, k.sess, k.owner); h == nil || h.Token != k.token {
			delete(w.arrival, k)
		}
	}
}

// checkState checks what must hold at every applied index.
func (w *propWorld) checkState(msg stepMsg, v propView) {
	t := w.t
	held, queued := 0, 0
	for name, l := range v.locks {
		held += len(l.Holders)
		queued += len(l.Queue)
		require.False(t, len(l.Holders) == 0 && len(l.Queue) == 0, "%s: empty lock %s kept", msg, name)
		var permits int64
		writers, readers := 0, 0
		for _, h := range l.Holders {
			require.True(t, w.live[h.Session], "%s: %s held by ended session %d", msg, name, h.Session)
			require.GreaterOrEqual(t, h.Permits, int64(1), msg)
			permits += h.Permits
			if h.Mode == Exclusive {
				writers++
			} else {
				readers++
			}
			require.Len(t, slices.DeleteFunc(slices.Clone(l.Holders), func(o *Holder) bool { return o.Session != h.Session || o.Owner != h.Owner }), 1,
				"%s: %s held twice by one owner", msg, name)
		}
		switch l.Kind {
		case KindMutex:
			require.LessOrEqual(t, len(l.Holders), 1, "%s: mutex %s has %d holders", msg, name, len(l.Holders))
			require.Zero(t, readers, "%s: mutex %s shared", msg, name)
		case KindRW:
			require.False(t, writers > 1 || (writers == 1 && readers > 0), "%s: %s has %d writers and %d readers", msg, name, writers, readers)
		case KindSemaphore:
			require.Equal(t, propCaps[name], l.Capacity, "%s: semaphore %s changed capacity", msg, name)
			require.LessOrEqual(t, permits, l.Capacity, "%s: semaphore %s gives out %d of %d permits", msg, name, permits, l.Capacity)
			require.Zero(t, writers, "%s: semaphore %s held exclusively", msg, name)
		default:
			t.Fatalf("%s: %s of kind %d", msg, name, l.Kind)
		}
		for i, id := range l.Queue {
			x, ok := v.waiters[id]
			require.True(t, ok, "%s: %s queues unknown waiter %d", msg, name, id)
			require.True(t, w.live[x.Session], "%s: %s queues waiter %d of ended session %d", msg, name, id, x.Session)
			require.True(t, slices.ContainsFunc(x.Claims, func(c Claim) bool { return c.Name == name }), "%s: %s queues waiter %d that does not claim it", msg, name, id)
			if i > 0 {
				require.Greater(t, id, l.Queue[i-1], "%s: queue of %s out of order: %v", msg, name, l.Queue)
			}
			// FIFO: no holder arrived after a waiter still queued.
			for _, h := range l.Holders {
				a, ok := w.arrival[holdKey{name, h.Session, h.Owner, h.Token}]
				require.True(t, ok, msg)
				require.Less(t, a, id, "%s: %s holder %+v (arrived %d) overtook waiter %d, queued %v", msg, name, *h, a, id, l.Queue)
			}
		}
		// No idle lock: the head is not grantable by the test's rules.
		if len(l.Queue) > 0 {
			head := v.waiters[l.Queue[0]]
			grantable := true
			for _, c := range head.Claims {
				o := v.locks[c.Name]
				if len(o.Queue) == 0 || o.Queue[0] != head.ID || !fits(o.Kind, o.Capacity, o.Holders, c) {
					grantable = false
				}
			}
			require.False(t, grantable, "%s: waiter %d at the head of %s could be granted but waits (holders %v)", msg, head.ID, name, l.Holders)
		}
	}
	require.Equal(t, held, w.tb.Holders(), "%s: the holder count drifted", msg)
	require.Equal(t, queued, w.tb.Queued(), "%s: the queued count drifted", msg)
	for id, x := range v.waiters {
		for _, c := range x.Claims {
			l := v.locks[c.Name]
			n := 0
			for _, q := range l.Queue {
				if q == id {
					n++
				}
			}
			require.Equal(t, 1, n, "%s: waiter %d queued %d times on %s", msg, id, n, c.Name)
			require.Nil(t, v.holder(c.Name, x.Session, x.Owner), "%s: waiter %d holds %s it waits for", msg, id, c.Name)
		}
	}
	// The table's index of sessions names exactly the locks each session
	// holds or waits for (ending a session, and Involvement, go by it).
	involved := map[int64]map[string]struct{}{}
	involve := func(s int64, name string) {
		if involved[s] == nil {
			involved[s] = map[string]struct{}{}
		}
		involved[s][name] = struct{}{}
	}
	for name, l := range v.locks {
		for _, h := range l.Holders {
			involve(h.Session, name)
		}
	}
	for _, x := range v.waiters {
		for _, c := range x.Claims {
			involve(x.Session, c.Name)
		}
	}
	require.Equal(t, involved, w.tb.bySession, "%s: the index of sessions drifted", msg)
	for _, s := range w.ended {
		_, involved := w.tb.bySession[s]
		require.False(t, involved, "%s: ended session %d still involved", msg, s)
	}
}

// count notes what a step did, for the check that the sequences reach it.
func (w *propWorld) count(c propCmd, res propResult, before propView) {
	switch {
	case c.op == pAcquire && res.err == nil && c.req.ResumeToken != 0:
		w.seen[map[State]string{Granted: "resume Granted", Lost: "resume Lost"}[res.out.State]]++
	case c.op == pAcquire && res.err == nil && c.req.Conversion && res.out.State == Lost:
		w.seen["conversion Lost"]++
	case c.op == pAcquire && res.err == nil && c.req.Conversion && res.out.Converted != 0:
		w.seen["conversion converted"]++
	case c.op == pAcquire && res.out.State == NotAcquired:
		w.seen["NotAcquired"]++
	case c.op == pAcquire && res.out.State == Queued && res.out.Waiter != 0 && before.waiters[res.out.Waiter].ID != 0:
		w.seen["reattach"]++
	case c.op == pRelease && c.what == "release part of a grant":
		w.seen["release part of a grant"]++
	case c.op == pEnd && res.n > 0:
		w.seen["session end ended"]++
	case c.op == pExpire && res.ok:
		w.seen["hold expired"]++
		if c.ref.Session == 0 {
			w.seen["hold expired legacy"]++
		}
	case c.op == pForce && res.n > 0:
		for _, l := range before.locks {
			for _, h := range l.Holders {
				if l.Name != c.name && h.Token == c.token {
					w.seen["force several locks"]++
				}
			}
		}
	}
	if c.op == pAcquire && res.err == nil && c.req.ResumeToken == 0 && len(c.req.Claims) == 1 && c.req.Claims[0].Kind == KindRW {
		if h := before.holder("rw", c.req.Session, c.req.Owner); h != nil && h.Mode != c.req.Claims[0].Mode {
			w.seen[map[Mode]string{Exclusive: "upgrade", Shared: "downgrade"}[c.req.Claims[0].Mode]]++
		}
	}
	for _, l := range w.tb.locks {
		if l.Kind == KindSemaphore && len(l.Holders) > 1 {
			w.seen["semaphore shared"]++
		}
		for _, h := range l.Holders {
			if h.Permits > 1 {
				w.seen["permits > 1"]++
			}
		}
	}
}

// checkEnded checks that a command ended exactly the grants it names: a
// release the owner's grants of the named locks; a force-release the grants
// of the lock (with the token, when given) and a hold expiry the grant its
// ref names, each on every lock the grant took; a session's end every
// grant of the session; an acquire none (but the read grant an upgrade
// replaces).
func (w *propWorld) checkEnded(msg stepMsg, c propCmd, before, after propView) {
	type grant struct {
		sess  int64
		owner string
		token uint64
	}
	whole := map[grant]bool{} // grants that end on every lock
	must := map[holdKey]bool{}
	for name, l := range before.locks {
		for _, h := range l.Holders {
			g := grant{h.Session, h.Owner, h.Token}
			switch c.op {
			case pRelease:
				if h.Session == c.sess && h.Owner == c.owner && slices.Contains(c.names, name) {
					must[holdKey{name, g.sess, g.owner, g.token}] = true
				}
			case pForce:
				if name == c.name && (c.token == 0 || h.Token == c.token) {
					whole[g] = true
				}
			case pExpire:
				exact := c.ref.Session != 0 || c.ref.Owner != ""
				if name == c.ref.Name && h.Token == c.ref.Token && h.HoldMs > 0 && (!exact || (h.Session == c.ref.Session && h.Owner == c.ref.Owner)) {
					whole[g] = true
				}
			case pEnd:
				if slices.Contains(c.sessions, h.Session) {
					must[holdKey{name, g.sess, g.owner, g.token}] = true
				}
			}
		}
	}
	for name, l := range before.locks {
		for _, h := range l.Holders {
			if whole[grant{h.Session, h.Owner, h.Token}] {
				must[holdKey{name, h.Session, h.Owner, h.Token}] = true
			}
		}
	}
	for name, l := range before.locks {
		for _, h := range l.Holders {
			k := holdKey{name, h.Session, h.Owner, h.Token}
			a := after.holder(name, h.Session, h.Owner)
			gone := a == nil || a.Token != h.Token
			if c.op == pAcquire && gone && h.Session == c.req.Session && h.Owner == c.req.Owner && a != nil && a.Mode == Exclusive && h.Mode == Shared {
				continue // an upgrade
			}
			require.Equal(w.t, must[k], gone, "%s: grant %+v on %s ended: %v, should have: %v", msg, *h, name, gone, must[k])
		}
	}
}
