package checker

import (
	"fmt"
	"hash/fnv"
	"math/bits"
	"slices"
	"strconv"
	"strings"

	"github.com/anishathalye/porcupine"

	"github.com/concord-dev/concord/tests/robustness/history"
)

// MaxTableLocks is the most locks the lock-table model follows at once:
// it checks them together, in one partition, so its state stays small.
const MaxTableLocks = 5

// LockTableState is the model's state of a cluster's whole lock table
// under a lock limit (--max-locks): the state of each of its locks, and
// the waiters queued for it, in the order of the model's names. For a
// read-write lock, Locks holds its writer; a semaphore has none.
type LockTableState struct {
	Locks [MaxTableLocks]LockState
	// Queues hold the waiters of each mutex (see formatQueue), sorted:
	// the model counts them against the limit and lets any of them be
	// granted next (the order of the queue is the property tests'
	// business, not this model's).
	Queues [MaxTableLocks]string
	// Readers hold the read grants of each read-write lock, and the
	// grants of each semaphore (see formatReaders), sorted.
	Readers [MaxTableLocks]string
}

// waiter is a waiting acquire queued for a mutex: its owner, its session,
// and the clock reading until which that session is known to live.
type waiter struct {
	Owner     string
	Session   int64
	Protected int64
}

// The separators of an encoded queue or set of readers: between entries,
// and between an entry's fields. Owners are SDK owner IDs, which hold
// neither (they do hold "/").
const (
	waiterSep = "\x1e"
	fieldSep  = "\x1f"
)

// splitEntries decodes an encoded queue or set of readers into each
// entry's fields.
func splitEntries(q string) [][]string {
	if q == "" {
		return nil
	}
	parts := strings.Split(q, waiterSep)
	out := make([][]string, len(parts))
	for i, p := range parts {
		out[i] = strings.Split(p, fieldSep)
	}
	return out
}

// joinEntries encodes entries given as their fields, sorted.
func joinEntries(entries [][]string) string {
	fs := make([]string, len(entries))
	for i, f := range entries {
		fs[i] = strings.Join(f, fieldSep)
	}
	slices.Sort(fs)
	return strings.Join(fs, waiterSep)
}

// parseQueue decodes a queue of LockTableState.Queues.
func parseQueue(q string) []waiter {
	var ws []waiter
	for _, f := range splitEntries(q) {
		w := waiter{Owner: f[0]}
		w.Session, _ = strconv.ParseInt(f[1], 10, 64)
		w.Protected, _ = strconv.ParseInt(f[2], 10, 64)
		ws = append(ws, w)
	}
	return ws
}

// formatQueue encodes waiters, sorted, as owner, session and protection
// for each.
func formatQueue(ws []waiter) string {
	fs := make([][]string, len(ws))
	for i, w := range ws {
		fs[i] = []string{w.Owner, strconv.FormatInt(w.Session, 10), strconv.FormatInt(w.Protected, 10)}
	}
	return joinEntries(fs)
}

// readGrant is a read grant of a read-write lock, or a grant of a
// semaphore: its owner, its session, the clock reading until which that
// session is known to live, its token (0 while unknown: granted to a
// try-lock of unknown outcome; Min is then the least it can be), and the
// permits it takes (1 for a reader).
type readGrant struct {
	Owner     string
	Session   int64
	Protected int64
	Token     uint64
	Min       uint64
	Permits   int
}

// parseReaders decodes the read grants of LockTableState.Readers.
func parseReaders(q string) []readGrant {
	var rs []readGrant
	for _, f := range splitEntries(q) {
		r := readGrant{Owner: f[0]}
		r.Session, _ = strconv.ParseInt(f[1], 10, 64)
		r.Protected, _ = strconv.ParseInt(f[2], 10, 64)
		r.Token, _ = strconv.ParseUint(f[3], 10, 64)
		r.Min, _ = strconv.ParseUint(f[4], 10, 64)
		r.Permits, _ = strconv.Atoi(f[5])
		rs = append(rs, r)
	}
	return rs
}

