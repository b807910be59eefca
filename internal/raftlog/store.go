package raftlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/concord-dev/concord/internal/durable"
)

const (
	// DefaultSegmentSize is the size past which appends go to a new segment.
	DefaultSegmentSize = 64 << 20
	// DefaultPreallocate is how far past the end of its records a segment
	// is kept filled with zeros.
	DefaultPreallocate = 1 << 20
)

// Options configures a Store.
type Options struct {
	// SegmentSize is the size past which a new segment is started;
	// default DefaultSegmentSize.
	SegmentSize int64
	// Preallocate is how many bytes of zeros an append that reaches the end
	// of the segment file writes after its records; default
	// DefaultPreallocate, negative for none. An append that stays inside
	// the file changes no metadata, so its fdatasync only flushes data: on
	// ext4 under load that is about half the time of an append that grows
	// the file, which waits for a journal commit.
	Preallocate int64
	// Logger receives recovery notices; default discards.
	Logger *slog.Logger
}

// Store is a segmented, append-only Raft log: one write and one fdatasync per
// StoreLogs call, reads by offset, whole segments dropped on compaction. It
// implements raft.LogStore and raft.MonotonicLogStore. Its methods are safe
// for concurrent use; appends and deletions are serialised.
type Store struct {
	dir  string
	opts Options

	wmu   sync.Mutex // serialises StoreLogs, DeleteRange and Close
	buf   []byte     // encoding buffer, under wmu
	zeros []byte     // a block of zeros for preallocation and erasure
	// metaFirst is the first index recorded in the meta file: entries
	// below it are deleted even if a segment still holds them. Under wmu.
	metaFirst uint64

	mu     sync.RWMutex // guards what follows; readers take it shared
	segs   []*segment
	first  uint64 // 0 when empty
	last   uint64 // 0 when empty
	closed bool
	// failed is set when a deletion or a sync failed part way: what is on
	// disk is no longer known, so every later call fails with it until
	// the store is reopened, which reads the disk again.
	failed error
}

type segment struct {
	base    uint64
	path    string
	f       *os.File
	offsets []int64 // offsets[i] is where the record of index base+i starts
	size    int64   // end of the last whole record
	// alloc is the length of the file; from size to alloc it holds zeros.
	alloc int64
}

func (s *segment) lastIndex() uint64 { return s.base + uint64(len(s.offsets)) - 1 }

var (
	_ raft.LogStore          = (*Store)(nil)
	_ raft.MonotonicLogStore = (*Store)(nil)
)

// ErrClosed is returned by a closed Store.
var ErrClosed = errors.New("raftlog: store closed")

// ErrFailed is returned by a store on which a sync, or a deletion, failed
// part way: it refuses every later append and deletion, and reopening it
// (restarting the member) recovers from what is on disk. Reads go on: the
// store's memory still describes the entries it holds, and hashicorp/raft
// panics on a failed read of a committed entry, which would preempt the
// member's orderly stop.
var ErrFailed = errors.New("raftlog: store failed")

// readable is nil when the store can serve a read. Under mu (either mode).
func (s *Store) readable() error {
	if s.closed {
		return ErrClosed
	}
	return nil
}

// usable is nil when the store can take an append or a deletion. Under mu
// (either mode).
func (s *Store) usable() error {
	if s.closed {
		return ErrClosed
	}
	return s.failed
}

// fail marks the store failed with err and returns the error every call
// returns from now on. Under mu, exclusively.
func (s *Store) fail(err error) error {
	if s.failed == nil {
		s.failed = fmt.Errorf("%w (restart the member to recover from the disk): %w", ErrFailed, err)
	}
	return s.failed
}

const metaFile = "first"

func segmentName(base uint64) string { return fmt.Sprintf("%020d.seg", base) }

