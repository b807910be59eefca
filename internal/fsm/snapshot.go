package fsm

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/concord-dev/concord/internal/fsm/record"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
	"github.com/concord-dev/concord/internal/ids"
	"github.com/concord-dev/concord/internal/kv"
	"github.com/concord-dev/concord/internal/lock"
	"github.com/concord-dev/concord/internal/member"
	"github.com/concord-dev/concord/internal/session"
)

// snapshotFormat is the newest version of the snapshot encoding; this
// build reads formats 1 to snapshotFormat. Format 2 adds the rules version
// to the header: a snapshot whose rules version is above the baseline is
// written in it, and one at the baseline in format 1 (formatFor), so that
// members of a release before rules versions read it and refuse the other.
const snapshotFormat = 2

// section is one capability's part of a snapshot.
type section struct {
	name    string
	capture func() (uint64, func(*record.Writer) error)
	restore func(n uint64, r *record.Reader) error
}

// staging holds freshly decoded state before it replaces the live state.
type staging struct {
	kv       *kv.Store
	sessions *session.Table
	locks    *lock.Table
	ids      *ids.Table
	members  *member.Registry
	dedupe   *dedupe
}

func newStaging() *staging {
	st := &staging{sessions: session.NewTable(), members: member.NewRegistry(), dedupe: newDedupe()}
	st.kv = kv.NewStore(st.sessions)
	st.locks = lock.NewTable(st.sessions)
	st.ids = ids.NewTable(st.sessions)
	return st
}

// sections lists the snapshot sections in their fixed order. Adding a
// capability adds its section here.
func sections(k *kv.Store, s *session.Table, l *lock.Table, i *ids.Table, m *member.Registry, d *dedupe) []section {
	return []section{
		{name: member.SectionName, capture: m.Capture, restore: m.Restore},
		{name: session.SectionName, capture: s.Capture, restore: s.RestoreRecords},
		{name: kv.SectionName, capture: k.Capture, restore: k.Restore},
		{name: lock.SectionName, capture: l.Capture, restore: l.Restore},
		{name: ids.SectionName, capture: i.Capture, restore: i.Restore},
		{name: dedupeSection, capture: d.capture, restore: d.restore},
	}
}

// Capture is a consistent copy of the state, taken in the state machine's
// goroutine (or under its write lock) and written out later.
type Capture struct {
	header   *internalv1.SnapshotHeader
	sections []capturedSection
	metrics  *Metrics
}

type capturedSection struct {
	name  string
	count uint64
	write func(*record.Writer) error
}

func (f *FSM) capture() *Capture { return f.captureFor(false) }

// captureFor takes a capture, for the state hash when hash is set (see
// dedupe.captureWith).
func (f *FSM) captureFor(hash bool) *Capture {
	f.mu.Lock()
	defer f.mu.Unlock()
	format, rules := formatFor(f.rules)
	c := &Capture{
		header: &internalv1.SnapshotHeader{
			Format: format, Index: f.applied.Load(), TimeUnixNano: f.now, LastSweepIndex: f.lastSweep,
			ElapsedNanos: f.elapsed, LastStampTerm: f.stampTerm, LastStampNanos: f.stampNanos, RulesVersion: rules,
			ClusterId: f.clusterID,
		},
		metrics: f.cfg.Metrics,
	}
	for _, s := range sections(f.kv, f.sessions, f.locks, f.ids, f.members, f.dedupe) {
		capture := s.capture
		if hash && s.name == dedupeSection {
			capture = func() (uint64, func(*record.Writer) error) { return f.dedupe.captureWith(false) }
		}
		n, w := capture()
		c.sections = append(c.sections, capturedSection{name: s.name, count: n, write: w})
	}
	return c
}

// Index returns the applied index the capture reflects.
func (c *Capture) Index() uint64 { return c.header.GetIndex() }

// WriteTo writes the capture in the snapshot encoding.
func (c *Capture) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	rw := record.NewWriter(cw)
	if err := rw.Write(c.header); err != nil {
		return cw.n, err
	}
	for _, s := range c.sections {
		if err := rw.Write(&internalv1.SectionHeader{Name: s.name, Count: s.count}); err != nil {
			return cw.n, err
		}
		if err := s.write(rw); err != nil {
			return cw.n, fmt.Errorf("section %s: %w", s.name, err)
		}
	}
	err := rw.Flush()
	return cw.n, err
}

