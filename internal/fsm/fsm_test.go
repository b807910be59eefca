package fsm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/concord-dev/concord/internal/raftnode"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
	"github.com/concord-dev/concord/internal/kv"
	"github.com/concord-dev/concord/internal/session"
)

func encode(t testing.TB, c *internalv1.Command) []byte {
	t.Helper()
	b, err := proto.Marshal(c)
	require.NoError(t, err)
	return b
}

// randomLog draws a log of n commands over a small key space, with
// sessions, expiries, transactions, counters and retried writes.
func randomLog(t testing.TB, seed uint64, n int) []raftnode.Entry {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b9))
	var logs []raftnode.Entry
	var sessions []int64
	key := func() []byte { return []byte(fmt.Sprintf("k/%d", rng.IntN(40))) }
	for i := 1; i <= n; i++ {
		idx := uint64(i)
		cmd := &internalv1.Command{TimeUnixNano: int64(i) * 1e6}
		if rng.IntN(4) == 0 {
			cmd.Meta = &concordv1.WriteMeta{ClientId: fmt.Sprintf("c%d", rng.IntN(3)), RequestId: uint64(rng.IntN(20))}
		}
		var sess int64
		if len(sessions) > 0 && rng.IntN(3) == 0 {
			sess = sessions[rng.IntN(len(sessions))]
		}
		switch rng.IntN(15) {
		case 0, 1:
			cmd.Op = &internalv1.Command_Put{Put: &concordv1.PutRequest{Key: key(), Value: []byte(fmt.Sprint(rng.Int64())), Session: sess}}
		case 2:
			cmd.Op = &internalv1.Command_DeleteRange{DeleteRange: &concordv1.DeleteRangeRequest{Key: key()}}
		case 3:
			lo := int64(0)
			cmd.Op = &internalv1.Command_Add{Add: &concordv1.AddRequest{Key: []byte("counter"), Delta: rng.Int64N(7) - 3, Min: &lo}}
		case 4:
			cmd.Op = &internalv1.Command_Txn{Txn: &concordv1.TxnRequest{
				Compare: []*concordv1.Compare{{Key: key(), Target: concordv1.Compare_TARGET_VERSION, Result: concordv1.Compare_RESULT_GREATER, Number: 0}},
				Success: []*concordv1.RequestOp{
					{Request: &concordv1.RequestOp_Put{Put: &concordv1.PutRequest{Key: key(), Value: []byte("t")}}},
					{Request: &concordv1.RequestOp_DeleteRange{DeleteRange: &concordv1.DeleteRangeRequest{Key: key()}}},
				},
				Failure: []*concordv1.RequestOp{{Request: &concordv1.RequestOp_Range{Range: &concordv1.RangeRequest{Key: []byte("k/"), Prefix: true}}}},
			}}
		case 5:
			cmd.Op = &internalv1.Command_CreateSession{CreateSession: &internalv1.CreateSession{TtlMs: 1000, Name: "s"}}
			sessions = append(sessions, int64(idx))
		case 6:
			if len(sessions) > 0 {
				cmd.Op = &internalv1.Command_ExpireSessions{ExpireSessions: &internalv1.ExpireSessions{Ids: []int64{sessions[rng.IntN(len(sessions))]}}}
			} else {
				cmd.Op = &internalv1.Command_Noop{Noop: &internalv1.Noop{}}
			}
		case 7:
			if len(sessions) > 0 {
				cmd.Op = &internalv1.Command_RevokeSession{RevokeSession: &internalv1.RevokeSession{Id: sessions[rng.IntN(len(sessions))]}}
			} else {
				cmd.Op = &internalv1.Command_Noop{Noop: &internalv1.Noop{}}
			}
		case 9, 10:
			if len(sessions) == 0 {
				cmd.Op = &internalv1.Command_Noop{Noop: &internalv1.Noop{}}
				break
			}
			s := sessions[rng.IntN(len(sessions))]
			claims := []*concordv1.LockClaim{{Name: fmt.Sprintf("l%d", rng.IntN(3)), Kind: concordv1.LockKind_LOCK_KIND_MUTEX}}
			if rng.IntN(3) == 0 {
				claims = []*concordv1.LockClaim{{Name: "sem", Kind: concordv1.LockKind_LOCK_KIND_SEMAPHORE, Permits: 1 + rng.Int64N(2), Capacity: 3}}
			}
			cmd.Op = &internalv1.Command_LockAcquire{LockAcquire: &concordv1.AcquireRequest{
				Claims: claims, Session: s, Owner: fmt.Sprintf("o%d", rng.IntN(2)), Wait: rng.IntN(2) == 0, HoldMs: int64(rng.IntN(2)) * 500}}
		case 11:
			if len(sessions) == 0 {
				cmd.Op = &internalv1.Command_Noop{Noop: &internalv1.Noop{}}
				break
			}
			cmd.Op = &internalv1.Command_LockRelease{LockRelease: &concordv1.ReleaseRequest{
				Names: []string{fmt.Sprintf("l%d", rng.IntN(3))}, Session: sessions[rng.IntN(len(sessions))], Owner: fmt.Sprintf("o%d", rng.IntN(2))}}
		case 12:
			cmd.Op = &internalv1.Command_IdCreateTag{IdCreateTag: &concordv1.CreateTagRequest{Tag: fmt.Sprintf("t%d", rng.IntN(2)), Start: 1, Step: 100}}
		case 13:
			cmd.Op = &internalv1.Command_IdAllocSegment{IdAllocSegment: &concordv1.AllocSegmentRequest{Tag: fmt.Sprintf("t%d", rng.IntN(2)), Count: 1 + rng.Int64N(500)}}
		case 14:
			if len(sessions) == 0 {
				cmd.Op = &internalv1.Command_IdNextSequence{IdNextSequence: &concordv1.NextSequenceRequest{Name: "seq", N: 1 + rng.Int64N(3)}}
				break
			}
			cmd.Op = &internalv1.Command_IdLeaseWorker{IdLeaseWorker: &concordv1.LeaseWorkerRequest{
				Pool: "p", WorkerBits: 3, Session: sessions[rng.IntN(len(sessions))], Owner: "g", GuardMs: 100}}
		case 8:
			cmd.Op = &internalv1.Command_PublishMember{PublishMember: &internalv1.PublishMember{Id: fmt.Sprintf("n%d", rng.IntN(3)), Name: "n", ClientAddr: fmt.Sprint(i)}}
		}
		logs = append(logs, raftnode.Entry{Index: idx, Term: 1, Type: raftnode.EntryCommand, Data: encode(t, cmd)})
	}
	return logs
}