// Open opens or creates the log in dir. A torn tail of the newest segment
// (a write cut short by a crash, never acknowledged) is cut off; damage
// anywhere else is an error.
func Open(dir string, opts Options) (*Store, error) {
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = DefaultSegmentSize
	}
	if opts.Preallocate == 0 {
		opts.Preallocate = DefaultPreallocate
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	s := &Store{dir: dir, opts: opts, zeros: make([]byte, min(max(opts.Preallocate, 64<<10), 1<<20))}
	var err error
	if s.metaFirst, err = readMeta(filepath.Join(dir, metaFile)); err != nil {
		return nil, err
	}
	if err := s.load(); err != nil {
		s.closeFiles()
		return nil, err
	}
	return s, nil
}

func (s *Store) load() error {
	names, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	var bases []uint64
	for _, e := range names {
		name := e.Name()
		if !strings.HasSuffix(name, ".seg") {
			continue
		}
		base, err := strconv.ParseUint(strings.TrimSuffix(name, ".seg"), 10, 64)
		if err != nil || segmentName(base) != name {
			return fmt.Errorf("raftlog: unexpected file %s in %s", name, s.dir)
		}
		bases = append(bases, base)
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	removed := false
	for i, base := range bases {
		newest := i == len(bases)-1
		seg, err := s.openSegment(base, newest)
		if err != nil {
			return err
		}
		if len(seg.offsets) == 0 && !newest && bases[i+1] > s.metaFirst {
			// Only the newest segment can be empty (a crash right after a
			// rotation): an older one that reads as empty lost records
			// the log still needs.
			seg.f.Close()
			return fmt.Errorf("%w: %s holds no record, but segment %s follows it", ErrCorrupt, seg.path, segmentName(bases[i+1]))
		}
		if len(seg.offsets) == 0 || seg.lastIndex() < s.metaFirst {
			// Empty (a crash right after a rotation) or wholly deleted
			// (a crash in the middle of a compaction).
			seg.f.Close()
			if err := os.Remove(seg.path); err != nil {
				return fmt.Errorf("raftlog: %w", err)
			}
			removed = true
			continue
		}
		if n := len(s.segs); n > 0 && s.segs[n-1].lastIndex()+1 != seg.base {
			seg.f.Close()
			return fmt.Errorf("%w: %s starts at %d but the segment before it ends at %d", ErrCorrupt, seg.path, seg.base, s.segs[n-1].lastIndex())
		}
		s.segs = append(s.segs, seg)
	}
	if removed {
		if err := syncDir(s.dir); err != nil {
			return err
		}
	}
	if len(s.segs) > 0 {
		s.first = max(s.segs[0].base, s.metaFirst)
		s.last = s.segs[len(s.segs)-1].lastIndex()
	}
	return nil
}

// openSegment opens and scans one segment. Records end at the first zero
// length (the preallocated tail). In the newest segment a record that fails
// its checks ends the log too, and it and whatever follows it are erased.
func (s *Store) openSegment(base uint64, newest bool) (*segment, error) {
	path := filepath.Join(s.dir, segmentName(base))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	seg := &segment{base: base, path: path, f: f}
	data, err := io.ReadAll(f)
	seg.alloc = int64(len(data))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("raftlog: read %s: %w", path, err)
	}
	fail := func(err error) (*segment, error) {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) < headerSize || (newest && allZero(data[:headerSize])) {
		if newest {
			// Created, never written: treated as empty.
			return seg, nil
		}
		return fail(fmt.Errorf("%w: short segment header", ErrCorrupt))
	}
	hb, err := decodeHeader(data)
	if err != nil {
		return fail(err)
	}
	if hb != base {
		return fail(fmt.Errorf("%w: header says base %d", ErrCorrupt, hb))
	}
	off := int64(headerSize)
	var l raft.Log
	for {
		rest := data[off:]
		if len(rest) == 0 {
			break
		}
		err := func() error {
			n, crc, err := recordLen(rest)
			if err != nil {
				return err
			}
			if n == 0 {
				return errEnd
			}
			if len(rest) < recordHeader+n {
				return fmt.Errorf("%w: record cut short", ErrCorrupt)
			}
			if err := decodePayload(rest[recordHeader:recordHeader+n], crc, &l); err != nil {
				return err
			}
			if want := base + uint64(len(seg.offsets)); l.Index != want {
				return fmt.Errorf("%w: record holds index %d, expected %d", ErrCorrupt, l.Index, want)
			}
			seg.offsets = append(seg.offsets, off)
			off += int64(recordHeader + n)
			return nil
		}()
		if err == nil {
			continue
		}
		if allZero(rest) {
			break // the end of the records, at most a preallocated tail
		}
		if !newest {
			return fail(err)
		}
		if rec, whole := wholeRecord(rest); whole && !torn(off, rec) {
			// Every sector of the record was written, yet it fails its
			// checks: damage, not a write cut short, and the entries
			// after it may have been acknowledged. Cutting here would
			// lose them silently.
			return fail(fmt.Errorf("%w: the record at offset %d is damaged but was written whole (none of its sectors is blank), so it is not a torn write "+
				"and acknowledged entries may follow it: %v", ErrCorrupt, off, err))
		}
		s.opts.Logger.Warn("raft log: cutting off a torn tail", "segment", path, "offset", off, "bytes", len(rest), "reason", err)
		// Erase rather than truncate: the file keeps its preallocation,
		// and no whole record of the torn write can be read back after a
		// later, shorter append ends right where it starts.
		dirty := int64(len(rest))
		for dirty > 0 && rest[dirty-1] == 0 {
			dirty--
		}
		if err := s.erase(f, off, off+dirty); err != nil {
			return fail(err)
		}
		if err := fdatasync(f); err != nil {
			return fail(err)
		}
		break
	}
	seg.size = off
	return seg, nil
}

