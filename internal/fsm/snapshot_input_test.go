package fsm

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/fsm/record"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
	"github.com/concord-dev/concord/internal/raftnode"
)

// A backup restored into a new cluster (concord snapshot restore): the new
// cluster's first leader may have the term the old cluster stamped last (2:
// raft seeds term 1). The elapsed clock used to count the whole time between
// the backup and the restore as time of that term, and the remembered
// request IDs the doc promises to keep were swept at the next sweep: a
// retried write applied twice.
func TestRestoredBackupKeepsRequestIDs(t *testing.T) {
	for _, newTerm := range []uint64{3, 2} {
		t.Run("newTerm="+string(rune('0'+newTerm)), func(t *testing.T) {
			old := New(Config{})
			t0 := int64(1_700_000_000e9)
			add := &internalv1.Command{TimeUnixNano: t0, Meta: &concordv1.WriteMeta{ClientId: "c", RequestId: 1},
				Op: &internalv1.Command_Add{Add: &concordv1.AddRequest{Key: []byte("n"), Delta: 1}}}
			first := old.ApplyBatch([]raftnode.Entry{{Index: 10, Term: 2, Type: raftnode.EntryCommand, Data: encode(t, add)}})[0].(*internalv1.Result)
			var fresh bytes.Buffer
			sum, err := ForNewCluster(bytes.NewReader(snapshotBytes(t, old)), &fresh, NewClusterOptions{})
			idx := sum.Index
			require.NoError(t, err)

			nc := New(Config{})
			require.NoError(t, nc.Restore(&fresh))
			// The new cluster starts an hour later; its leader's first
			// commands, then an index crossing a sweep.
			t1 := t0 + int64(time.Hour)
			noop := &internalv1.Command{TimeUnixNano: t1, Op: &internalv1.Command_Noop{Noop: &internalv1.Noop{}}}
			nc.ApplyBatch([]raftnode.Entry{{Index: idx + 1, Term: newTerm, Type: raftnode.EntryCommand, Data: encode(t, noop)}})
			noop.TimeUnixNano = t1 + 1e9
			nc.ApplyBatch([]raftnode.Entry{{Index: sweepEvery, Term: newTerm, Type: raftnode.EntryCommand, Data: encode(t, noop)}})
			// The client retries its write.
			add.TimeUnixNano = t1 + 2e9
			again := nc.ApplyBatch([]raftnode.Entry{{Index: sweepEvery + 1, Term: newTerm, Type: raftnode.EntryCommand, Data: encode(t, add)}})[0].(*internalv1.Result)
			t.Logf("elapsed after restore: %v", time.Duration(nc.elapsed))
			require.True(t, proto.Equal(first, again), "retried write applied twice: first %v, retry %v", first, again)
		})
	}
}

// A snapshot of another format is told apart from a damaged one: it was
// refused as a "corrupt stream", which sends an operator looking for a disk
// fault rather than for the concord version that wrote it.
func TestUnknownSnapshotFormatIsNotCorruption(t *testing.T) {
	var buf bytes.Buffer
	w := record.NewWriter(&buf)
	require.NoError(t, w.Write(&internalv1.SnapshotHeader{Format: snapshotFormat + 1, Index: 1}))
	require.NoError(t, w.Flush())
	_, err := VerifySnapshot(bytes.NewReader(buf.Bytes()))
	require.ErrorIs(t, err, ErrSnapshotFormat)
	require.NotErrorIs(t, err, record.ErrCorrupt)
	require.NotContains(t, err.Error(), "corrupt")
}

// A snapshot file is operator input (`concord snapshot restore FILE`). A
// section header's count is trusted as a capacity.
func TestHugeSectionCountIsRefusedWithoutPanic(t *testing.T) {
	for _, sec := range []string{"member", "session", "dedupe"} {
		t.Run(sec, func(t *testing.T) {
			var buf bytes.Buffer
			w := record.NewWriter(&buf)
			require.NoError(t, w.Write(&internalv1.SnapshotHeader{Format: snapshotFormat, Index: 1}))
			for _, name := range []string{"member", "session", "kv", "lock", "ids", "dedupe"} {
				n := uint64(0)
				if name == sec {
					n = 1 << 60
				}
				require.NoError(t, w.Write(&internalv1.SectionHeader{Name: name, Count: n}))
				if name == sec {
					break
				}
			}
			require.NoError(t, w.Flush())
			require.NotPanics(t, func() {
				_, err := VerifySnapshot(bytes.NewReader(buf.Bytes()))
				require.Error(t, err)
			})
		})
	}
}