func applyInBatches(f *FSM, logs []raftnode.Entry, rng *rand.Rand) []any {
	var out []any
	for len(logs) > 0 {
		n := 1 + rng.IntN(min(len(logs), 64))
		out = append(out, f.ApplyBatch(logs[:n])...)
		logs = logs[n:]
	}
	return out
}

func hashOf(t testing.TB, f *FSM) (uint64, string) {
	t.Helper()
	idx, h, err := f.Hash()
	require.NoError(t, err)
	return idx, h
}

func TestSameLogSameHash(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			logs := randomLog(t, seed, 3000)
			a, b := New(Config{}), New(Config{})
			ra := applyInBatches(a, logs, rand.New(rand.NewPCG(seed, 1)))
			rb := applyInBatches(b, logs, rand.New(rand.NewPCG(seed, 2)))
			for i := range ra {
				require.True(t, proto.Equal(ra[i].(*internalv1.Result), rb[i].(*internalv1.Result)), "result %d differs", i)
			}
			ia, ha := hashOf(t, a)
			ib, hb := hashOf(t, b)
			require.Equal(t, uint64(len(logs)), ia)
			require.Equal(t, ia, ib)
			require.Equal(t, ha, hb)
		})
	}
}

func TestDifferentLogsDifferentHash(t *testing.T) {
	a, b := New(Config{}), New(Config{})
	a.ApplyBatch(randomLog(t, 1, 200))
	b.ApplyBatch(randomLog(t, 2, 200))
	_, ha := hashOf(t, a)
	_, hb := hashOf(t, b)
	require.NotEqual(t, ha, hb)
}

func snapshotBytes(t testing.TB, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	require.NoError(t, err)
	var buf bytes.Buffer
	n, err := snap.Persist(&buf)
	require.NoError(t, err)
	require.EqualValues(t, buf.Len(), n)
	return buf.Bytes()
}