// erase overwrites [from, to) of f with zeros.
func (s *Store) erase(f *os.File, from, to int64) error {
	for from < to {
		n := min(to-from, int64(len(s.zeros)))
		if _, err := f.WriteAt(s.zeros[:n], from); err != nil {
			return fmt.Errorf("raftlog: erase %s: %w", f.Name(), err)
		}
		from += n
	}
	return nil
}

var errEnd = errors.New("end of records")

// sectorSize is the unit a disk writes atomically (at least): after a
// power loss, each sector of an unsynced write holds either the new bytes
// or the old ones, which past the last record are zeros (preallocation or
// erasure).
const sectorSize = 512

// wholeRecord returns the record at the start of b if its header is
// readable and b holds all of it.
func wholeRecord(b []byte) ([]byte, bool) {
	n, _, err := recordLen(b)
	if err != nil || n == 0 || len(b) < recordHeader+n {
		return nil, false
	}
	return b[:recordHeader+n], true
}

// torn reports whether rec, the record at offset off of its segment, can be
// a write cut short by a crash: some sector's share of it is all zeros. A
// record whose every sector was written, and which still fails its checks,
// was damaged after it was written. (etcd's WAL draws the same line.)
func torn(off int64, rec []byte) bool {
	for start := int64(0); start < int64(len(rec)); {
		end := min((off+start)/sectorSize*sectorSize+sectorSize-off, int64(len(rec)))
		if allZero(rec[start:end]) {
			return true
		}
		start = end
	}
	return false
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// FirstIndex returns the first index in the log, 0 if it is empty.
func (s *Store) FirstIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.readable(); err != nil {
		return 0, err
	}
	return s.first, nil
}

// LastIndex returns the last index in the log, 0 if it is empty.
func (s *Store) LastIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.readable(); err != nil {
		return 0, err
	}
	return s.last, nil
}

// IsMonotonic tells hashicorp/raft that appends must be contiguous, so it
// clears the log after installing a snapshot instead of leaving a gap.
func (s *Store) IsMonotonic() bool { return true }