// A count below the panic threshold is not allocated before the records are
// read: 4M sessions claimed by a 40-byte file took 160 MiB.
func TestSectionCountIsNotAnAllocationSize(t *testing.T) {
	var buf bytes.Buffer
	w := record.NewWriter(&buf)
	require.NoError(t, w.Write(&internalv1.SnapshotHeader{Format: snapshotFormat, Index: 1}))
	require.NoError(t, w.Write(&internalv1.SectionHeader{Name: "member"}))
	require.NoError(t, w.Write(&internalv1.SectionHeader{Name: "session", Count: 1 << 22}))
	require.NoError(t, w.Flush())
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := VerifySnapshot(bytes.NewReader(buf.Bytes()))
	runtime.ReadMemStats(&after)
	require.Error(t, err)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("file of %d bytes, allocated %d MiB", buf.Len(), alloc>>20)
	require.Less(t, alloc, uint64(16<<20), "allocation follows the claimed count, not the data")
}

// Read must never show a state newer than the Applied index it reports:
// headers, LostGrants and session-consistent reads rely on it.
func TestReadDuringRestoreReportsItsIndex(t *testing.T) {
	put := func(f *FSM, idx uint64) {
		f.ApplyBatch([]raftnode.Entry{{Index: idx, Type: raftnode.EntryCommand, Data: encode(t,
			&internalv1.Command{Op: &internalv1.Command_Put{Put: &concordv1.PutRequest{Key: []byte("k"), Value: []byte("v")}}})}})
	}
	a, b := New(Config{}), New(Config{})
	put(a, 10)
	put(b, 1000)
	snapA, snapB := snapshotBytes(t, a), snapshotBytes(t, b)
	f := New(Config{})
	stop := make(chan struct{})
	bad := make(chan string, 1)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			f.Read(func(s State) {
				if it, ok := s.KV.Get([]byte("k")); ok && it.ModRev > s.Applied {
					select {
					case bad <- fmt.Sprintf("state holds revision %d, Applied says %d", it.ModRev, s.Applied):
					default:
					}
				}
			})
		}
	}()
	for i := 0; i < 3000 && len(bad) == 0; i++ {
		require.NoError(t, f.Restore(bytes.NewReader(snapA)))
		require.NoError(t, f.Restore(bytes.NewReader(snapB)))
	}
	close(stop)
	select {
	case msg := <-bad:
		t.Fatal(msg)
	default:
	}
}

// lockSectionSnapshot writes a snapshot of one live session (ID 1) and a
// lock section of the given records (a LockSectionHeader first), every
// other section empty: how a hand-made backup file looks.
func lockSectionSnapshot(t *testing.T, records ...proto.Message) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := record.NewWriter(&buf)
	wr := func(m proto.Message) { require.NoError(t, w.Write(m)) }
	wr(&internalv1.SnapshotHeader{Format: snapshotFormat, Index: 10})
	wr(&internalv1.SectionHeader{Name: "member"})
	wr(&internalv1.SectionHeader{Name: "session", Count: 1})
	wr(&internalv1.SessionRecord{Id: 1, TtlMs: 60000})
	wr(&internalv1.SectionHeader{Name: "kv"})
	wr(&internalv1.SectionHeader{Name: "lock", Count: uint64(len(records))})
	for _, r := range records {
		wr(r)
	}
	wr(&internalv1.SectionHeader{Name: "ids"})
	wr(&internalv1.SectionHeader{Name: "dedupe"})
	require.NoError(t, w.Flush())
	return buf.Bytes()
}