func TestSnapshotRestoreSameHash(t *testing.T) {
	logs := randomLog(t, 42, 4000)
	a := New(Config{})
	a.ApplyBatch(logs[:2500])
	snap, err := a.Snapshot()
	require.NoError(t, err)
	// Writes after the capture must not leak into it.
	a.ApplyBatch(logs[2500:2600])
	var buf bytes.Buffer
	_, err = snap.Persist(&buf)
	require.NoError(t, err)

	b := New(Config{})
	require.NoError(t, b.Restore(&buf))
	require.EqualValues(t, 2500, b.AppliedIndex())
	b.ApplyBatch(logs[2500:])
	a.ApplyBatch(logs[2600:])
	_, ha := hashOf(t, a)
	_, hb := hashOf(t, b)
	require.Equal(t, ha, hb)

	// The restored member's history starts at the snapshot.
	_, _, _, err = b.History().Read(2500, kv.Span{}, 0)
	require.ErrorIs(t, err, kv.ErrCompacted)
}

func TestRestoreRejectsCorruptSnapshotAndKeepsState(t *testing.T) {
	a := New(Config{})
	a.ApplyBatch(randomLog(t, 3, 500))
	good := snapshotBytes(t, a)
	_, before := hashOf(t, a)
	for _, bad := range [][]byte{
		good[:len(good)/2],
		append(append([]byte{}, good...), 1, 2, 3),
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		nil,
	} {
		require.Error(t, a.Restore(bytes.NewReader(bad)))
		_, after := hashOf(t, a)
		require.Equal(t, before, after)
	}
	_, err := VerifySnapshot(bytes.NewReader(good))
	require.NoError(t, err)
}

func apply(t testing.TB, f *FSM, idx uint64, cmd *internalv1.Command) *internalv1.Result {
	t.Helper()
	return f.ApplyBatch([]raftnode.Entry{{Index: idx, Type: raftnode.EntryCommand, Data: encode(t, cmd)}})[0].(*internalv1.Result)
}

func TestRetriedWriteAppliesOnce(t *testing.T) {
	f := New(Config{})
	meta := &concordv1.WriteMeta{ClientId: "c1", RequestId: 7}
	add := &internalv1.Command{Meta: meta, Op: &internalv1.Command_Add{Add: &concordv1.AddRequest{Key: []byte("n"), Delta: 1}}}
	first := apply(t, f, 1, add)
	again := apply(t, f, 2, add)
	require.True(t, proto.Equal(first, again))
	require.EqualValues(t, 1, again.GetAdd().GetHeader().GetRevision())
	f.Read(func(s State) {
		it, ok := s.KV.Get([]byte("n"))
		require.True(t, ok)
		require.Equal(t, "1", string(it.Value))
	})
	// Another request ID from the same client applies.
	add.Meta = &concordv1.WriteMeta{ClientId: "c1", RequestId: 8}
	require.EqualValues(t, 2, apply(t, f, 3, add).GetAdd().GetValue())
}

// A write that reused a request ID of another kind of write was answered
// with the other's remembered result (a Txn after a Put got an empty,
// unsucceeded TxnResponse at revision 0, and nothing applied). It is now
// refused with REQUEST_ID_REUSED; the retry of the first write still gets
// its result, and so does the retry of a failed write (its error).
func TestRequestIDReusedByAnotherKindOfWriteIsRefused(t *testing.T) {
	f := New(Config{})
	meta := &concordv1.WriteMeta{ClientId: "c1", RequestId: 1}
	put := &internalv1.Command{Meta: meta, Op: &internalv1.Command_Put{Put: &concordv1.PutRequest{Key: []byte("k"), Value: []byte("v")}}}
	first := apply(t, f, 1, put)
	require.Nil(t, first.GetError())
	txn := &internalv1.Command{Meta: meta, Op: &internalv1.Command_Txn{Txn: &concordv1.TxnRequest{Success: []*concordv1.RequestOp{
		{Request: &concordv1.RequestOp_Put{Put: &concordv1.PutRequest{Key: []byte("t"), Value: []byte("x")}}}}}}}
	res := apply(t, f, 2, txn)
	require.ErrorIs(t, ResultError(res), ErrRequestIDReused)
	f.Read(func(s State) {
		_, ok := s.KV.Get([]byte("t"))
		require.False(t, ok, "the refused write was applied")
	})
	require.True(t, proto.Equal(first, apply(t, f, 3, put)), "the retry of the first write gets its result")
	// A failed write's remembered error answers its retry.
	bad := &internalv1.Command{Meta: &concordv1.WriteMeta{ClientId: "c3", RequestId: 1},
		Op: &internalv1.Command_RevokeSession{RevokeSession: &internalv1.RevokeSession{Id: 99}}}
	failed := apply(t, f, 4, bad)
	require.NotNil(t, failed.GetError())
	require.True(t, proto.Equal(failed, apply(t, f, 5, bad)))
}