// Persist writes the capture for a Raft snapshot and records its size and
// duration. It implements raftnode.Snapshot.
func (c *Capture) Persist(w io.Writer) (int64, error) {
	start := time.Now()
	n, err := c.WriteTo(w)
	if err == nil && c.metrics != nil {
		c.metrics.snapshotSeconds.Observe(time.Since(start).Seconds())
		c.metrics.snapshotBytes.Set(float64(n))
	}
	return n, err
}

// Hash returns the applied index and the hex SHA-256 of the canonical
// encoding of the state machine at that index. Members that applied the same
// log agree on it.
func (f *FSM) Hash() (uint64, string, error) {
	c := f.captureFor(true)
	h := sha256.New()
	if _, err := c.WriteTo(h); err != nil {
		return 0, "", err
	}
	return c.Index(), hex.EncodeToString(h.Sum(nil)), nil
}

// CaptureState returns a consistent copy of the state to write out, for
// backups.
func (f *FSM) CaptureState() *Capture { return f.capture() }

// decodeSnapshot decodes a snapshot into st. A snapshot whose rules
// version is above maxRules is refused with ErrRulesTooNew.
func decodeSnapshot(r io.Reader, st *staging, maxRules uint32) (*internalv1.SnapshotHeader, error) {
	rr := record.NewReader(r)
	var hdr internalv1.SnapshotHeader
	if err := rr.Read(&hdr); err != nil {
		return nil, fmt.Errorf("header: %w", truncated(err))
	}
	if hdr.GetFormat() < 1 || hdr.GetFormat() > snapshotFormat {
		return nil, fmt.Errorf("%w: format %d, this build reads 1 to %d (a snapshot of a newer concord is restored with that version)", ErrSnapshotFormat, hdr.GetFormat(), snapshotFormat)
	}
	if v := rulesOf(&hdr); v > maxRules {
		return nil, fmt.Errorf("%w: the snapshot of index %d is at rules version %d, and this build applies up to %d", ErrRulesTooNew, hdr.GetIndex(), v, maxRules)
	}
	if id := hdr.GetClusterId(); id != "" && !ValidClusterID(id) {
		return nil, fmt.Errorf("%w: cluster ID %q is not %d hex digits", record.ErrCorrupt, id, clusterIDHexLen)
	}
	want := sections(st.kv, st.sessions, st.locks, st.ids, st.members, st.dedupe)
	for _, s := range want {
		var sh internalv1.SectionHeader
		if err := rr.Read(&sh); err != nil {
			return nil, fmt.Errorf("section %s header: %w", s.name, truncated(err))
		}
		if sh.GetName() != s.name {
			return nil, fmt.Errorf("%w: section %q where %q was expected", record.ErrCorrupt, sh.GetName(), s.name)
		}
		if err := s.restore(sh.GetCount(), rr); err != nil {
			return nil, fmt.Errorf("section %s: %w", s.name, truncated(err))
		}
	}
	// A revision is the index of the entry that made it: none is past the
	// index the snapshot reflects.
	if rev := max(st.kv.MaxRevision(), st.locks.MaxRevision(), uint64(st.sessions.MaxID())); rev > hdr.GetIndex() {
		return nil, fmt.Errorf("%w: revision %d in a snapshot of index %d", record.ErrCorrupt, rev, hdr.GetIndex())
	}
	var extra internalv1.SectionHeader
	if err := rr.Read(&extra); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the last section", record.ErrCorrupt)
	}
	return &hdr, nil
}

// truncated turns the clean end of the record stream, where a header or a
// section's record is due, into ErrCorrupt: the stream was cut short.
func truncated(err error) error {
	if errors.Is(err, io.EOF) && !errors.Is(err, record.ErrCorrupt) {
		return fmt.Errorf("%w: the stream ends early (%v)", record.ErrCorrupt, err)
	}
	return err
}

