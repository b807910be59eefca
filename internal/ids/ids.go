package ids

import (
	"math"
	"slices"
	"strings"

	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/session"
)

// MaxWorkerBits bounds the worker bits of a pool.
const MaxWorkerBits = 16

// MaxReserveAheadMs bounds how far past the leader's clock a worker ID's
// high-water mark may be reserved: an hour, far above what a generator
// reserves (its Reserve, 3 s by default, twice, plus a second) and above
// the clock offsets between members that the fault campaigns inject (up
// to 20 minutes). Without a bound one call could stall the worker's next
// holders until the clock reached any mark at all.
const MaxReserveAheadMs = 60 * 60 * 1000

// Worker is one leased or freed worker ID.
type Worker struct {
	ID        int64
	Session   int64
	Owner     string
	HighWater int64 // ms since the Unix epoch; timestamps below it may have been issued
	LeasedMs  int64
	FreedMs   int64 // when the last holder let go; 0 while held or never used
}

// Held reports whether a session holds the worker ID.
func (w *Worker) Held() bool { return w.Session != 0 }

// Pool is a set of worker IDs sharing a layout.
type Pool struct {
	Name       string
	WorkerBits int
	Workers    map[int64]*Worker
}

// Tag is one segment counter.
type Tag struct {
	Name      string
	Start     int64
	Step      int64
	Next      int64
	Fetches   int64
	CreatedMs int64
	LastMs    int64
}

// SessionChecker tells whether a session is live.
type SessionChecker interface {
	Exists(id int64) bool
}

// Table holds pools, tags and sequences.
type Table struct {
	pools     map[string]*Pool
	tags      map[string]*Tag
	sequences map[string]int64
	bySession map[int64]map[string]struct{} // pool\x00id keys
	sessions  SessionChecker
}

// NewTable returns an empty table.
func NewTable(s SessionChecker) *Table {
	return &Table{pools: map[string]*Pool{}, tags: map[string]*Tag{}, sequences: map[string]int64{},
		bySession: map[int64]map[string]struct{}{}, sessions: s}
}

func invalid(format string, args ...any) error { return errs.Wrapf(ErrInvalid, format, args...) }

func workerKey(pool string, id int64) string { return pool + "\x00" + itoa(id) }

// LeaseWorker leases the lowest worker ID of pool that is free and past its
// guard interval, to a session. It returns the worker with its high-water
// mark: the new holder must not issue timestamps at or below it.
func (t *Table) LeaseWorker(nowMs int64, pool string, bits int, sess int64, owner string, guardMs int64) (Worker, error) {
	if pool == "" || owner == "" || strings.ContainsRune(pool, 0) {
		return Worker{}, invalid("pool and owner are required; a pool name has no NUL byte")
	}
	if bits < 1 || bits > MaxWorkerBits {
		return Worker{}, invalid("%d worker bits; give 1 to %d", bits, MaxWorkerBits)
	}
	if guardMs < 0 {
		return Worker{}, invalid("negative guard interval")
	}
	if !t.sessions.Exists(sess) {
		return Worker{}, errs.Wrapf(session.ErrNotFound, "session %d", sess)
	}
	p := t.pools[pool]
	if p == nil {
		p = &Pool{Name: pool, WorkerBits: bits, Workers: map[int64]*Worker{}}
		t.pools[pool] = p
	}
	if p.WorkerBits != bits {
		return Worker{}, errs.Wrapf(ErrLayoutMismatch, "pool %q has %d worker bits, not %d", pool, p.WorkerBits, bits)
	}
	for id := int64(0); id < int64(1)<<bits; id++ {
		w := p.Workers[id]
		if w == nil {
			w = &Worker{ID: id}
			p.Workers[id] = w
		}
		if w.Held() || (w.FreedMs != 0 && nowMs < w.FreedMs+guardMs) {
			continue
		}
		w.Session, w.Owner, w.LeasedMs, w.FreedMs = sess, owner, nowMs, 0
		t.involve(sess, workerKey(pool, id))
		return *w, nil
	}
	return Worker{}, errs.Wrapf(ErrNoWorkerIDs, "all %d worker IDs of pool %q are leased or in their guard interval", int64(1)<<bits, pool)
}

