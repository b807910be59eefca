package kv

import (
	"fmt"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/fsm/record"
)

// SectionName names the store's snapshot section.
const SectionName = "kv"

// Capture takes a consistent copy of the store in O(1) (a lazy clone of the
// tree) and returns the record count and a function that writes the copy. The
// function may run while later writes go on.
func (s *Store) Capture() (uint64, func(*record.Writer) error) {
	tree := s.tree.Clone()
	return uint64(tree.Len()), func(w *record.Writer) error {
		var err error
		tree.Ascend(func(it *Item) bool {
			err = w.Write(it.Proto(false))
			return err == nil
		})
		return err
	}
}

// Restore replaces the store's content with n records read from r.
func (s *Store) Restore(n uint64, r *record.Reader) error {
	tree := newIndex()
	fresh := &Store{tree: tree, bySession: map[int64]map[string]struct{}{}}
	var last []byte
	for i := uint64(0); i < n; i++ {
		var kv concordv1.KeyValue
		if err := r.Read(&kv); err != nil {
			return fmt.Errorf("kv record %d: %w", i, err)
		}
		it := ItemFromProto(&kv)
		if len(it.Key) == 0 || (i > 0 && compareBytes(last, it.Key) >= 0) {
			return fmt.Errorf("kv record %d: %w: keys out of order", i, record.ErrCorrupt)
		}
		if it.Session != 0 && s.sessions != nil && !s.sessions.Exists(it.Session) {
			// Nothing would ever end the session, and delete the key.
			return fmt.Errorf("kv record %d: %w: key of session %d, which the snapshot does not hold", i, record.ErrCorrupt, it.Session)
		}
		last = it.Key
		tree.ReplaceOrInsert(it)
		fresh.commit([]Event{{Type: EventPut, Item: it}})
	}
	s.tree, s.bytes, s.bySession = fresh.tree, fresh.bytes, fresh.bySession
	return nil
}

// MaxRevision returns the highest revision a key of the store was created
// or modified at: a restore checks it against the snapshot's index.
func (s *Store) MaxRevision() uint64 {
	var rev uint64
	s.tree.Ascend(func(it *Item) bool {
		rev = max(rev, it.CreateRev, it.ModRev)
		return true
	})
	return rev
}

// Reset empties the store.
func (s *Store) Reset() {
	s.tree = newIndex()
	s.bytes = 0
	s.bySession = map[int64]map[string]struct{}{}
}

// Adopt takes over the content of other (typically just restored), keeping
// s's wiring to sessions and locks.
func (s *Store) Adopt(other *Store) {
	s.tree, s.bytes, s.bySession = other.tree, other.bytes, other.bySession
}