// A lock section that commands could not have built is refused. A waiter
// queued on a lock it does not claim used to pass VerifySnapshot and
// `snapshot restore`, and the restored cluster panicked applying ordinary
// commands (every member alike, at the same entry).
func TestInconsistentLockSectionIsRefused(t *testing.T) {
	holder := func(owner string, tok uint64) []*internalv1.LockHolderRecord {
		return []*internalv1.LockHolderRecord{{Session: 1, Owner: owner, Token: tok, Mode: 1, Permits: 1}}
	}
	snap := lockSectionSnapshot(t,
		&internalv1.LockSectionHeader{Locks: 2, Waiters: 1},
		&internalv1.LockRecord{Name: "a", Kind: 1, Capacity: 1, Holders: holder("o", 2), Queue: []uint64{7}},
		&internalv1.LockRecord{Name: "b", Kind: 1, Capacity: 1, Holders: holder("p", 3), Queue: []uint64{7}},
		&internalv1.LockWaiterRecord{Id: 7, Session: 1, Owner: "w", Claims: []*internalv1.LockClaimRecord{{Name: "b", Kind: 1, Mode: 1, Permits: 1, Capacity: 1}}})

	_, err := VerifySnapshot(bytes.NewReader(snap))
	if err != nil {
		return // refused: fine
	}
	f := New(Config{})
	require.NoError(t, f.Restore(bytes.NewReader(snap)))
	require.NotPanics(t, func() {
		f.ApplyBatch([]raftnode.Entry{{Index: 11, Type: raftnode.EntryCommand, Data: encode(t, &internalv1.Command{
			Op: &internalv1.Command_LockCancel{LockCancel: &concordv1.CancelWaitRequest{Waiter: 7, Session: 1, Owner: "w"}}})}})
		f.ApplyBatch([]raftnode.Entry{{Index: 12, Type: raftnode.EntryCommand, Data: encode(t, &internalv1.Command{
			Op: &internalv1.Command_LockRelease{LockRelease: &concordv1.ReleaseRequest{Names: []string{"a"}, Session: 1, Owner: "o"}}})}})
	}, "VerifySnapshot accepted a lock table that panics on apply")
}

// A waiter claiming one lock twice is refused: commands never build one
// (the claims are normalised), and it would be granted twice on a mutex
// once its holder released it (and the count of queue places drift).
func TestLockSectionWaiterClaimingALockTwiceIsRefused(t *testing.T) {
	claim := &internalv1.LockClaimRecord{Name: "m", Kind: 1, Mode: 1, Permits: 1, Capacity: 1}
	snap := lockSectionSnapshot(t,
		&internalv1.LockSectionHeader{Locks: 1, Waiters: 1},
		&internalv1.LockRecord{Name: "m", Kind: 1, Capacity: 1, Queue: []uint64{5},
			Holders: []*internalv1.LockHolderRecord{{Session: 1, Owner: "o", Token: 2, Mode: 1, Permits: 1}}},
		&internalv1.LockWaiterRecord{Id: 5, Session: 1, Owner: "w", Claims: []*internalv1.LockClaimRecord{claim, claim}})
	_, err := VerifySnapshot(bytes.NewReader(snap))
	require.ErrorContains(t, err, "twice")
}

// A backup file cut short is refused as damaged (operations.md: "a file
// that fails is refused with corrupt"), wherever it ends: a file cut at a
// record boundary was refused with a bare "EOF", which tells an operator
// nothing, and is no error that errors.Is finds as record.ErrCorrupt.
func TestTruncatedSnapshotIsCorrupt(t *testing.T) {
	a := New(Config{})
	a.ApplyBatch(randomLog(t, 5, 50))
	snap := snapshotBytes(t, a)
	for n := 0; n < len(snap); n++ {
		_, err := VerifySnapshot(bytes.NewReader(snap[:n]))
		require.ErrorIs(t, err, record.ErrCorrupt, "snapshot cut at %d of %d bytes", n, len(snap))
		require.ErrorIs(t, New(Config{}).Restore(bytes.NewReader(snap[:n])), record.ErrCorrupt)
	}
}

// A key or a worker ID attached to a session the snapshot does not hold is
// state commands could not have built (operations.md: every holder belongs
// to a session of the backup): nothing would ever end that session, and
// the key stayed for good, the worker ID leased for good. The lock section
// refused such holders; the kv and ids sections took them.
func TestKeyOrWorkerOfAnUnknownSessionIsRefused(t *testing.T) {
	snap := func(kvs []*concordv1.KeyValue, ids []proto.Message) []byte {
		var buf bytes.Buffer
		w := record.NewWriter(&buf)
		wr := func(m proto.Message) { require.NoError(t, w.Write(m)) }
		wr(&internalv1.SnapshotHeader{Format: snapshotFormat, Index: 10})
		wr(&internalv1.SectionHeader{Name: "member"})
		wr(&internalv1.SectionHeader{Name: "session", Count: 1})
		wr(&internalv1.SessionRecord{Id: 1, TtlMs: 60000})
		wr(&internalv1.SectionHeader{Name: "kv", Count: uint64(len(kvs))})
		for _, kv := range kvs {
			wr(kv)
		}
		wr(&internalv1.SectionHeader{Name: "lock"})
		wr(&internalv1.SectionHeader{Name: "ids", Count: uint64(len(ids))})
		for _, r := range ids {
			wr(r)
		}
		wr(&internalv1.SectionHeader{Name: "dedupe"})
		require.NoError(t, w.Flush())
		return buf.Bytes()
	}
	key := func(sess int64) []*concordv1.KeyValue {
		return []*concordv1.KeyValue{{Key: []byte("k"), Value: []byte("v"), CreateRevision: 3, ModRevision: 3, Version: 1, Session: sess}}
	}
	worker := func(sess int64) []proto.Message {
		return []proto.Message{&internalv1.IDsSectionHeader{Pools: 1},
			&internalv1.IDPoolRecord{Name: "p", WorkerBits: 2, Workers: []*internalv1.IDWorkerRecord{{Id: 0, Session: sess, Owner: "g", LeasedMs: 1}}}}
	}
	// Held by the snapshot's session: taken.
	_, err := VerifySnapshot(bytes.NewReader(snap(key(1), worker(1))))
	require.NoError(t, err)
	_, err = VerifySnapshot(bytes.NewReader(snap(key(2), nil)))
	require.ErrorIs(t, err, record.ErrCorrupt, "a key of session 2, which the snapshot does not hold")
	_, err = VerifySnapshot(bytes.NewReader(snap(nil, worker(2))))
	require.ErrorIs(t, err, record.ErrCorrupt, "a worker ID leased to session 2, which the snapshot does not hold")
}

