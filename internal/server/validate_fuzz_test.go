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