// The kinds whose result is Empty (a lock release, a wait cancel, a worker
// release) fitted each other's remembered results: a release that reused a
// cancel's request ID was answered as done and released nothing. The
// operation is now remembered with the result, snapshots included.
func TestRequestIDReusedAmongKindsWithEmptyResults(t *testing.T) {
	f := New(Config{})
	sess := apply(t, f, 1, &internalv1.Command{Meta: &concordv1.WriteMeta{ClientId: "s", RequestId: 1},
		Op: &internalv1.Command_CreateSession{CreateSession: &internalv1.CreateSession{TtlMs: 60000}}}).GetCreateSession().GetId()
	claim := []*concordv1.LockClaim{{Name: "L", Kind: concordv1.LockKind_LOCK_KIND_MUTEX}}
	meta := func(id uint64) *concordv1.WriteMeta { return &concordv1.WriteMeta{ClientId: "c", RequestId: id} }
	g := apply(t, f, 2, &internalv1.Command{Meta: meta(1), Op: &internalv1.Command_LockAcquire{LockAcquire: &concordv1.AcquireRequest{Claims: claim, Session: sess, Owner: "o1"}}})
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_GRANTED, g.GetLockAcquire().GetState())
	q := apply(t, f, 3, &internalv1.Command{Meta: meta(2), Op: &internalv1.Command_LockAcquire{LockAcquire: &concordv1.AcquireRequest{Claims: claim, Session: sess, Owner: "o2", Wait: true}}})
	require.Equal(t, concordv1.AcquireState_ACQUIRE_STATE_QUEUED, q.GetLockAcquire().GetState())
	c := apply(t, f, 4, &internalv1.Command{Meta: meta(3), Op: &internalv1.Command_LockCancel{LockCancel: &concordv1.CancelWaitRequest{Waiter: q.GetLockAcquire().GetWaiter(), Session: sess, Owner: "o2"}}})
	require.Nil(t, c.GetError())

	// The remembered operation survives a snapshot.
	var buf bytes.Buffer
	_, err := f.CaptureState().WriteTo(&buf)
	require.NoError(t, err)
	g2 := New(Config{})
	require.NoError(t, g2.Restore(bytes.NewReader(buf.Bytes())))
	for name, m := range map[string]*FSM{"live": f, "restored": g2} {
		// Request ID 3 again, for a release of o1's grant.
		r := apply(t, m, 5, &internalv1.Command{Meta: meta(3), Op: &internalv1.Command_LockRelease{LockRelease: &concordv1.ReleaseRequest{Names: []string{"L"}, Session: sess, Owner: "o1"}}})
		require.ErrorIs(t, ResultError(r), ErrRequestIDReused, name)
		m.Read(func(s State) {
			require.True(t, s.Locks.HeldWithToken([]byte("L"), int64(g.GetLockAcquire().GetToken())), "%s: the refused release changed the lock", name)
		})
	}
}

func noopFrom(client string, req uint64, at int64) *internalv1.Command {
	return &internalv1.Command{TimeUnixNano: at, Meta: &concordv1.WriteMeta{ClientId: client, RequestId: req}, Op: &internalv1.Command_Noop{Noop: &internalv1.Noop{}}}
}