// A remembered result in a backup's dedupe section that the snapshot
// decoder takes (a field of the wrong wire type is kept as an unknown
// field) but the state machine's own decoder does not, is refused: it
// passed VerifySnapshot, and the restored member panicked at its next
// snapshot, or when a client retried that request (found by
// FuzzRestoreRecord).
func TestDedupeResultThatDoesNotDecodeIsRefused(t *testing.T) {
	var buf bytes.Buffer
	w := record.NewWriter(&buf)
	wr := func(m proto.Message) { require.NoError(t, w.Write(m)) }
	wr(&internalv1.SnapshotHeader{Format: snapshotFormat, Index: 10})
	for _, name := range []string{"member", "session", "kv", "lock", "ids"} {
		wr(&internalv1.SectionHeader{Name: name})
	}
	wr(&internalv1.SectionHeader{Name: "dedupe", Count: 1})
	wr(&internalv1.DedupeClient{ClientId: "c1", Count: 1})
	var res internalv1.Result
	// Field 11 (a message) as a varint.
	require.NoError(t, proto.Unmarshal([]byte{0x58, 0xd5, 0x30}, &res))
	wr(&internalv1.DedupeRecord{ClientId: "c1", RequestId: 1, Result: &res})
	require.NoError(t, w.Flush())

	_, err := VerifySnapshot(bytes.NewReader(buf.Bytes()))
	require.ErrorIs(t, err, record.ErrCorrupt)
	require.ErrorIs(t, New(Config{}).Restore(bytes.NewReader(buf.Bytes())), record.ErrCorrupt)
}

// A revision in a snapshot past the index it claims to reflect is state
// commands could not have built (a revision is the index of the entry that
// made it): a key modified at 50 in a snapshot of index 10 was read at
// Applied 10 (Read's promise: never a state newer than its index), and a
// lock token of 50 there outranked the tokens of the next 40 grants, so a
// fenced write of a later holder lost to the stale one.
func TestRevisionPastTheSnapshotIndexIsRefused(t *testing.T) {
	key := func(mod uint64) []byte {
		var buf bytes.Buffer
		w := record.NewWriter(&buf)
		wr := func(m proto.Message) { require.NoError(t, w.Write(m)) }
		wr(&internalv1.SnapshotHeader{Format: snapshotFormat, Index: 10})
		wr(&internalv1.SectionHeader{Name: "member"})
		wr(&internalv1.SectionHeader{Name: "session"})
		wr(&internalv1.SectionHeader{Name: "kv", Count: 1})
		wr(&concordv1.KeyValue{Key: []byte("k"), Value: []byte("v"), CreateRevision: 3, ModRevision: mod, Version: 1})
		for _, name := range []string{"lock", "ids", "dedupe"} {
			wr(&internalv1.SectionHeader{Name: name})
		}
		require.NoError(t, w.Flush())
		return buf.Bytes()
	}
	_, err := VerifySnapshot(bytes.NewReader(key(10)))
	require.NoError(t, err)
	_, err = VerifySnapshot(bytes.NewReader(key(50)))
	require.ErrorIs(t, err, record.ErrCorrupt, "a key modified at 50 in a snapshot of index 10")

	holder := []*internalv1.LockHolderRecord{{Session: 1, Owner: "o", Token: 50, Mode: 1, Permits: 1}}
	_, err = VerifySnapshot(bytes.NewReader(lockSectionSnapshot(t,
		&internalv1.LockSectionHeader{Locks: 1},
		&internalv1.LockRecord{Name: "a", Kind: 1, Capacity: 1, Holders: holder})))
	require.ErrorIs(t, err, record.ErrCorrupt, "a lock token of 50 in a snapshot of index 10")
}

