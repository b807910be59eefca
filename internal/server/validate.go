package server

import (
	"fmt"
	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/kv"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
)

// Validation happens before anything is proposed, so bad input never
// reaches the log. The state machine re-checks what is structural (empty
// keys, bad compares) because it must never trust its input either.

func (s *Server) checkKey(key []byte) error {
	if len(key) == 0 {
		return kv.ErrEmptyKey
	}
	if len(key) > s.cfg.Limits.MaxKeyBytes {
		return errs.Wrapf(kv.ErrKeyTooLarge, "key is %d bytes; the limit is %d (--max-key-bytes)", len(key), s.cfg.Limits.MaxKeyBytes)
	}
	return nil
}

func (s *Server) checkValue(v []byte) error {
	if len(v) > s.cfg.Limits.MaxValueBytes {
		return errs.Wrapf(kv.ErrValueTooLarge, "value is %d bytes; the limit is %d (--max-value-bytes)", len(v), s.cfg.Limits.MaxValueBytes)
	}
	return nil
}

func (s *Server) checkSpan(key, rangeEnd []byte, prefix bool) error {
	if len(key) > s.cfg.Limits.MaxKeyBytes || len(rangeEnd) > s.cfg.Limits.MaxKeyBytes {
		return errs.Wrapf(kv.ErrKeyTooLarge, "range bounds are limited to %d bytes", s.cfg.Limits.MaxKeyBytes)
	}
	_, err := kv.SpanOf(key, rangeEnd, prefix)
	return err
}

func (s *Server) checkSession(id int64) error {
	if id < 0 {
		return errs.Wrapf(ErrInvalidArgument, "session %d is negative", id)
	}
	return nil
}

func (s *Server) checkPut(r *concordv1.PutRequest) error {
	if err := s.checkKey(r.GetKey()); err != nil {
		return err
	}
	if err := s.checkValue(r.GetValue()); err != nil {
		return err
	}
	return s.checkSession(r.GetSession())
}

func (s *Server) checkDelete(r *concordv1.DeleteRangeRequest) error {
	return s.checkSpan(r.GetKey(), r.GetRangeEnd(), r.GetPrefix())
}

func (s *Server) checkAdd(r *concordv1.AddRequest) error {
	if err := s.checkKey(r.GetKey()); err != nil {
		return err
	}
	if r.Min != nil && r.Max != nil && r.GetMin() > r.GetMax() {
		return errs.Wrapf(ErrInvalidArgument, "min %d is above max %d", r.GetMin(), r.GetMax())
	}
	return s.checkSession(r.GetSession())
}

func (s *Server) checkRange(r *concordv1.RangeRequest) error {
	if r.GetLimit() < 0 {
		return errs.Wrapf(ErrInvalidArgument, "limit %d is negative", r.GetLimit())
	}
	return s.checkSpan(r.GetKey(), r.GetRangeEnd(), r.GetPrefix())
}

func (s *Server) checkTxn(r *concordv1.TxnRequest) error {
	max := s.cfg.Limits.MaxTxnOps
	if len(r.GetCompare()) > max || len(r.GetSuccess()) > max || len(r.GetFailure()) > max {
		return errs.Wrapf(kv.ErrTooManyOps, "%d compares, %d success and %d failure operations; the limit is %d each (--max-txn-ops)",
			len(r.GetCompare()), len(r.GetSuccess()), len(r.GetFailure()), max)
	}
	for i, c := range r.GetCompare() {
		// Errors keep their own reason (EMPTY_KEY, KEY_TOO_LARGE, ...):
		// the same key is refused the same way in a put and in a
		// transaction.
		if err := s.checkKey(c.GetKey()); err != nil {
			return fmt.Errorf("compare %d: %w", i, err)
		}
		if err := checkCompare(c); err != nil {
			return fmt.Errorf("compare %d: %w", i, err)
		}
		if err := s.checkValue(c.GetValue()); err != nil {
			return fmt.Errorf("compare %d: %w", i, err)
		}
	}
	total := 0
	for _, ops := range [][]*concordv1.RequestOp{r.GetSuccess(), r.GetFailure()} {
		for i, op := range ops {
			var err error
			switch o := op.GetRequest().(type) {
			case *concordv1.RequestOp_Range:
				err = s.checkRange(o.Range)
			case *concordv1.RequestOp_Put:
				err = s.checkPut(o.Put)
				total += len(o.Put.GetValue())
			case *concordv1.RequestOp_DeleteRange:
				err = s.checkDelete(o.DeleteRange)
			case *concordv1.RequestOp_Add:
				err = s.checkAdd(o.Add)
			default:
				err = kv.ErrEmptyOp
			}
			if err != nil {
				return fmt.Errorf("operation %d: %w", i, err)
			}
		}
	}
	if total > s.cfg.Limits.MaxRequestBytes {
		return errs.Wrapf(ErrRequestTooLarge, "transaction writes %d bytes; the limit is %d (--max-request-bytes)", total, s.cfg.Limits.MaxRequestBytes)
	}
	return nil
}

// checkCompare refuses a compare the state machine would refuse, before it
// is proposed: the state machine evaluates compares in order and stops at
// the first false one, so a malformed compare behind it would otherwise
// pass unnoticed (and its transaction's else branch apply).
func checkCompare(c *concordv1.Compare) error {
	switch c.GetTarget() {
	case concordv1.Compare_TARGET_VALUE, concordv1.Compare_TARGET_VERSION,
		concordv1.Compare_TARGET_CREATE_REVISION, concordv1.Compare_TARGET_MOD_REVISION:
	case concordv1.Compare_TARGET_LOCK_TOKEN:
		if r := c.GetResult(); r != concordv1.Compare_RESULT_EQUAL && r != concordv1.Compare_RESULT_NOT_EQUAL {
			return errs.Wrapf(kv.ErrInvalidCompare, "a lock token compare takes EQUAL or NOT_EQUAL, not %s", r)
		}
	default:
		return errs.Wrapf(kv.ErrInvalidCompare, "target %s is not one of VALUE, VERSION, CREATE_REVISION, MOD_REVISION, LOCK_TOKEN", c.GetTarget())
	}
	switch c.GetResult() {
	case concordv1.Compare_RESULT_EQUAL, concordv1.Compare_RESULT_NOT_EQUAL, concordv1.Compare_RESULT_GREATER, concordv1.Compare_RESULT_LESS:
		return nil
	}
	return errs.Wrapf(kv.ErrInvalidCompare, "result %s is not one of EQUAL, NOT_EQUAL, GREATER, LESS", c.GetResult())
}

func nameOK(name string) bool {
	if name == "" || len(name) > 63 {
		return false
	}
	for i, r := range name {
		alnum := (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
		if !alnum && (i == 0 || (r != '.' && r != '_' && r != '-')) {
			return false
		}
	}
	return true
}