func (t *Table) heldWorker(pool string, id, sess int64, owner string) (*Worker, error) {
	p := t.pools[pool]
	if p == nil || p.Workers[id] == nil {
		return nil, errs.Wrapf(ErrWorkerNotHeld, "pool %q worker %d", pool, id)
	}
	w := p.Workers[id]
	if w.Session != sess || w.Owner != owner {
		return nil, errs.Wrapf(ErrWorkerNotHeld, "pool %q worker %d is held by another session", pool, id)
	}
	return w, nil
}

// ReserveWorker raises a held worker's high-water mark to untilMs (never
// lowers it) and returns the mark.
//
// A mark is at most MaxReserveAheadMs past nowMs (the leader's clock at
// the command): a generator that leased the worker next would otherwise
// wait, or fail, until its clock passed a mark far in the future.
func (t *Table) ReserveWorker(nowMs int64, pool string, id, sess int64, owner string, untilMs int64) (int64, error) {
	if untilMs < 0 || untilMs > nowMs+MaxReserveAheadMs {
		return 0, invalid("a reservation until %d ms is outside [0, now+%d ms]", untilMs, int64(MaxReserveAheadMs))
	}
	w, err := t.heldWorker(pool, id, sess, owner)
	if err != nil {
		return 0, err
	}
	w.HighWater = max(w.HighWater, untilMs)
	return w.HighWater, nil
}

// ReleaseWorker frees a held worker ID; its guard interval starts now.
func (t *Table) ReleaseWorker(nowMs int64, pool string, id, sess int64, owner string) error {
	w, err := t.heldWorker(pool, id, sess, owner)
	if err != nil {
		return err
	}
	t.free(nowMs, pool, w)
	return nil
}

func (t *Table) free(nowMs int64, pool string, w *Worker) {
	sess := w.Session
	w.Session, w.Owner, w.FreedMs = 0, "", nowMs
	if s := t.bySession[sess]; s != nil {
		delete(s, workerKey(pool, w.ID))
		if len(s) == 0 {
			delete(t.bySession, sess)
		}
	}
}

func (t *Table) involve(sess int64, key string) {
	s := t.bySession[sess]
	if s == nil {
		s = map[string]struct{}{}
		t.bySession[sess] = s
	}
	s[key] = struct{}{}
}

// EndSession frees every worker ID the session held and returns how many.
func (t *Table) EndSession(nowMs int64, sess int64) int64 {
	keys := make([]string, 0, len(t.bySession[sess]))
	for k := range t.bySession[sess] {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		pool, id := splitWorkerKey(k)
		if p := t.pools[pool]; p != nil {
			if w := p.Workers[id]; w != nil && w.Session == sess {
				t.free(nowMs, pool, w)
			}
		}
	}
	delete(t.bySession, sess)
	return int64(len(keys))
}

// CreateTag creates a segment tag; creating it again with the same settings
// does nothing.
func (t *Table) CreateTag(nowMs int64, name string, start, step int64) (Tag, error) {
	if name == "" {
		return Tag{}, invalid("empty tag")
	}
	if step < 1 {
		return Tag{}, invalid("step %d is below 1", step)
	}
	if tg := t.tags[name]; tg != nil {
		if tg.Start != start || tg.Step != step {
			return Tag{}, errs.Wrapf(ErrTagExists, "tag %q was created with start %d and step %d", name, tg.Start, tg.Step)
		}
		return *tg, nil
	}
	tg := &Tag{Name: name, Start: start, Step: step, Next: start, CreatedMs: nowMs}
	t.tags[name] = tg
	return *tg, nil
}