// An ID pool in a backup that LeaseWorker could not have built (worker
// bits outside 1..16, a worker ID outside the pool's bits, a pool twice)
// or a tag of step below 1 is refused: it was restored, a worker ID no
// snowflake of its pool's layout can encode among them.
func TestImpossibleIDsSectionIsRefused(t *testing.T) {
	snap := func(recs ...proto.Message) []byte {
		var buf bytes.Buffer
		w := record.NewWriter(&buf)
		wr := func(m proto.Message) { require.NoError(t, w.Write(m)) }
		wr(&internalv1.SnapshotHeader{Format: snapshotFormat, Index: 10})
		for _, name := range []string{"member", "session", "kv", "lock"} {
			wr(&internalv1.SectionHeader{Name: name})
		}
		wr(&internalv1.SectionHeader{Name: "ids", Count: uint64(len(recs))})
		for _, r := range recs {
			wr(r)
		}
		wr(&internalv1.SectionHeader{Name: "dedupe"})
		require.NoError(t, w.Flush())
		return buf.Bytes()
	}
	pool := func(name string, bits int32, id int64) *internalv1.IDPoolRecord {
		return &internalv1.IDPoolRecord{Name: name, WorkerBits: bits, Workers: []*internalv1.IDWorkerRecord{{Id: id, FreedMs: 1}}}
	}
	_, err := VerifySnapshot(bytes.NewReader(snap(&internalv1.IDsSectionHeader{Pools: 1, Tags: 1},
		pool("p", 3, 7), &internalv1.IDTagRecord{Name: "t", Start: 1, Step: 1, Next: 1})))
	require.NoError(t, err)
	for name, recs := range map[string][]proto.Message{
		"worker 8 of 3 bits": {&internalv1.IDsSectionHeader{Pools: 1}, pool("p", 3, 8)},
		"worker -1":          {&internalv1.IDsSectionHeader{Pools: 1}, pool("p", 3, -1)},
		"0 worker bits":      {&internalv1.IDsSectionHeader{Pools: 1}, pool("p", 0, 0)},
		"17 worker bits":     {&internalv1.IDsSectionHeader{Pools: 1}, pool("p", 17, 0)},
		"a pool twice":       {&internalv1.IDsSectionHeader{Pools: 2}, pool("p", 3, 1), pool("p", 3, 2)},
		"a tag of step 0":    {&internalv1.IDsSectionHeader{Tags: 1}, &internalv1.IDTagRecord{Name: "t", Start: 1, Next: 1}},
	} {
		_, err := VerifySnapshot(bytes.NewReader(snap(recs...)))
		require.ErrorIs(t, err, record.ErrCorrupt, name)
	}
}

