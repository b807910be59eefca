package session

import (
	"math"

	"github.com/google/btree"
)

// MaxNameBytes bounds a session's name (Session/Create refuses a longer
// one).
const MaxNameBytes = 256

// Session is a live session.
type Session struct {
	ID            int64
	Name          string
	TTLMillis     int64
	CreatedUnixMs int64
}

// EndHook is called, in registration order, when a session ends. It returns
// how many keys (or other holds) ended with the session.
type EndHook func(rev uint64, id int64) int64

// Table is the state machine's set of live sessions. It is not safe for
// concurrent use; the state machine serializes access.
type Table struct {
	sessions map[int64]*Session
	// ids orders the sessions' IDs, for List and paged listings.
	ids   *btree.BTreeG[int64]
	hooks []EndHook
	// observer is told of creations and ends so the leader's tracker can
	// follow them without scanning; it must not block.
	observer Observer
}

// Observer follows the table from outside the state machine.
type Observer interface {
	Created(s Session)
	Ended(id int64)
}

// NewTable returns an empty table.
func NewTable() *Table { return &Table{sessions: map[int64]*Session{}, ids: newIDs()} }

func newIDs() *btree.BTreeG[int64] { return btree.NewOrderedG[int64](32) }

// OnEnd registers a hook run when a session ends.
func (t *Table) OnEnd(h EndHook) { t.hooks = append(t.hooks, h) }

// SetObserver sets the observer told of creations and ends.
func (t *Table) SetObserver(o Observer) { t.observer = o }

// Exists reports whether a session is live.
func (t *Table) Exists(id int64) bool { _, ok := t.sessions[id]; return ok }

// Get returns a live session.
func (t *Table) Get(id int64) (Session, bool) {
	s, ok := t.sessions[id]
	if !ok {
		return Session{}, false
	}
	return *s, true
}

// Len returns the number of live sessions.
func (t *Table) Len() int { return len(t.sessions) }

// List returns the live sessions ordered by ID.
func (t *Table) List() []Session {
	out := make([]Session, 0, len(t.sessions))
	t.ids.Ascend(func(id int64) bool {
		out = append(out, *t.sessions[id])
		return true
	})
	return out
}

// Page returns up to limit live sessions whose IDs are above after,
// ordered by ID.
func (t *Table) Page(after int64, limit int) []Session {
	var out []Session
	if after == math.MaxInt64 {
		return nil
	}
	t.ids.AscendGreaterOrEqual(after+1, func(id int64) bool {
		if len(out) >= limit {
			return false
		}
		out = append(out, *t.sessions[id])
		return true
	})
	return out
}

// Create starts a session whose ID is rev.
func (t *Table) Create(rev uint64, ttlMillis int64, name string, nowUnixMs int64) Session {
	s := &Session{ID: int64(rev), Name: name, TTLMillis: ttlMillis, CreatedUnixMs: nowUnixMs}
	t.sessions[s.ID] = s
	t.ids.ReplaceOrInsert(s.ID)
	if t.observer != nil {
		t.observer.Created(*s)
	}
	return *s
}

// End ends a session and runs the hooks; it returns the total the hooks
// reported, or ErrNotFound.
func (t *Table) End(rev uint64, id int64) (int64, error) {
	if _, ok := t.sessions[id]; !ok {
		return 0, ErrNotFound
	}
	delete(t.sessions, id)
	t.ids.Delete(id)
	var n int64
	for _, h := range t.hooks {
		n += h(rev, id)
	}
	if t.observer != nil {
		t.observer.Ended(id)
	}
	return n, nil
}

// MaxID returns the highest live session ID (0 for none): a restore checks
// it against the snapshot's index (an ID is the index that created it).
func (t *Table) MaxID() int64 {
	var id int64
	for sid := range t.sessions {
		id = max(id, sid)
	}
	return id
}

// Restore replaces the table's content; hooks and observer stay.
func (t *Table) Restore(sessions []Session) {
	t.sessions = make(map[int64]*Session, len(sessions))
	t.ids = newIDs()
	for i := range sessions {
		s := sessions[i]
		t.sessions[s.ID] = &s
		t.ids.ReplaceOrInsert(s.ID)
	}
}