// GetLog reads the entry at index.
func (s *Store) GetLog(index uint64, out *raft.Log) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.readable(); err != nil {
		return err
	}
	if s.last == 0 || index < s.first || index > s.last {
		return raft.ErrLogNotFound
	}
	i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].base > index }) - 1
	seg := s.segs[i]
	k := index - seg.base
	start := seg.offsets[k]
	end := seg.size
	if k+1 < uint64(len(seg.offsets)) {
		end = seg.offsets[k+1]
	}
	buf := make([]byte, end-start)
	if _, err := seg.f.ReadAt(buf, start); err != nil {
		return fmt.Errorf("raftlog: read %s at %d: %w", seg.path, start, err)
	}
	n, crc, err := recordLen(buf)
	if err != nil || recordHeader+n != len(buf) {
		return fmt.Errorf("%s at %d: %w", seg.path, start, errors.Join(ErrCorrupt, err))
	}
	if err := decodePayload(buf[recordHeader:], crc, out); err != nil {
		return fmt.Errorf("%s at %d: %w", seg.path, start, err)
	}
	if out.Index != index {
		return fmt.Errorf("%w: %s at %d holds index %d, not %d", ErrCorrupt, seg.path, start, out.Index, index)
	}
	return nil
}

// StoreLog appends one entry.
func (s *Store) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs appends entries that follow the last one (any index when the
// log is empty) with one write and one fdatasync.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.RLock()
	unusable, last, nsegs := s.usable(), s.last, len(s.segs)
	var active *segment
	if nsegs > 0 {
		active = s.segs[nsegs-1]
	}
	s.mu.RUnlock()
	if unusable != nil {
		return unusable
	}
	next := logs[0].Index
	if next == 0 {
		return fmt.Errorf("raftlog: append of index 0")
	}
	if last != 0 && next <= last {
		return fmt.Errorf("raftlog: append of index %d overlaps the log, which ends at %d", next, last)
	}
	if last != 0 && next > last+1 {
		// hashicorp/raft appends past the end only when a snapshot covers
		// the gap (its log-matching check passed on the snapshot's index),
		// and so every entry held: the log restarts after the snapshot, as
		// it does when raft clears a monotonic log after an install.
		s.opts.Logger.Info("raft log: append after a gap covered by a snapshot; the log restarts", "last", last, "next", next)
		if err := s.deleteAll(last); err != nil {
			return err
		}
		active, last = nil, 0
	}
	buf := s.buf[:0]
	offsets := make([]int64, len(logs))
	for i, l := range logs {
		if l.Index != next+uint64(i) {
			return fmt.Errorf("raftlog: append batch is not contiguous at index %d", l.Index)
		}
		offsets[i] = int64(len(buf))
		var err error
		if buf, err = appendRecord(buf, l); err != nil {
			return err
		}
	}
	if cap(buf) <= 4<<20 {
		s.buf = buf
	}
	if last == 0 && next < s.metaFirst {
		// The log was cleared (after a snapshot install) and now restarts
		// below the recorded first index: lower it first, or a reopen
		// would hide these entries.
		if err := s.writeMeta(next); err != nil {
			return err
		}
	}
	seg := active
	fresh := false
	if seg == nil || (seg.size+int64(len(buf)) > s.opts.SegmentSize && len(seg.offsets) > 0) {
		var err error
		if seg, err = s.createSegment(next); err != nil {
			return err
		}
		fresh = true
		if active != nil {
			s.seal(active)
		}
	}
	if _, err := seg.f.WriteAt(buf, seg.size); err != nil {
		return s.undoAppend(seg, fresh, fmt.Errorf("raftlog: write %s: %w", seg.path, err))
	}
	alloc := seg.alloc
	if end := seg.size + int64(len(buf)); end > alloc {
		alloc = end
		if p := s.opts.Preallocate; p > 0 {
			// This append grows the file and its fdatasync writes the new
			// size anyway: grow it further with zeros, once, so that the
			// appends after it do not. Never past the segment size, where
			// appends move to a new segment.
			to := min(end+p, s.opts.SegmentSize)
			if to > end {
				if err := s.erase(seg.f, end, to); err != nil {
					return s.undoAppend(seg, fresh, err)
				}
				alloc = to
			}
		}
	}
	if err := fdatasync(seg.f); err != nil {
		// After a failed fdatasync the kernel may have dropped the pages
		// it could not write and report the next sync as a success:
		// whether any of this append is on disk is unknown. Cut it off
		// and refuse further calls (fail-stop, as etcd and PostgreSQL
		// do); a reopen reads what the disk holds.
		err = s.undoAppend(seg, fresh, fmt.Errorf("raftlog: sync %s: %w", seg.path, err))
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.fail(err)
	}
	s.mu.Lock()
	for i := range offsets {
		offsets[i] += seg.size
	}
	seg.offsets = append(seg.offsets, offsets...)
	seg.size += int64(len(buf))
	seg.alloc = alloc
	if fresh {
		s.segs = append(s.segs, seg)
	}
	if s.last == 0 {
		s.first = next
	}
	s.last = logs[len(logs)-1].Index
	s.mu.Unlock()
	return nil
}