// Session, lock and member records that commands could not have built
// are refused as corrupt, like the other impossible data of a backup. A
// session's ID is the index that created it: one of ID 0 or below was
// restored and vouched for lock holders of "session 0", and one past the
// snapshot's index for a session created after it. A waiter's ID is the
// index of its acquire, a force-release record's revision the index of the
// release and its token that of the ended grant: past the index, they
// outranked later entries. A member ID listed twice or empty was taken
// (the last record of an ID won).
func TestImpossibleSessionLockOrMemberRecordIsRefused(t *testing.T) {
	type sections struct{ members, sessions, locks []proto.Message }
	snap := func(s sections) []byte {
		var buf bytes.Buffer
		w := record.NewWriter(&buf)
		wr := func(m proto.Message) { require.NoError(t, w.Write(m)) }
		wr(&internalv1.SnapshotHeader{Format: snapshotFormat, Index: 10})
		for _, sec := range []struct {
			name string
			recs []proto.Message
		}{{"member", s.members}, {"session", s.sessions}, {"kv", nil}, {"lock", s.locks}, {"ids", nil}, {"dedupe", nil}} {
			wr(&internalv1.SectionHeader{Name: sec.name, Count: uint64(len(sec.recs))})
			for _, r := range sec.recs {
				wr(r)
			}
		}
		require.NoError(t, w.Flush())
		return buf.Bytes()
	}
	session := func(id int64) *internalv1.SessionRecord { return &internalv1.SessionRecord{Id: id, TtlMs: 60000} }
	member := func(id string) *internalv1.MemberRecord {
		return &internalv1.MemberRecord{Id: id, Name: "n" + id, PeerAddr: "127.0.0.1:7081"}
	}
	heldByToken := func(sess int64, token uint64) []proto.Message {
		return []proto.Message{&internalv1.LockSectionHeader{Locks: 1},
			&internalv1.LockRecord{Name: "a", Kind: 1, Capacity: 1,
				Holders: []*internalv1.LockHolderRecord{{Session: sess, Owner: "o", Token: token, Mode: 1, Permits: 1}}}}
	}
	heldBy := func(sess int64) []proto.Message { return heldByToken(sess, 2) }
	waiter := func(id uint64) []proto.Message {
		claim := &internalv1.LockClaimRecord{Name: "a", Kind: 1, Mode: 1, Permits: 1, Capacity: 1}
		return []proto.Message{&internalv1.LockSectionHeader{Locks: 1, Waiters: 1},
			&internalv1.LockRecord{Name: "a", Kind: 1, Capacity: 1, Queue: []uint64{id},
				Holders: []*internalv1.LockHolderRecord{{Session: 1, Owner: "o", Token: 2, Mode: 1, Permits: 1}}},
			&internalv1.LockWaiterRecord{Id: id, Session: 1, Owner: "w", Claims: []*internalv1.LockClaimRecord{claim}}}
	}
	manyForced := func(n int) []proto.Message {
		out := []proto.Message{&internalv1.LockSectionHeader{Forced: uint64(n)}}
		for range n {
			out = append(out, &internalv1.LockForceRecord{Name: "a", Token: 3, Session: 1, Owner: "o", Reason: "r", Revision: 10})
		}
		return out
	}
	forced := func(token, rev uint64) []proto.Message {
		return []proto.Message{&internalv1.LockSectionHeader{Forced: 1},
			&internalv1.LockForceRecord{Name: "a", Token: token, Session: 1, Owner: "o", Reason: "r", Revision: rev}}
	}
	// What commands could have built is taken.
	for name, s := range map[string]sections{
		"a session, its lock, a waiter": {members: []proto.Message{member("1"), member("2")}, sessions: []proto.Message{session(1), session(10)}, locks: waiter(10)},
		"a force-release record":        {sessions: []proto.Message{session(1)}, locks: forced(3, 10)},
		"100 force-release records":     {sessions: []proto.Message{session(1)}, locks: manyForced(100)},
		"a session name of 256 bytes": {sessions: []proto.Message{&internalv1.SessionRecord{Id: 1, TtlMs: 60000,
			Name: strings.Repeat("n", 256)}}},
	} {
		_, err := VerifySnapshot(bytes.NewReader(snap(s)))
		require.NoError(t, err, name)
	}
	for name, s := range map[string]sections{
		"session 0 holding a lock":         {sessions: []proto.Message{session(0)}, locks: heldBy(0)},
		"session -1":                       {sessions: []proto.Message{session(-1)}},
		"session 11 in a snapshot of 10":   {sessions: []proto.Message{session(11)}},
		"a session twice":                  {sessions: []proto.Message{session(1), session(1)}},
		"waiter 50 in a snapshot of 10":    {sessions: []proto.Message{session(1)}, locks: waiter(50)},
		"a force-release at 50":            {sessions: []proto.Message{session(1)}, locks: forced(3, 50)},
		"a force-release of token 50":      {sessions: []proto.Message{session(1)}, locks: forced(50, 50)},
		"a force-release before its grant": {sessions: []proto.Message{session(1)}, locks: forced(8, 5)},
		"a force-release of token 0":       {sessions: []proto.Message{session(1)}, locks: forced(0, 5)},
		"a holder of token 0":              {sessions: []proto.Message{session(1)}, locks: heldByToken(1, 0)},
		"a member without an ID":           {members: []proto.Message{member("")}},
		"a member ID twice":                {members: []proto.Message{member("1"), member("1")}},
		"a session of TTL 0":               {sessions: []proto.Message{&internalv1.SessionRecord{Id: 1}}},
		"a session of TTL -1 ms":           {sessions: []proto.Message{&internalv1.SessionRecord{Id: 1, TtlMs: -1}}},
		"a session name of 257 bytes": {sessions: []proto.Message{&internalv1.SessionRecord{Id: 1, TtlMs: 60000,
			Name: strings.Repeat("n", 257)}}},
		"101 force-release records": {sessions: []proto.Message{session(1)}, locks: manyForced(101)},
	} {
		data := snap(s)
		_, err := VerifySnapshot(bytes.NewReader(data))
		require.ErrorIs(t, err, record.ErrCorrupt, name)
		require.ErrorIs(t, New(Config{}).Restore(bytes.NewReader(data)), record.ErrCorrupt, name)
	}
}