// VerifySnapshot decodes a snapshot stream without applying it and returns
// its index, for `concord snapshot restore` and backups.
func VerifySnapshot(r io.Reader) (uint64, error) {
	hdr, err := decodeSnapshot(r, newStaging(), MaxRulesVersion)
	if err != nil {
		return 0, err
	}
	return hdr.GetIndex(), nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// MaxIndexBump bounds a restore's index bump: session IDs are indexes and
// signed 64-bit, so the restored index must stay far below 2^63.
const MaxIndexBump = 1 << 60

// ErrIndexBump is a restore's bump that would carry the index past its
// limit: a bump above MaxIndexBump, or any bump of a backup whose index is
// already above it (a backup of a cluster restored that far up). The
// backup itself is valid, and restores at its own index without a bump.
var ErrIndexBump = errors.New("fsm: the index cannot be bumped that far")

// NewClusterOptions say how a backup is moved for a new cluster.
type NewClusterOptions struct {
	// IndexBump moves the index this many entries past the backup's, so
	// that the new cluster's revisions and lock tokens start above every
	// one the old cluster may have handed out after the backup (etcd's
	// --bump-revision): a fence the old cluster's holders wrote stays below
	// the new holders' tokens, and a watch resuming from a revision of that
	// gap gets ErrCompacted instead of the new cluster's different events.
	IndexBump uint64
	// IDBump moves every segment tag and strict sequence this far past the
	// backup's value, for the same reason: values the old cluster handed
	// out after the backup are not handed out again.
	IDBump int64
}

// NewClusterSummary describes a backup moved for a new cluster.
type NewClusterSummary struct {
	// Index is the new cluster's first index: the backup's plus the bump.
	Index uint64
	// Tags and Sequences count the backup's segment tags and strict
	// sequences (each moved by IDBump).
	Tags, Sequences int
}

// ForNewCluster rewrites a backup for a new cluster: the state is kept, the
// old cluster's member registry is dropped (the new members publish
// themselves), and the index, tags and sequences move as opts say.
func ForNewCluster(r io.Reader, w io.Writer, opts NewClusterOptions) (NewClusterSummary, error) {
	var sum NewClusterSummary
	if opts.IndexBump > MaxIndexBump {
		return sum, fmt.Errorf("%w: a bump of %d is above the limit of %d", ErrIndexBump, opts.IndexBump, uint64(MaxIndexBump))
	}
	if opts.IDBump < 0 {
		return sum, fmt.Errorf("fsm: an ID bump of %d is negative", opts.IDBump)
	}
	st := newStaging()
	hdr, err := decodeSnapshot(r, st, MaxRulesVersion)
	if err != nil {
		return sum, err
	}
	if opts.IndexBump > 0 && hdr.GetIndex() > MaxIndexBump {
		return sum, fmt.Errorf("%w: the backup's index %d is already above %d: it cannot be bumped (a bump of 0 keeps it)", ErrIndexBump, hdr.GetIndex(), uint64(MaxIndexBump))
	}
	hdr.Index += opts.IndexBump
	sum.Index = hdr.GetIndex()
	sum.Tags, sum.Sequences = st.ids.Counters()
	st.ids.Bump(opts.IDBump)
	st.members = member.NewRegistry()
	// The new cluster's terms restart: its first leader's term may equal
	// the backup's last stamped term, and the elapsed clock would then
	// count the time between the backup and the restore as time of that
	// term (an hour's gap dropped every remembered request ID at the next
	// sweep, and a retried write applied twice). No term is 0, so the
	// first command of the new cluster starts a new stamp.
	hdr.LastStampTerm, hdr.LastStampNanos = 0, 0
	// The new cluster is another cluster: its first leader names it anew,
	// and the old cluster's members refuse its Raft connections.
	hdr.ClusterId = ""
	c := &Capture{header: hdr}
	for _, s := range sections(st.kv, st.sessions, st.locks, st.ids, st.members, st.dedupe) {
		n, wr := s.capture()
		c.sections = append(c.sections, capturedSection{name: s.name, count: n, write: wr})
	}
	if _, err := c.WriteTo(w); err != nil {
		return sum, err
	}
	return sum, nil
}