// seal cuts the preallocated zeros off a segment the log has moved past, so
// that a sealed segment ends with its last record (as it did before
// preallocation: older builds read such logs too). It is tidiness, not
// safety: a crash first leaves zeros, which Open reads as the end, and a
// failure is only logged.
func (s *Store) seal(seg *segment) {
	if seg.alloc == seg.size {
		return
	}
	err := seg.f.Truncate(seg.size)
	if err == nil {
		err = seg.f.Sync()
	}
	if err != nil {
		s.opts.Logger.Warn("raft log: could not cut the preallocated tail of a sealed segment", "segment", seg.path, "err", err)
		return
	}
	seg.alloc = seg.size
}

// undoAppend cuts a failed append off (best effort) and returns err.
func (s *Store) undoAppend(seg *segment, fresh bool, err error) error {
	if fresh {
		seg.f.Close()
		os.Remove(seg.path)
		return err
	}
	if terr := seg.f.Truncate(seg.size); terr != nil {
		return errors.Join(err, terr)
	}
	seg.alloc = seg.size
	return err
}

func (s *Store) createSegment(base uint64) (*segment, error) {
	path := filepath.Join(s.dir, segmentName(base))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	if _, err := f.Write(encodeHeader(base)); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return &segment{base: base, path: path, f: f, size: headerSize, alloc: headerSize}, nil
}

// DeleteRange deletes the entries from min to max inclusive. hashicorp/raft
// deletes either a prefix (compaction), a suffix (a conflict with the
// leader) or everything (after installing a snapshot); a range in the
// middle is refused.
func (s *Store) DeleteRange(min, max uint64) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.RLock()
	unusable, first, last := s.usable(), s.first, s.last
	s.mu.RUnlock()
	switch {
	case unusable != nil:
		return unusable
	case min > max || last == 0 || max < first || min > last:
		return nil
	case min <= first && max >= last:
		return s.deleteAll(max)
	case min <= first:
		return s.deletePrefix(max)
	case max >= last:
		return s.deleteSuffix(min)
	default:
		return fmt.Errorf("raftlog: cannot delete %d-%d from the middle of %d-%d", min, max, first, last)
	}
}

// deletePrefix drops entries up to max: the meta file first (so a crash
// cannot bring them back), then the segments that hold nothing else.
func (s *Store) deletePrefix(max uint64) error {
	if err := s.writeMeta(max + 1); err != nil {
		return err
	}
	s.mu.Lock()
	var drop []*segment
	for len(s.segs) > 1 && s.segs[0].lastIndex() <= max {
		drop = append(drop, s.segs[0])
		s.segs = s.segs[1:]
	}
	s.first = max + 1
	s.mu.Unlock()
	return s.removeSegments(drop)
}