// A waiter no acquire could have queued is refused: one whose claim has a
// mode, permits or kind that the lock's kind (or the acquire's checks)
// does not allow. A restore took it, and once its lock was released the
// waiter became a holder no restore takes (a read-write holder of mode 0,
// a semaphore holder of 0 permits, a shared holder of a mutex): every
// snapshot the cluster took from then on was refused, so no member could
// be restored or catch up from one. A claim of more permits than the
// semaphore has could never be granted and blocked its queue for good.
func TestLockSectionWaiterNoAcquireCouldQueueIsRefused(t *testing.T) {
	holder := []*internalv1.LockHolderRecord{{Session: 1, Owner: "o", Token: 2, Mode: 1, Permits: 1}}
	for _, tc := range []struct {
		name  string
		lock  *internalv1.LockRecord
		claim *internalv1.LockClaimRecord
	}{
		{"read-write claim without a mode",
			&internalv1.LockRecord{Name: "rw", Kind: 2, Holders: holder},
			&internalv1.LockClaimRecord{Name: "rw", Kind: 2, Mode: 0, Permits: 1}},
		{"semaphore claim of 0 permits",
			&internalv1.LockRecord{Name: "s", Kind: 3, Capacity: 1, Holders: []*internalv1.LockHolderRecord{{Session: 1, Owner: "o", Token: 2, Mode: 2, Permits: 1}}},
			&internalv1.LockClaimRecord{Name: "s", Kind: 3, Mode: 2, Permits: 0, Capacity: 1}},
		{"semaphore claim on a mutex",
			&internalv1.LockRecord{Name: "m", Kind: 1, Capacity: 1, Holders: holder},
			&internalv1.LockClaimRecord{Name: "m", Kind: 3, Mode: 2, Permits: 1, Capacity: 1}},
		{"more permits than the semaphore has",
			&internalv1.LockRecord{Name: "s", Kind: 3, Capacity: 3, Holders: []*internalv1.LockHolderRecord{{Session: 1, Owner: "o", Token: 2, Mode: 2, Permits: 1}}},
			&internalv1.LockClaimRecord{Name: "s", Kind: 3, Mode: 2, Permits: 4, Capacity: 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.lock.Queue = []uint64{5}
			snap := lockSectionSnapshot(t, &internalv1.LockSectionHeader{Locks: 1, Waiters: 1}, tc.lock,
				&internalv1.LockWaiterRecord{Id: 5, Session: 1, Owner: "w", Claims: []*internalv1.LockClaimRecord{tc.claim}})
			_, err := VerifySnapshot(bytes.NewReader(snap))
			harm := ""
			if err == nil {
				// What a restore of it led to: the holder releases, the
				// waiter is granted, and the next snapshot is refused.
				f := New(Config{})
				require.NoError(t, f.Restore(bytes.NewReader(snap)))
				res := apply(t, f, 11, &internalv1.Command{Op: &internalv1.Command_LockRelease{LockRelease: &concordv1.ReleaseRequest{
					Names: []string{tc.lock.Name}, Session: 1, Owner: "o"}}})
				require.NoError(t, ResultError(res))
				var buf bytes.Buffer
				_, err := f.CaptureState().WriteTo(&buf)
				require.NoError(t, err)
				_, err = VerifySnapshot(bytes.NewReader(buf.Bytes()))
				var held int
				f.Read(func(s State) {
					l, _, _ := s.Locks.Get(tc.lock.Name)
					held = len(l.Holders)
				})
				harm = fmt.Sprintf("after the holder released, the lock has %d holders and the next snapshot verifies with %v", held, err)
			}
			require.ErrorIs(t, err, record.ErrCorrupt, "a waiter no acquire could queue was restored; %s", harm)
		})
	}
}

