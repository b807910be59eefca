package ids

import (
	"fmt"
	"slices"

	"github.com/concord-dev/concord/internal/fsm/record"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
)

// SectionName names the table's snapshot section.
const SectionName = "ids"

// Capture copies the table for a snapshot: a header, then pools, tags and
// sequences, each by name.
func (t *Table) Capture() (uint64, func(*record.Writer) error) {
	var recs []*internalv1.IDPoolRecord
	for _, p := range t.Pools() {
		rec := &internalv1.IDPoolRecord{Name: p.Name, WorkerBits: int32(p.WorkerBits)}
		ids := make([]int64, 0, len(p.Workers))
		for id := range p.Workers {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			w := p.Workers[id]
			rec.Workers = append(rec.Workers, &internalv1.IDWorkerRecord{Id: w.ID, Session: w.Session, Owner: w.Owner,
				HighWaterMs: w.HighWater, LeasedMs: w.LeasedMs, FreedMs: w.FreedMs})
		}
		recs = append(recs, rec)
	}
	var tags []*internalv1.IDTagRecord
	for _, tg := range t.Tags() {
		tags = append(tags, &internalv1.IDTagRecord{Name: tg.Name, Start: tg.Start, Step: tg.Step, Next: tg.Next,
			Fetches: tg.Fetches, CreatedMs: tg.CreatedMs, LastMs: tg.LastMs})
	}
	names := make([]string, 0, len(t.sequences))
	for n := range t.sequences {
		names = append(names, n)
	}
	slices.Sort(names)
	seqs := make([]*internalv1.IDSequenceRecord, 0, len(names))
	for _, n := range names {
		seqs = append(seqs, &internalv1.IDSequenceRecord{Name: n, Value: t.sequences[n]})
	}
	hdr := &internalv1.IDsSectionHeader{Pools: uint64(len(recs)), Tags: uint64(len(tags)), Sequences: uint64(len(seqs))}
	return 1 + hdr.Pools + hdr.Tags + hdr.Sequences, func(w *record.Writer) error {
		if err := w.Write(hdr); err != nil {
			return err
		}
		for _, r := range recs {
			if err := w.Write(r); err != nil {
				return err
			}
		}
		for _, r := range tags {
			if err := w.Write(r); err != nil {
				return err
			}
		}
		for _, r := range seqs {
			if err := w.Write(r); err != nil {
				return err
			}
		}
		return nil
	}
}

// Restore replaces the table with n records read from r.
func (t *Table) Restore(n uint64, r *record.Reader) error {
	fresh := NewTable(t.sessions)
	if n == 0 {
		t.Adopt(fresh)
		return nil
	}
	var hdr internalv1.IDsSectionHeader
	if err := r.Read(&hdr); err != nil {
		return fmt.Errorf("ids header: %w", err)
	}
	if 1+hdr.GetPools()+hdr.GetTags()+hdr.GetSequences() != n {
		return fmt.Errorf("%w: ids section counts do not add up", record.ErrCorrupt)
	}
	for i := uint64(0); i < hdr.GetPools(); i++ {
		var rec internalv1.IDPoolRecord
		if err := r.Read(&rec); err != nil {
			return fmt.Errorf("ids pool %d: %w", i, err)
		}
		p := &Pool{Name: rec.GetName(), WorkerBits: int(rec.GetWorkerBits()), Workers: map[int64]*Worker{}}
		// What LeaseWorker could have built: a pool once, of 1 to
		// MaxWorkerBits bits, its worker IDs within them, each once.
		if p.WorkerBits < 1 || p.WorkerBits > MaxWorkerBits || fresh.pools[p.Name] != nil {
			return fmt.Errorf("ids pool %d: %w: pool %q of %d worker bits, or twice", i, record.ErrCorrupt, p.Name, p.WorkerBits)
		}
		for _, w := range rec.GetWorkers() {
			if w.GetId() < 0 || w.GetId() >= int64(1)<<p.WorkerBits || p.Workers[w.GetId()] != nil {
				return fmt.Errorf("ids pool %d: %w: worker %d of pool %q (%d bits), or twice", i, record.ErrCorrupt, w.GetId(), p.Name, p.WorkerBits)
			}
			p.Workers[w.GetId()] = &Worker{ID: w.GetId(), Session: w.GetSession(), Owner: w.GetOwner(),
				HighWater: w.GetHighWaterMs(), LeasedMs: w.GetLeasedMs(), FreedMs: w.GetFreedMs()}
			if w.GetSession() != 0 && !t.sessions.Exists(w.GetSession()) {
				// Nothing would ever end the session, and free the ID.
				return fmt.Errorf("ids pool %d: %w: worker %d of session %d, which the snapshot does not hold", i, record.ErrCorrupt, w.GetId(), w.GetSession())
			}
			if w.GetSession() != 0 {
				fresh.involve(w.GetSession(), workerKey(p.Name, w.GetId()))
			}
		}
		fresh.pools[p.Name] = p
	}
	for i := uint64(0); i < hdr.GetTags(); i++ {
		var rec internalv1.IDTagRecord
		if err := r.Read(&rec); err != nil {
			return fmt.Errorf("ids tag %d: %w", i, err)
		}
		if rec.GetStep() < 1 || fresh.tags[rec.GetName()] != nil {
			return fmt.Errorf("ids tag %d: %w: tag %q of step %d, or twice", i, record.ErrCorrupt, rec.GetName(), rec.GetStep())
		}
		fresh.tags[rec.GetName()] = &Tag{Name: rec.GetName(), Start: rec.GetStart(), Step: rec.GetStep(), Next: rec.GetNext(),
			Fetches: rec.GetFetches(), CreatedMs: rec.GetCreatedMs(), LastMs: rec.GetLastMs()}
	}
	for i := uint64(0); i < hdr.GetSequences(); i++ {
		var rec internalv1.IDSequenceRecord
		if err := r.Read(&rec); err != nil {
			return fmt.Errorf("ids sequence %d: %w", i, err)
		}
		fresh.sequences[rec.GetName()] = rec.GetValue()
	}
	t.Adopt(fresh)
	return nil
}

// Adopt takes over other's content, keeping t's wiring.
func (t *Table) Adopt(other *Table) {
	t.pools, t.tags, t.sequences, t.bySession = other.pools, other.tags, other.sequences, other.bySession
}
