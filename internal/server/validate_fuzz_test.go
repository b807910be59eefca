package server

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/fsm"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
	"github.com/concord-dev/concord/internal/raftnode"
)

func validator() *Server {
	var cfg config.Server
	cfg.SetDefaults()
	cfg.Limits.MaxKeyBytes = 32
	cfg.Limits.MaxValueBytes = 64
	cfg.Limits.MaxTxnOps = 8
	return &Server{cfg: cfg}
}

// FuzzValidateTxn decodes arbitrary bytes as a transaction, validates it as
// the server does before proposing, and applies what passes to a state
// machine. Validation must never panic, its errors must carry a reason, and
// whatever it accepts must apply without panicking.
func FuzzValidateTxn(f *testing.F) {
	seeds := []*concordv1.TxnRequest{
		{Compare: []*concordv1.Compare{{Key: []byte("a"), Target: concordv1.Compare_TARGET_VALUE, Result: concordv1.Compare_RESULT_EQUAL, Value: []byte("x")}},
			Success: []*concordv1.RequestOp{{Request: &concordv1.RequestOp_Put{Put: &concordv1.PutRequest{Key: []byte("a"), Value: []byte("y")}}}},
			Failure: []*concordv1.RequestOp{{Request: &concordv1.RequestOp_Range{Range: &concordv1.RangeRequest{Key: []byte("a"), Prefix: true}}}}},
		{Success: []*concordv1.RequestOp{{Request: &concordv1.RequestOp_Add{Add: &concordv1.AddRequest{Key: []byte("n"), Delta: -1}}}}},
		{Success: []*concordv1.RequestOp{{Request: &concordv1.RequestOp_DeleteRange{DeleteRange: &concordv1.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte{0}}}}}},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		require.NoError(f, err)
		f.Add(b)
	}
	s := validator()
	f.Fuzz(func(t *testing.T, data []byte) {
		var req concordv1.TxnRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		if err := s.checkTxn(&req); err != nil {
			require.NotEqual(t, "INTERNAL", errs.ReasonOf(err, "INTERNAL"), "validation error without a reason: %v", err)
			return
		}
		m := fsm.New(fsm.Config{})
		cmd, err := proto.Marshal(&internalv1.Command{Op: &internalv1.Command_Txn{Txn: &req}})
		require.NoError(t, err)
		res := m.ApplyBatch([]raftnode.Entry{{Index: 1, Type: raftnode.EntryCommand, Data: cmd}})
		require.Len(t, res, 1)
	})
}

// FuzzValidatePut checks the single-key write validation the same way.
func FuzzValidatePut(f *testing.F) {
	f.Add([]byte("k"), []byte("v"), int64(0))
	f.Add([]byte{}, []byte{}, int64(-1))
	s := validator()
	f.Fuzz(func(t *testing.T, key, value []byte, session int64) {
		req := &concordv1.PutRequest{Key: key, Value: value, Session: session}
		err := s.checkPut(req)
		if err != nil {
			require.NotEqual(t, "INTERNAL", errs.ReasonOf(err, "INTERNAL"))
			return
		}
		require.NotEmpty(t, key)
		require.LessOrEqual(t, len(key), 32)
		require.LessOrEqual(t, len(value), 64)
	})
}

// FuzzAcquireCheckAgreesWithStateMachine: a member refuses an acquire's
// shape before proposing it (checkAcquireShape), so that no refused request
// costs a log entry. Whatever the state machine refuses for its shape
// (INVALID_LOCK_REQUEST, TOO_MANY_PERMITS) on a table where the session
// lives and nothing is held, the member's check must have refused first;
// and the check must never panic nor refuse without a reason.
func FuzzAcquireCheckAgreesWithStateMachine(f *testing.F) {
	f.Add("a", int32(1), int32(0), int64(1), int64(1), "b", int32(1), int32(0), int64(1), int64(1), true, "o", int64(1), int64(0), true)
	f.Add("s", int32(3), int32(0), int64(2), int64(3), "", int32(0), int32(0), int64(0), int64(0), false, "o", int64(1), int64(100), false)
	f.Add("rw", int32(2), int32(2), int64(1), int64(0), "rw", int32(2), int32(1), int64(1), int64(0), true, "", int64(1), int64(-1), true)
	f.Add("s", int32(3), int32(0), int64(0), int64(1<<31), "m", int32(1), int32(0), int64(0), int64(0), true, "o", int64(0), int64(5), true)
	s := validator()
	f.Fuzz(func(t *testing.T, n1 string, k1, m1 int32, p1, c1 int64, n2 string, k2, m2 int32, p2, c2 int64, two bool, owner string, sess, holdMs int64, wait bool) {
		claims := []*concordv1.LockClaim{{Name: n1, Kind: concordv1.LockKind(k1), Mode: concordv1.LockMode(m1), Permits: p1, Capacity: c1}}
		if two {
			claims = append(claims, &concordv1.LockClaim{Name: n2, Kind: concordv1.LockKind(k2), Mode: concordv1.LockMode(m2), Permits: p2, Capacity: c2})
		}
		req := &concordv1.AcquireRequest{Claims: claims, Session: sess, Owner: owner, Wait: wait, HoldMs: holdMs}
		checkErr := s.checkAcquireShape(req)
		if checkErr != nil {
			require.NotEqual(t, "INTERNAL", errs.ReasonOf(checkErr, "INTERNAL"), "a refusal without a reason: %v", checkErr)
		}
		m := fsm.New(fsm.Config{})
		create, err := proto.Marshal(&internalv1.Command{Op: &internalv1.Command_CreateSession{CreateSession: &internalv1.CreateSession{TtlMs: 60_000}}})
		require.NoError(t, err)
		acquire, err := proto.Marshal(&internalv1.Command{Op: &internalv1.Command_LockAcquire{LockAcquire: req}})
		if err != nil {
			return // not UTF-8: the API's decoder refuses it before any check
		}
		res := m.ApplyBatch([]raftnode.Entry{
			{Index: 1, Type: raftnode.EntryCommand, Data: create}, // session 1
			{Index: 2, Type: raftnode.EntryCommand, Data: acquire},
		})
		require.Len(t, res, 2)
		out, ok := res[1].(*internalv1.Result)
		require.True(t, ok, "%T", res[1])
		if r := out.GetError().GetReason(); r == "INVALID_LOCK_REQUEST" || r == "TOO_MANY_PERMITS" {
			require.Error(t, checkErr, "the state machine refused the acquire's shape (%s: %s) after the member let it through",
				r, out.GetError().GetMessage())
		}
	})
}