// AllocSegment hands out [next, next+count) of a tag; at the end of the
// int64 range, what is left, [next, MaxInt64), which may be shorter.
func (t *Table) AllocSegment(nowMs int64, name string, count int64) (int64, int64, error) {
	tg := t.tags[name]
	if tg == nil {
		return 0, 0, errs.Wrapf(ErrUnknownTag, "tag %q", name)
	}
	if count < 1 {
		return 0, 0, invalid("count %d is below 1", count)
	}
	if tg.Next == math.MaxInt64 {
		return 0, 0, errs.Wrapf(ErrExhausted, "tag %q is at %d", name, tg.Next)
	}
	start := tg.Next
	tg.Next += min(count, math.MaxInt64-tg.Next)
	tg.Fetches++
	tg.LastMs = nowMs
	return start, tg.Next, nil
}

// NextSequence returns the next n values of a strict sequence, first to
// last; a sequence starts at 1.
func (t *Table) NextSequence(name string, n int64) (int64, int64, error) {
	if name == "" {
		return 0, 0, invalid("empty sequence name")
	}
	if n < 1 {
		return 0, 0, invalid("n %d is below 1", n)
	}
	cur := t.sequences[name]
	if cur > math.MaxInt64-n {
		return 0, 0, errs.Wrapf(ErrExhausted, "sequence %q is at %d", name, cur)
	}
	t.sequences[name] = cur + n
	return cur + 1, cur + n, nil
}

// Pools returns the pools by name, copied with every worker: for the
// snapshot. A request about one pool asks Pool or HasPool.
func (t *Table) Pools() []Pool {
	names := make([]string, 0, len(t.pools))
	for n := range t.pools {
		names = append(names, n)
	}
	slices.Sort(names)
	out := make([]Pool, 0, len(names))
	for _, n := range names {
		out = append(out, t.pools[n].copy())
	}
	return out
}

// Pool returns a copy of one pool.
func (t *Table) Pool(name string) (Pool, bool) {
	p := t.pools[name]
	if p == nil {
		return Pool{}, false
	}
	return p.copy(), true
}

// HasPool reports whether a pool exists, copying nothing.
func (t *Table) HasPool(name string) bool { return t.pools[name] != nil }

func (p *Pool) copy() Pool {
	cp := Pool{Name: p.Name, WorkerBits: p.WorkerBits, Workers: make(map[int64]*Worker, len(p.Workers))}
	for id, w := range p.Workers {
		ww := *w
		cp.Workers[id] = &ww
	}
	return cp
}

// Tags returns the tags by name.
func (t *Table) Tags() []Tag {
	out := make([]Tag, 0, len(t.tags))
	for _, tg := range t.tags {
		out = append(out, *tg)
	}
	slices.SortFunc(out, func(a, b Tag) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// Tag returns one tag.
func (t *Table) Tag(name string) (Tag, bool) {
	tg := t.tags[name]
	if tg == nil {
		return Tag{}, false
	}
	return *tg, true
}

// Sequence returns a sequence's last value.
func (t *Table) Sequence(name string) int64 { return t.sequences[name] }

// Len returns the number of pools, tags and sequences.
func (t *Table) Len() int { return len(t.pools) + len(t.tags) + len(t.sequences) }

// Bump moves every segment tag's next value and every strict sequence n
// past where it stands (capped at the end of the int64 range), for a
// cluster restored from a backup: the old cluster may have handed out
// values after the backup, and the restored one must not hand them out
// again. It returns how many tags and sequences moved.
func (t *Table) Bump(n int64) (tags, sequences int) {
	if n <= 0 {
		return 0, 0
	}
	for _, tg := range t.tags {
		tg.Next += min(n, math.MaxInt64-tg.Next)
		tags++
	}
	for name, v := range t.sequences {
		t.sequences[name] = v + min(n, math.MaxInt64-v)
		sequences++
	}
	return tags, sequences
}

// Counters returns how many segment tags and strict sequences the table
// holds.
func (t *Table) Counters() (tags, sequences int) { return len(t.tags), len(t.sequences) }