func TestDedupeWindowAndIdleExpiry(t *testing.T) {
	f := New(Config{})
	idx := uint64(0)
	// Within the minimum age, results beyond the count window are kept.
	for i := 0; i < DedupeWindow+10; i++ {
		idx++
		apply(t, f, idx, noopFrom("c", uint64(i), 1))
	}
	require.Equal(t, DedupeWindow+10, f.dedupe.len())
	_, _, remembered := f.dedupe.lookup("c", 0, 1)
	require.True(t, remembered, "a young result stays although the window is full")

	// Once they are old, only the window's worth remains.
	idx++
	apply(t, f, idx, noopFrom("c", uint64(DedupeWindow+10), 1+DedupeMinAgeNanos+1))
	require.Equal(t, DedupeWindow, f.dedupe.len())
	_, _, remembered = f.dedupe.lookup("c", 5, 1)
	require.False(t, remembered, "the oldest IDs leave the window")
	_, _, remembered = f.dedupe.lookup("c", uint64(DedupeWindow+9), 1)
	require.True(t, remembered)

	// Time passes beyond the idle bound and an index crosses a sweep.
	next := (idx/sweepEvery + 1) * sweepEvery
	apply(t, f, next, &internalv1.Command{TimeUnixNano: 3 + DedupeMinAgeNanos + DedupeIdleNanos, Op: &internalv1.Command_Noop{Noop: &internalv1.Noop{}}})
	require.Zero(t, f.dedupe.len())
}

func TestDedupeCapHoldsEvenForYoungResults(t *testing.T) {
	f := New(Config{})
	for i := 0; i < DedupeMaxWindow+5; i++ {
		apply(t, f, uint64(i+1), noopFrom("c", uint64(i), 1))
	}
	require.Equal(t, DedupeMaxWindow, f.dedupe.len())
}

func TestSessionEndDeletesBoundKeysAndEmitsEvents(t *testing.T) {
	f := New(Config{})
	res := apply(t, f, 1, &internalv1.Command{Op: &internalv1.Command_CreateSession{CreateSession: &internalv1.CreateSession{TtlMs: 5000}}})
	id := res.GetCreateSession().GetId()
	require.EqualValues(t, 1, id)
	res = apply(t, f, 2, &internalv1.Command{Op: &internalv1.Command_Put{Put: &concordv1.PutRequest{Key: []byte("eph"), Session: id}}})
	require.NoError(t, ResultError(res))
	apply(t, f, 3, &internalv1.Command{Op: &internalv1.Command_ExpireSessions{ExpireSessions: &internalv1.ExpireSessions{Ids: []int64{id, 999}}}})
	f.Read(func(s State) {
		_, ok := s.KV.Get([]byte("eph"))
		require.False(t, ok)
		require.False(t, s.Sessions.Exists(id))
	})
	evs, _, _, err := f.History().Read(3, kv.Span{}, 0)
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, kv.EventDelete, evs[0].Type)

	res = apply(t, f, 4, &internalv1.Command{Op: &internalv1.Command_RevokeSession{RevokeSession: &internalv1.RevokeSession{Id: id}}})
	require.ErrorIs(t, ResultError(res), session.ErrNotFound)
	res = apply(t, f, 5, &internalv1.Command{Op: &internalv1.Command_Put{Put: &concordv1.PutRequest{Key: []byte("late"), Session: id}}})
	require.ErrorIs(t, ResultError(res), session.ErrNotFound)
}

func TestBadCommandChangesNothing(t *testing.T) {
	f := New(Config{})
	f.ApplyBatch(randomLog(t, 9, 100))
	var before []byte
	f.Read(func(s State) { before = snapshotKV(t, s.KV) })
	res := f.ApplyBatch([]raftnode.Entry{{Index: 101, Type: raftnode.EntryCommand, Data: []byte{0xff, 0x01, 0x02}}})[0].(*internalv1.Result)
	require.ErrorIs(t, ResultError(res), ErrBadCommand)
	res = apply(t, f, 102, &internalv1.Command{})
	require.ErrorIs(t, ResultError(res), ErrBadCommand)
	f.Read(func(s State) { require.Equal(t, before, snapshotKV(t, s.KV)) })

	// A member record without an ID would make every later snapshot
	// unrestorable (restore refuses it as corrupt).
	for i, op := range []*internalv1.Command{
		{Op: &internalv1.Command_PublishMember{PublishMember: &internalv1.PublishMember{Name: "n"}}},
		{Op: &internalv1.Command_RetireMember{RetireMember: &internalv1.RetireMember{}}},
	} {
		res = apply(t, f, uint64(103+i), op)
		require.ErrorIs(t, ResultError(res), ErrBadCommand, "%v", op)
	}
	var buf bytes.Buffer
	_, err := f.CaptureState().WriteTo(&buf)
	require.NoError(t, err)
	_, err = VerifySnapshot(bytes.NewReader(buf.Bytes()))
	require.NoError(t, err, "a refused member command left a record no restore takes")
}