// deleteSuffix drops entries from min on: the newer segments first, newest
// first, made durable by a sync of the directory, then the records from min
// on in the segment holding min-1, erased and synced. A crash at any point
// leaves a shorter log, never a hole: were the records erased before the
// removals were durable, a crash could bring back a removed segment after
// a segment now shorter than its base (and the log would not open). A
// failure part way fails the store, whose memory then no longer matches the
// disk.
func (s *Store) deleteSuffix(min uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	removed := false
	for len(s.segs) > 0 {
		seg := s.segs[len(s.segs)-1]
		if seg.base < min {
			break
		}
		s.segs = s.segs[:len(s.segs)-1]
		s.last = seg.base - 1
		seg.f.Close()
		if err := os.Remove(seg.path); err != nil {
			return s.fail(fmt.Errorf("raftlog: %w", err))
		}
		removed = true
	}
	if removed {
		if err := syncDir(s.dir); err != nil {
			return s.fail(err)
		}
	}
	// min > first, so a segment holding min-1 remains.
	seg := s.segs[len(s.segs)-1]
	k := min - seg.base
	s.last = min - 1
	if k < uint64(len(seg.offsets)) {
		// Erase the records rather than truncate the file, which keeps its
		// preallocation. A crash part way leaves a shorter log, never a
		// hole: reading stops at the first erased record. The memory
		// forgets them first, so that a failure part way leaves no read
		// of a half-erased record.
		cut, size := seg.offsets[k], seg.size
		seg.offsets = seg.offsets[:k]
		seg.size = cut
		if err := s.erase(seg.f, cut, size); err != nil {
			return s.fail(err)
		}
		if err := fdatasync(seg.f); err != nil {
			return s.fail(fmt.Errorf("raftlog: sync %s: %w", seg.path, err))
		}
	}
	return nil
}

// deleteAll empties the log; the next append may start at any index.
func (s *Store) deleteAll(max uint64) error {
	if err := s.writeMeta(max + 1); err != nil {
		return err
	}
	s.mu.Lock()
	drop := s.segs
	s.segs = nil
	s.first, s.last = 0, 0
	s.mu.Unlock()
	return s.removeSegments(drop)
}

func (s *Store) removeSegments(drop []*segment) error {
	if len(drop) == 0 {
		return nil
	}
	for _, seg := range drop {
		seg.f.Close()
		if err := os.Remove(seg.path); err != nil {
			return fmt.Errorf("raftlog: %w", err)
		}
	}
	return syncDir(s.dir)
}

// writeMeta records the first index atomically (write, sync, rename, sync
// the directory).
func (s *Store) writeMeta(first uint64) error {
	b := binary.BigEndian.AppendUint64(nil, first)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	tmp := filepath.Join(s.dir, metaFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("raftlog: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("raftlog: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, metaFile)); err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	s.metaFirst = first
	return nil
}

func readMeta(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("raftlog: %w", err)
	}
	if len(b) != 12 || crc32.Checksum(b[:8], castagnoli) != binary.BigEndian.Uint32(b[8:]) {
		return 0, fmt.Errorf("%w: %s", ErrCorrupt, path)
	}
	return binary.BigEndian.Uint64(b), nil
}

// Close closes the segment files.
func (s *Store) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.closeFiles()
}

func (s *Store) closeFiles() error {
	var errs []error
	for _, seg := range s.segs {
		errs = append(errs, seg.f.Close())
	}
	s.segs = nil
	return errors.Join(errs...)
}

// syncDir makes the creations, renames and removals of files in dir
// durable. A variable so that tests can see when it runs.
var syncDir = func(dir string) error {
	if err := durable.SyncDir(dir); err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	return nil
}
