package session

import (
	"fmt"

	"github.com/concord-dev/concord/internal/fsm/record"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
)

// SectionName names the table's snapshot section.
const SectionName = "session"

// Capture copies the table and returns the record count and a writer of the
// copy, in ID order.
func (t *Table) Capture() (uint64, func(*record.Writer) error) {
	list := t.List()
	return uint64(len(list)), func(w *record.Writer) error {
		for _, s := range list {
			rec := &internalv1.SessionRecord{Id: s.ID, Name: s.Name, TtlMs: s.TTLMillis, CreatedUnixMs: s.CreatedUnixMs}
			if err := w.Write(rec); err != nil {
				return err
			}
		}
		return nil
	}
}

// RestoreRecords replaces the table's content with n records read from r.
func (t *Table) RestoreRecords(n uint64, r *record.Reader) error {
	// n comes from the file (operator input, for a restore): a hint, not
	// trusted as an allocation size.
	list := make([]Session, 0, min(n, record.MaxPrealloc))
	seen := make(map[int64]bool, min(n, record.MaxPrealloc))
	for i := uint64(0); i < n; i++ {
		var rec internalv1.SessionRecord
		if err := r.Read(&rec); err != nil {
			return fmt.Errorf("session record %d: %w", i, err)
		}
		// A session's ID is the index that created it: never 0 or below
		// (a session 0 vouched for lock holders and keys of "no
		// session"), never twice.
		if rec.GetId() <= 0 || seen[rec.GetId()] {
			return fmt.Errorf("%w: session ID %d is not positive or twice", record.ErrCorrupt, rec.GetId())
		}
		seen[rec.GetId()] = true
		// CreateSession refuses a TTL not positive (the session would
		// expire at once, or never be swept) and the API a name over
		// MaxNameBytes.
		if rec.GetTtlMs() <= 0 || len(rec.GetName()) > MaxNameBytes {
			return fmt.Errorf("%w: session %d: TTL %d ms not positive or a name of %d bytes (the limit is %d)",
				record.ErrCorrupt, rec.GetId(), rec.GetTtlMs(), len(rec.GetName()), MaxNameBytes)
		}
		list = append(list, Session{ID: rec.GetId(), Name: rec.GetName(), TTLMillis: rec.GetTtlMs(), CreatedUnixMs: rec.GetCreatedUnixMs()})
	}
	t.Restore(list)
	return nil
}