// formatReaders encodes read grants, sorted, as formatQueue does waiters,
// with their tokens and permits.
func formatReaders(rs []readGrant) string {
	fs := make([][]string, len(rs))
	for i, r := range rs {
		fs[i] = []string{r.Owner, strconv.FormatInt(r.Session, 10), strconv.FormatInt(r.Protected, 10),
			strconv.FormatUint(r.Token, 10), strconv.FormatUint(r.Min, 10), strconv.Itoa(r.Permits)}
	}
	return joinEntries(fs)
}

// describeReaders renders encoded read grants for people.
func describeReaders(q string) string {
	var parts []string
	for _, r := range parseReaders(q) {
		tok := "?"
		if r.Token != 0 {
			tok = strconv.FormatUint(r.Token, 10)
		}
		permits := ""
		if r.Permits != 1 {
			permits = fmt.Sprintf(" (%d permits)", r.Permits)
		}
		parts = append(parts, fmt.Sprintf("%s@%s%s in session %d (lives until %.3fs)", r.Owner, tok, permits, r.Session, float64(r.Protected)/1e9))
	}
	return strings.Join(parts, ", ")
}

// describeQueue renders an encoded queue for people.
func describeQueue(q string) string {
	var parts []string
	for _, w := range parseQueue(q) {
		parts = append(parts, fmt.Sprintf("%s in session %d (lives until %.3fs)", w.Owner, w.Session, float64(w.Protected)/1e9))
	}
	return strings.Join(parts, ", ")
}