// A queue out of the order its waiters queued in is refused: commands
// append waiters in the order of their IDs, so every queue is in that order
// and the oldest waiter heads every queue it is in. Two waiters for the same
// two mutexes, queued in opposite orders, each headed one queue and waited
// for the other: once the holders released, both locks stayed free and
// both waiters waited for good (a deadlock only a cancel or a session's end
// broke).
func TestLockSectionQueueOutOfOrderIsRefused(t *testing.T) {
	holder := func(tok uint64) []*internalv1.LockHolderRecord {
		return []*internalv1.LockHolderRecord{{Session: 1, Owner: "o", Token: tok, Mode: 1, Permits: 1}}
	}
	both := []*internalv1.LockClaimRecord{{Name: "a", Kind: 1, Mode: 1, Permits: 1, Capacity: 1}, {Name: "b", Kind: 1, Mode: 1, Permits: 1, Capacity: 1}}
	snap := lockSectionSnapshot(t,
		&internalv1.LockSectionHeader{Locks: 2, Waiters: 2},
		&internalv1.LockRecord{Name: "a", Kind: 1, Capacity: 1, Holders: holder(2), Queue: []uint64{5, 6}},
		&internalv1.LockRecord{Name: "b", Kind: 1, Capacity: 1, Holders: holder(2), Queue: []uint64{6, 5}},
		&internalv1.LockWaiterRecord{Id: 5, Session: 1, Owner: "v", Claims: both},
		&internalv1.LockWaiterRecord{Id: 6, Session: 1, Owner: "u", Claims: both})
	_, err := VerifySnapshot(bytes.NewReader(snap))
	harm := ""
	if err == nil {
		f := New(Config{})
		require.NoError(t, f.Restore(bytes.NewReader(snap)))
		res := apply(t, f, 11, &internalv1.Command{Op: &internalv1.Command_LockRelease{LockRelease: &concordv1.ReleaseRequest{
			Names: []string{"a", "b"}, Session: 1, Owner: "o"}}})
		require.NoError(t, ResultError(res))
		f.Read(func(s State) {
			for _, n := range []string{"a", "b"} {
				l, ws, _ := s.Locks.Get(n)
				harm += fmt.Sprintf("%s: %d holders, %d waiters; ", n, len(l.Holders), len(ws))
			}
		})
	}
	require.ErrorIs(t, err, record.ErrCorrupt, "a queue out of order was restored; after the holder released both locks: %s", harm)
}

// An owner holding a lock twice, or waiting for a lock it holds, is
// refused: an acquire of an owner that holds or waits is answered with what
// it has. Restored, the owner's release ended one of its grants and left
// the other holding (a read lock or permits kept until its session ended).
func TestLockSectionOwnerHoldingTwiceIsRefused(t *testing.T) {
	reader := func(tok uint64) *internalv1.LockHolderRecord {
		return &internalv1.LockHolderRecord{Session: 1, Owner: "o", Token: tok, Mode: 2, Permits: 1}
	}
	for _, tc := range []struct {
		name    string
		records []proto.Message
	}{
		{"two grants", []proto.Message{&internalv1.LockSectionHeader{Locks: 1},
			&internalv1.LockRecord{Name: "rw", Kind: 2, Holders: []*internalv1.LockHolderRecord{reader(2), reader(3)}}}},
		{"a waiter that holds", []proto.Message{&internalv1.LockSectionHeader{Locks: 1, Waiters: 1},
			&internalv1.LockRecord{Name: "s", Kind: 3, Capacity: 2, Queue: []uint64{5}, Holders: []*internalv1.LockHolderRecord{
				reader(2), {Session: 1, Owner: "p", Token: 3, Mode: 2, Permits: 1}}},
			&internalv1.LockWaiterRecord{Id: 5, Session: 1, Owner: "o", Claims: []*internalv1.LockClaimRecord{{Name: "s", Kind: 3, Mode: 2, Permits: 1, Capacity: 2}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := lockSectionSnapshot(t, tc.records...)
			_, err := VerifySnapshot(bytes.NewReader(snap))
			harm := ""
			if err == nil {
				f := New(Config{})
				require.NoError(t, f.Restore(bytes.NewReader(snap)))
				name := tc.records[1].(*internalv1.LockRecord).GetName()
				res := apply(t, f, 11, &internalv1.Command{Op: &internalv1.Command_LockRelease{LockRelease: &concordv1.ReleaseRequest{
					Names: []string{name}, Session: 1, Owner: "o"}}})
				require.NoError(t, ResultError(res))
				f.Read(func(s State) {
					l, _, _ := s.Locks.Get(name)
					for _, h := range l.Holders {
						if h.Owner == "o" {
							harm = fmt.Sprintf("after its release the owner still holds %s under token %d", name, h.Token)
						}
					}
				})
			}
			require.ErrorIs(t, err, record.ErrCorrupt, "an owner holding a lock twice was restored; %s", harm)
		})
	}
}