func snapshotKV(t testing.TB, s *kv.Store) []byte {
	var out []byte
	resp, err := s.Range(&concordv1.RangeRequest{Prefix: true}, kv.ReadLimits{})
	require.NoError(t, err)
	for _, kv := range resp.Kvs {
		b, _ := proto.Marshal(kv)
		out = append(out, b...)
	}
	return out
}

func TestWaitApplied(t *testing.T) {
	f := New(Config{})
	done := make(chan error, 1)
	go func() { done <- f.WaitApplied(t.Context(), 3) }()
	apply(t, f, 1, &internalv1.Command{Op: &internalv1.Command_Noop{Noop: &internalv1.Noop{}}})
	select {
	case <-done:
		t.Fatal("returned before index 3 was applied")
	default:
	}
	apply(t, f, 3, &internalv1.Command{Op: &internalv1.Command_Noop{Noop: &internalv1.Noop{}}})
	require.NoError(t, <-done)
}

// A new leader whose clock is an hour ahead must not age dedupe records:
// the elapsed clock only counts time a leader measured within its term.
// (Regression: found by tests/robustness, TestKnownBugDedupeForgets...)
func TestDedupeSurvivesALeaderClockJump(t *testing.T) {
	f := New(Config{})
	put := &internalv1.Command{TimeUnixNano: 1e9, Meta: &concordv1.WriteMeta{ClientId: "c", RequestId: 1},
		Op: &internalv1.Command_Put{Put: &concordv1.PutRequest{Key: []byte("once"), Value: []byte("1")}}}
	first := f.ApplyBatch([]raftnode.Entry{{Index: 1, Term: 1, Type: raftnode.EntryCommand, Data: encode(t, put)}})[0].(*internalv1.Result)
	// Term 2: the leader's clock is an hour ahead; many entries cross a
	// sweep.
	idx := uint64(2)
	for ; idx < 2*sweepEvery; idx++ {
		noop := &internalv1.Command{TimeUnixNano: int64(time.Hour) + int64(idx)*1e6, Op: &internalv1.Command_Noop{Noop: &internalv1.Noop{}}}
		f.ApplyBatch([]raftnode.Entry{{Index: idx, Term: 2, Type: raftnode.EntryCommand, Data: encode(t, noop)}})
	}
	put.TimeUnixNano = int64(time.Hour) + int64(idx)*1e6
	again := f.ApplyBatch([]raftnode.Entry{{Index: idx, Term: 2, Type: raftnode.EntryCommand, Data: encode(t, put)}})[0].(*internalv1.Result)
	require.True(t, proto.Equal(first, again), "the retry was applied again")
	require.Less(t, f.elapsed, int64(10*time.Second), "the jump did not count as elapsed time")
}

// Every operation a command can carry is told apart by opOf, which the
// dedupe table keeps in a byte: the field numbers must stay below 256 and
// distinct.
func TestOpOfNamesEveryOperation(t *testing.T) {
	fields := commandOps.Fields()
	seen := map[uint8]bool{}
	for i := range fields.Len() {
		fd := fields.Get(i)
		require.Less(t, int(fd.Number()), 256, "Command.op field %s", fd.Name())
		cmd := &internalv1.Command{}
		cmd.ProtoReflect().Set(fd, cmd.ProtoReflect().NewField(fd))
		got := opOf(cmd)
		require.EqualValues(t, fd.Number(), got, "Command.op field %s", fd.Name())
		require.False(t, seen[got])
		seen[got] = true
	}
	require.Zero(t, opOf(&internalv1.Command{}))
}