// queueLen is the number of waiters in an encoded queue.
func queueLen(q string) int {
	if q == "" {
		return 0
	}
	return strings.Count(q, waiterSep) + 1
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

// occupied reports whether lock i is taken: held (by its writer, for a
// read-write lock, or by readers), or handed to one of its waiters (the
// model grants a waiter by a separate operation, so it may see the mutex
// free with waiters for a while: the state machine never does, it grants
// the next waiter in the command that frees it).
func (t LockTableState) occupied(i int) bool {
	return t.Locks[i].Holder != "" || t.Queues[i] != "" || t.Readers[i] != ""
}

// entries is the table's entries as --max-locks counts them
// (lock.Table.Entries): a lock object for each lock held or waited for, a
// grant for each holder (a writer, or each reader), a place for each
// waiter.
func (t LockTableState) entries() int {
	n := 0
	for i, s := range t.Locks {
		q := queueLen(t.Queues[i]) + queueLen(t.Readers[i])
		switch {
		case s.Holder != "":
			n += 2
		case q > 0:
			n++
		}
		n += q
	}
	return n
}

// withoutSession returns t with every waiter and every reader of session
// removed.
func (t LockTableState) withoutSession(session int64) LockTableState {
	for i, q := range t.Queues {
		if q == "" {
			continue
		}
		ws := slices.DeleteFunc(parseQueue(q), func(w waiter) bool { return w.Session == session })
		t.Queues[i] = formatQueue(ws)
	}
	for i, q := range t.Readers {
		if q == "" {
			continue
		}
		rs := slices.DeleteFunc(parseReaders(q), func(r readGrant) bool { return r.Session == session })
		t.Readers[i] = formatReaders(rs)
	}
	return t
}

// permits is how many permits the grants of semaphore i take.
func (t LockTableState) permits(i int) int {
	n := 0
	for _, r := range parseReaders(t.Readers[i]) {
		n += r.Permits
	}
	return n
}

// unread returns t with owner's read grant of lock i removed, and the
// grant, if there was one.
func (t LockTableState) unread(i int, owner string) (LockTableState, readGrant, bool) {
	rs := parseReaders(t.Readers[i])
	k := slices.IndexFunc(rs, func(r readGrant) bool { return r.Owner == owner })
	if k < 0 {
		return t, readGrant{}, false
	}
	r := rs[k]
	t.Readers[i] = formatReaders(slices.Delete(rs, k, k+1))
	return t, r, true
}

// clearReaders returns t without the readers of lock i, if every one of
// them may have ended by ret (its session may have expired).
func (t LockTableState) clearReaders(i int, ret int64) (LockTableState, bool) {
	for _, r := range parseReaders(t.Readers[i]) {
		if ret < r.Protected {
			return t, false
		}
	}
	t.Readers[i] = ""
	return t, true
}

// dequeue returns t with owner's place in mutex i's queue removed, and
// the place, if it had one.
func (t LockTableState) dequeue(i int, owner string) (LockTableState, waiter, bool) {
	ws := parseQueue(t.Queues[i])
	k := slices.IndexFunc(ws, func(w waiter) bool { return w.Owner == owner })
	if k < 0 {
		return t, waiter{}, false
	}
	w := ws[k]
	t.Queues[i] = formatQueue(slices.Delete(ws, k, k+1))
	return t, w, true
}

// clearQueue returns t with mutex i's queue emptied, if every waiter in it
// may have left by ret (its session may have expired): an acquire granted
// at once, or refused as for a lock that did not exist, shows that nobody
// waited.
func (t LockTableState) clearQueue(i int, ret int64) (LockTableState, bool) {
	for _, w := range parseQueue(t.Queues[i]) {
		if ret < w.Protected {
			return t, false
		}
	}
	t.Queues[i] = ""
	return t, true
}

// LockTableInput is one operation of the lock-table model: a lock
// operation on the mutex at Index, or, for KindLockSessionGone, on every
// mutex, with Seals holding a bit for each one grants of which were
// requested in the session. An acquire of several mutexes at once
// (LockAll) is one operation: Also holds a bit for each mutex it claims
// besides the one at Index. A waiting acquire that took a place in the
// queue, or may have, is two operations (Phase).
type LockTableInput struct {
	LockInput
	Index int
	Seals uint32
	Also  uint32
	// Phase is, for a waiting acquire split in two, which part this is:
	// PhaseQueue, from its call until the client learned it was queued
	// (or until its end, if it never did), in which it took its place,
	// was granted at once, or, when its outcome is unknown, did neither;
	// or PhaseGrant, from its call until its end, in which a queued
	// waiter was granted (or, when the outcome is unknown, left the queue
	// or stayed). 0 for every other operation.
	Phase int
}

// The parts of a waiting acquire (LockTableInput.Phase).
const (
	PhaseQueue = 1
	PhaseGrant = 2
)

// claims is the set of mutexes the operation acts on, as bits.
func (in LockTableInput) claims() uint32 { return in.Also | 1<<in.Index }

// LockTable is the sequential specification of concord's mutexes under a
// lock limit: a mutex held is two entries of the limit (the lock and its
// grant), a waiter queued for it one more (its place), a free one none.
//
// A waiting acquire of a free mutex is granted at once, as a try-lock is;
// of a taken one, it takes a place in the queue exactly when the place
// fits (entries + 1 ≤ Limit), and is refused with QUOTA_EXCEEDED exactly
// when it does not. A queued waiter is granted later (its second part,
// PhaseGrant) while the mutex is free, with a token above every earlier
// one, or leaves when its session ends; granting it adds no entry (its
// place becomes the grant). The model lets a mutex be free with waiters
// until one of them is granted, and counts it taken meanwhile: a try-lock
// of it fails as locked, and a grant of it to anyone else needs all of
// its waiters gone.
//
// A try-lock of several mutexes at once (LockAll) takes all of them or
// none: it fails as locked when any of them is taken; otherwise it is
// granted, with one token for all, exactly when the entries of all of
// them fit (entries + 2·k ≤ Limit), and refused over the limit when they
// do not, even when some of them alone would fit. Its release is taken
// one mutex at a time, which accepts every history the atomic release
// would.
//
// Every mutex behaves as in LockStep. In addition, as the state machine
// admits an acquire (lock.Request.Admit): an acquire of a free mutex is
// granted only if its two entries fit (entries + 2 ≤ Limit), and is
// refused with QUOTA_EXCEEDED exactly when they do not; a try-lock of a
// taken mutex fails as locked, never as over the limit. Grants and
// waiters whose sessions may have expired may have ended by then: those
// the limit needs ended are ended (any minimal choice of them, which
// makes the model nondeterministic), and a refusal needs them alive,
// which the model keeps them until an operation needs them ended. An
// acquire of unknown outcome may have been refused over the limit, so it
// may have changed nothing. A refusal needs the acquire's session alive,
// as a grant does: none is answered in a session seen gone.
//
// A read-write lock (RW) is taken by try-locks only, to read (Shared) or
// to write: a reader adds its grant to the entries (and the lock object,
// if the lock was free), so many readers take many entries. A try-read is
// granted while nobody writes or waits, and fails as locked exactly when
// somebody does; a try-write fails as locked while anybody reads or
// writes. Either is refused over the limit exactly when it would be
// granted but its entries do not fit.
//
// A semaphore (Capacity) is taken by try-locks of k permits
// (LockInput.Permits), and each of its grants is one entry, as a reader's
// is. A try is granted while the permits out and k fit the capacity, and
// fails as locked exactly when they do not; grants whose sessions may have
// expired may have ended by then, as for the limit (every minimal choice
// of them that makes room). It is refused over the limit exactly when it
// would be granted but its entries do not fit. A wait for a semaphore is
// modelled as granted at once or not at all: the workload waits for one
// only at its end, once every session of the run is gone.
type LockTable struct {
	// Names are the locks, at most MaxTableLocks.
	Names []string
	// RW has a bit for each of Names that is a read-write lock.
	RW uint32
	// Capacity holds the permits of each of Names that is a semaphore,
	// and 0 for the others. A lock neither RW nor a semaphore is a
	// mutex.
	Capacity [MaxTableLocks]int
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
		return []LockTableState{t.withoutSession(in.Session)}
	}
	if in.Shared || m.Capacity[in.Index] > 0 {
		return m.readSteps(t, in, out)
	}
	switch in.Phase {
	case PhaseQueue:
		return m.queueSteps(t, in, out)
	case PhaseGrant:
		return m.grantSteps(t, in, out)
	}
	i := in.Index
	acquire := in.Kind == KindLockAcquire || in.Kind == KindLockTry
	if acquire && in.Also != 0 {
		return m.stepsAll(t, in, out)
	}
	switch {
	case acquire && out.Quota:
		// Refused over the limit: the session lived (the state machine
		// answers SESSION_NOT_FOUND before it counts).
		if goneHas(t.Locks[i].Gone, in.Session) {
			return nil
		}
		var next []LockTableState
		if in.Kind == KindLockAcquire && t.occupied(i) && t.entries()+1 > m.Limit {
			// A wait for a taken mutex whose place did not fit.
			next = append(next, t)
		}
		// A mutex that was free (its grant, if any, and its waiters,
		// if any, ended) whose lock and grant did not fit.
		if f, ok := m.freed(t, i, in.Return); ok && f.entries()+2 > m.Limit {
			next = append(next, f)
		}
		return next
	case acquire && (out.OK || out.Unknown):
		var next []LockTableState
		if out.Unknown {
			// Refused over the limit, or never applied: nothing changed.
			next = append(next, t)
		}
		return append(next, m.grantNow(t, in, out)...)
	case in.Kind == KindLockTry:
		// Not acquired: the lock was taken.
		if t.Queues[i] != "" || t.Readers[i] != "" {
			return []LockTableState{t}
		}
		fallthrough
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

// freed returns t with lock i free and without waiters, if its grants
// and its waiters may have ended by ret.
func (m LockTable) freed(t LockTableState, i int, ret int64) (LockTableState, bool) {
	if s := t.Locks[i]; s.Holder != "" {
		if !s.endable(ret) {
			return t, false
		}
		t.Locks[i] = s.free()
	}
	t, ok := t.clearReaders(i, ret)
	if !ok {
		return t, false
	}
	return t.clearQueue(i, ret)
}

// readSteps is Steps for a try-lock of read-write lock in.Index to read,
// for a try-lock of semaphore in.Index (or the wait that ends a run), and
// for the release of a read grant or of a semaphore's grant.
func (m LockTable) readSteps(t LockTableState, in LockTableInput, out LockOutput) []LockTableState {
	i := in.Index
	sem := m.Capacity[i] > 0
	if m.RW&(1<<i) == 0 && !sem {
		return nil // a mutex has no readers
	}
	switch {
	case in.Kind == KindLockTry:
	case in.Kind == KindLockRelease:
		return m.readRelease(t, in, out)
	case in.Kind == KindLockAcquire && sem && (out.OK || out.Unknown || out.Quota):
		// A wait, granted at once or not at all (LockTable).
	default:
		return nil // readers only try (LockTable)
	}
	permits := 1
	if sem {
		permits = in.Permits
		if permits < 1 || permits > m.Capacity[i] {
			return nil // refused as invalid: not recorded as an answer
		}
	}
	gone := goneHas(t.Locks[i].Gone, in.Session)
	switch {
	case out.Quota:
		// The claim would have been granted (nobody wrote or waited,
		// or its permits fit), and its grant, with the lock object if
		// the lock was free, did not fit; the session lived.
		if gone {
			return nil
		}
		var next []LockTableState
		for _, f := range m.roomFor(t, i, permits, in.Return) {
			adds := 1
			if !f.occupied(i) {
				adds = 2
			}
			if f.entries()+adds > m.Limit {
				next = append(next, f)
			}
		}
		return next
	case out.OK || out.Unknown:
		var next []LockTableState
		if out.Unknown {
			// Refused over the limit, or never applied: nothing changed.
			next = append(next, t)
		}
		if gone {
			return next
		}
		if _, _, reads := t.unread(i, in.Owner); reads {
			return next // every try-lock has an owner of its own
		}
		for _, g := range m.roomFor(t, i, permits, in.Return) {
			s := g.Locks[i]
			r := readGrant{Owner: in.Owner, Session: in.Session, Protected: in.Protected, Permits: permits}
			if out.OK {
				if out.Token <= s.Floor {
					continue
				}
				r.Token, s.Floor = out.Token, out.Token
			} else {
				// A token above the floor, not known.
				r.Min, s.Floor = s.Floor+1, s.Floor+1
			}
			g.Locks[i] = s
			g.Readers[i] = formatReaders(append(parseReaders(g.Readers[i]), r))
			next = append(next, m.admit(g, 0, in.Owner, in.Return)...)
		}
		return next
	default:
		// Not acquired: somebody wrote or waited, or the permits out
		// left too few.
		if t.Locks[i].Holder != "" || t.Queues[i] != "" || (sem && t.permits(i)+permits > m.Capacity[i]) {
			return []LockTableState{t}
		}
		return nil
	}
}

// roomFor returns the states in which lock i could grant a read, or
// permits of a semaphore, at ret: for a read-write lock, t with its writer
// and its waiters ended, if they may have ended by then (none, or nothing,
// if they may not); for a semaphore, t itself if the permits fit, or t
// with every minimal choice of its grants ended that makes them fit,
// among those that may have ended by then.
func (m LockTable) roomFor(t LockTableState, i, permits int, ret int64) []LockTableState {
	if m.Capacity[i] == 0 {
		if s := t.Locks[i]; s.Holder != "" {
			if !s.endable(ret) {
				return nil
			}
			t.Locks[i] = s.free()
		}
		if t, ok := t.clearQueue(i, ret); ok {
			return []LockTableState{t}
		}
		return nil
	}
	need := t.permits(i) + permits - m.Capacity[i]
	if need <= 0 {
		return []LockTableState{t}
	}
	var endable []readGrant
	for _, r := range parseReaders(t.Readers[i]) {
		if ret >= r.Protected {
			endable = append(endable, r)
		}
	}
	freed := func(c uint32) int {
		n := 0
		for k, r := range endable {
			if c&(1<<k) != 0 {
				n += r.Permits
			}
		}
		return n
	}
	var out []LockTableState
	for c := uint32(1); c < 1<<len(endable); c++ {
		if freed(c) < need {
			continue
		}
		minimal := true
		for k := range endable {
			if c&(1<<k) != 0 && freed(c&^(1<<k)) >= need {
				minimal = false
				break
			}
		}
		if !minimal {
			continue
		}
		n := t
		for k, r := range endable {
			if c&(1<<k) != 0 {
				n, _, _ = n.unread(i, r.Owner)
			}
		}
		out = append(out, n)
	}
	return out
}

// readRelease is Steps for the release of in.Owner's read grant of lock
// in.Index under in.Token: as a mutex's (LockStep), for one reader.
func (m LockTable) readRelease(t LockTableState, in LockTableInput, out LockOutput) []LockTableState {
	i := in.Index
	u, r, reads := t.unread(i, in.Owner)
	matches := reads && (r.Token == in.Token || (r.Token == 0 && in.Token >= r.Min))
	switch {
	case out.Unknown:
		if matches {
			return []LockTableState{u}
		}
		return []LockTableState{t}
	case out.OK:
		if !matches {
			return nil
		}
		u.Locks[i].Floor = max(u.Locks[i].Floor, in.Token)
		return []LockTableState{u}
	default:
		// Not held: the grant had ended (its session may have expired).
		if reads && r.Token == in.Token {
			if in.Return < r.Protected {
				return nil
			}
			return []LockTableState{u}
		}
		return []LockTableState{t}
	}
}

// grantNow returns the states in which the acquire in of mutex in.Index
// (a try-lock, or a wait that found the mutex free) was granted at once:
// the mutex was free and nobody waited for it, and its lock and grant fit
// the limit, other grants and waiters ended as needed.
func (m LockTable) grantNow(t LockTableState, in LockTableInput, out LockOutput) []LockTableState {
	i := in.Index
	var next []LockTableState
	for _, s := range LockSteps(t.Locks[i], in.LockInput, out) {
		if s.Holder == "" || s.Holder != in.Owner {
			continue // not granted (a Bounded acquire that never applied: offered by the caller)
		}
		g, ok := t.clearQueue(i, in.Return)
		if ok {
			g, ok = g.clearReaders(i, in.Return)
		}
		if !ok {
			continue
		}
		g.Locks[i] = s
		next = append(next, m.admit(g, 1<<i, "", in.Return)...)
	}
	return next
}

// queueSteps is Steps for the first part of a waiting acquire (PhaseQueue)
// of mutex in.Index by in.Owner.
func (m LockTable) queueSteps(t LockTableState, in LockTableInput, out LockOutput) []LockTableState {
	i := in.Index
	var next []LockTableState
	switch {
	case out.Unknown:
		// Never applied, or refused over the limit; or granted at once;
		// or queued.
		next = append(next, t)
		next = append(next, m.grantNow(t, in, LockOutput{Unknown: true})...)
	case out.OK:
		// Granted, and no QUEUED answer came first: granted at once, or
		// queued and granted later (an attempt the SDK sent again after
		// a failover is answered with the grant the first one queued
		// for).
		next = append(next, m.grantNow(t, in, LockOutput{OK: true, Token: out.Token})...)
	case !out.Queued:
		return nil
	}
	if goneHas(t.Locks[i].Gone, in.Session) || !t.occupied(i) {
		// No place is taken in a session seen gone, nor for a mutex
		// nobody holds: the wait would have been granted.
		return next
	}
	q := t
	q.Queues[i] = formatQueue(append(parseQueue(t.Queues[i]), waiter{Owner: in.Owner, Session: in.Session, Protected: in.Protected}))
	for _, n := range m.admit(q, 0, in.Owner, in.Return) {
		// Making room must not have freed the mutex: the wait found it
		// taken.
		if n.Locks[i].Holder != "" || queueLen(n.Queues[i]) > 1 {
			next = append(next, n)
		}
	}
	return next
}

// grantSteps is Steps for the second part of a waiting acquire
// (PhaseGrant): the waiter in.Owner, queued for mutex in.Index, is granted
// once the mutex is free (its holder released it, or may have ended).
func (m LockTable) grantSteps(t LockTableState, in LockTableInput, out LockOutput) []LockTableState {
	i := in.Index
	var next []LockTableState
	if out.Unknown {
		// Not granted yet (the session's end takes the place back), or
		// left the queue (cancelled).
		next = append(next, t)
		if d, _, ok := t.dequeue(i, in.Owner); ok {
			next = append(next, d)
		}
	} else if !out.OK {
		return nil
	}
	if s := t.Locks[i]; out.OK && s.Holder == in.Owner && s.Token == out.Token {
		// Granted at once, by the first part.
		return []LockTableState{t}
	}
	d, w, ok := t.dequeue(i, in.Owner)
	if !ok || goneHas(t.Locks[i].Gone, w.Session) {
		return next
	}
	s := t.Locks[i]
	if s.Holder != "" {
		if !s.endable(in.Return) {
			return next
		}
		s = s.free()
	}
	if out.Unknown {
		// Granted, with a token above the floor; the grant may end at
		// any time (the SDK releases an abandoned grant, and the client
		// revokes the session).
		d.Locks[i] = LockState{Holder: in.Owner, Session: w.Session, Floor: s.Floor + 1, Gone: s.Gone}
		return append(next, d)
	}
	if out.Token <= s.Floor {
		return next
	}
	d.Locks[i] = LockState{Holder: in.Owner, Token: out.Token, Session: w.Session, Protected: max(in.Protected, w.Protected),
		Floor: out.Token, Gone: s.Gone}
	return append(next, d)
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
		// Every claimed mutex was free (a taken one fails the call as
		// locked before the limit is counted) and their entries did not
		// fit.
		for i := range m.Names {
			if set&(1<<i) == 0 {
				continue
			}
			f, ok := m.freed(t, i, in.Return)
			if !ok {
				return nil
			}
			t = f
		}
		if t.entries()+2*bits.OnesCount32(set) <= m.Limit {
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
			if g, ok = g.clearQueue(i, in.Return); !ok {
				return next
			}
			g.Locks[i] = s
		}
		return append(next, m.admit(g, set, "", in.Return)...)
	default:
		// Not acquired: at least one of them was taken.
		for i := range m.Names {
			if set&(1<<i) != 0 && t.occupied(i) {
				return []LockTableState{t}
			}
		}
		return nil
	}
}

// admit returns the states in which t, just after a grant of the locks in
// set (or a waiter's place or a read grant, owned by keep), fits the
// limit: t itself, or t with grants of other locks, other readers and
// other waiters ended as the limit needs, among those that may have ended
// by ret (every minimal choice: a later operation that needs more of them
// ended ends them then).
func (m LockTable) admit(t LockTableState, set uint32, keep string, ret int64) []LockTableState {
	if t.entries() <= m.Limit {
		return []LockTableState{t}
	}
	// What may end: grants (a lock index), waiters and readers (a lock
	// index and an owner).
	type ending struct {
		i      int
		owner  string // "" for the grant of lock i (its writer)
		reader bool
	}
	var endable []ending
	for j := range m.Names {
		if set&(1<<j) == 0 && t.Locks[j].Holder != "" && t.Locks[j].endable(ret) {
			endable = append(endable, ending{i: j})
		}
		for _, w := range parseQueue(t.Queues[j]) {
			if w.Owner != keep && ret >= w.Protected {
				endable = append(endable, ending{i: j, owner: w.Owner})
			}
		}
		for _, r := range parseReaders(t.Readers[j]) {
			if r.Owner != keep && ret >= r.Protected {
				endable = append(endable, ending{i: j, owner: r.Owner, reader: true})
			}
		}
	}
	if len(endable) > 16 {
		endable = endable[:16] // the workload's clients never queue so many
	}
	apply := func(c uint32) LockTableState {
		n := t
		for k, e := range endable {
			if c&(1<<k) == 0 {
				continue
			}
			switch {
			case e.owner == "":
				n.Locks[e.i] = n.Locks[e.i].free()
			case e.reader:
				n, _, _ = n.unread(e.i, e.owner)
			default:
				n, _, _ = n.dequeue(e.i, e.owner)
			}
		}
		return n
	}
	var out []LockTableState
	for c := uint32(1); c < 1<<len(endable); c++ {
		n := apply(c)
		if n.entries() > m.Limit {
			continue
		}
		minimal := true
		for k := range endable {
			if c&(1<<k) != 0 && apply(c&^(1<<k)).entries() <= m.Limit {
				minimal = false
				break
			}
		}
		if minimal {
			out = append(out, n)
		}
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
			t := state.(LockTableState)
			for i, s := range t.Locks {
				fmt.Fprintf(h, "%s|%d|%d|%d|%d|%s|%s|%s;", s.Holder, s.Token, s.Session, s.Protected, s.Floor, s.Gone, t.Queues[i], t.Readers[i])
			}
			return h.Sum64()
		},
		DescribeOperation: func(input, output interface{}) string {
			in, out := input.(LockTableInput), output.(LockOutput)
			if in.Kind == KindLockSessionGone {
				return lockModel.DescribeOperation(in.LockInput, out)
			}
			names := m.namesOf(in.claims())
			verb := "trylock"
			sem := m.Capacity[in.Index] > 0
			switch {
			case sem && in.Kind == KindLockRelease:
				return fmt.Sprintf("%s: permits %s", names, lockModel.DescribeOperation(in.LockInput, out))
			case sem:
				verb = fmt.Sprintf("take %d permit(s) of", in.Permits)
				if in.Kind == KindLockTry {
					verb = "try to " + verb
				}
			case in.Kind == KindLockAcquire:
				verb = "lock"
			case in.Shared && in.Kind == KindLockRelease:
				return fmt.Sprintf("%s: read %s", names, lockModel.DescribeOperation(in.LockInput, out))
			case in.Shared:
				verb = "try-read"
			}
			switch {
			case out.Quota:
				return fmt.Sprintf("%s %s (%s) -> over the limit", verb, names, in.Owner)
			case in.Phase == PhaseQueue && out.Queued:
				return fmt.Sprintf("lock %s (%s) -> queued", names, in.Owner)
			case in.Phase == PhaseQueue:
				return fmt.Sprintf("lock %s (%s), its first answer -> unknown", names, in.Owner)
			case in.Phase == PhaseGrant && out.OK:
				return fmt.Sprintf("lock %s (%s), queued, -> granted @%d", names, in.Owner, out.Token)
			case in.Phase == PhaseGrant:
				return fmt.Sprintf("lock %s (%s), queued, -> unknown", names, in.Owner)
			case sem || in.Shared:
				answer := "locked"
				switch {
				case out.Unknown:
					answer = "unknown"
				case out.OK:
					answer = fmt.Sprintf("granted @%d", out.Token)
				}
				return fmt.Sprintf("%s %s (%s) -> %s", verb, names, in.Owner, answer)
			}
			return names + ": " + lockModel.DescribeOperation(in.LockInput, out)
		},
		DescribeState: func(state interface{}) string {
			t := state.(LockTableState)
			parts := make([]string, len(m.Names))
			for i, n := range m.Names {
				parts[i] = n + " " + lockModel.DescribeState(t.Locks[i])
				if t.Queues[i] != "" {
					parts[i] += ", waiters " + describeQueue(t.Queues[i])
				}
				switch {
				case t.Readers[i] != "" && m.Capacity[i] > 0:
					parts[i] += fmt.Sprintf(", %d of %d permits held by %s", t.permits(i), m.Capacity[i], describeReaders(t.Readers[i]))
				case t.Readers[i] != "":
					parts[i] += ", read by " + describeReaders(t.Readers[i])
				}
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
		if in.Kind == KindLockAcquire && !op.Output.(LockOutput).Quota && m.Capacity[i] == 0 {
			// A wait, in two parts: see LockTableInput.Phase.
			queue, grant := op, op
			queue.Input = LockTableInput{LockInput: in, Index: i, Phase: PhaseQueue}
			grant.Input = LockTableInput{LockInput: in, Index: i, Phase: PhaseGrant}
			if in.Queued != 0 {
				qin := queue.Input.(LockTableInput)
				qin.Return = in.Queued
				queue.Input, queue.Return, queue.Output = qin, in.Queued, LockOutput{Queued: true}
			}
			out = append(out, queue, grant)
			continue
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
