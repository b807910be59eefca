package fsm

import (
	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/errs"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
	"github.com/concord-dev/concord/internal/lock"
)

// lockLimit returns, from RulesLockLimit, the lock table's admission of
// an acquire under limit (the proposing member's --max-locks; 0 is none):
// one that could take the table's entries past it is refused. The table
// asks it only of an acquire that is valid and takes something new, so a
// resumed grant, a conversion, a try-lock that fails and an acquire of
// what the owner holds or waits for pass whatever the limit.
func (f *FSM) lockLimit(limit int64) func(entries, adds int) error {
	if limit <= 0 || f.rules < RulesLockLimit {
		return nil
	}
	return func(entries, adds int) error {
		if adds > 0 && int64(entries+adds) > limit {
			return errs.Wrapf(ErrQuotaExceeded, "the cluster holds %d locks, grants and waiters and this acquire could add %d; the maximum is %d (--max-locks)",
				entries, adds, limit)
		}
		return nil
	}
}

// applyLock applies the lock commands.
func (f *FSM) applyLock(index uint64, cmd *internalv1.Command) *internalv1.Result {
	nowMs := f.now / 1e6
	switch op := cmd.GetOp().(type) {
	case *internalv1.Command_LockAcquire:
		r := op.LockAcquire
		// Below RulesConversion the conversion field is ignored, as
		// members of a release before it ignore it.
		req := lock.Request{
			Claims: lock.ClaimsFromProto(r.GetClaims()), Session: r.GetSession(), Owner: r.GetOwner(),
			Wait: r.GetWait(), HoldMs: r.GetHoldMs(), ResumeToken: r.GetResumeToken(), Conversion: r.GetConversion() && f.rules >= RulesConversion,
			Admit: f.lockLimit(cmd.GetLockLimit()),
		}
		out, err := f.locks.Acquire(index, nowMs, req)
		if err != nil {
			return ErrorResult(err)
		}
		return &internalv1.Result{Result: &internalv1.Result_LockAcquire{LockAcquire: &concordv1.AcquireResponse{
			Header: header(index), State: lock.StateProto(out.State), Token: out.Token, Waiter: out.Waiter, Position: int64(out.Position),
			Reason: out.Reason, Converted: out.Converted,
		}}}
	case *internalv1.Command_LockRelease:
		r := op.LockRelease
		if err := f.locks.Release(index, nowMs, r.GetNames(), r.GetSession(), r.GetOwner(), r.GetToken()); err != nil {
			return ErrorResult(err)
		}
		return emptyResult()
	case *internalv1.Command_LockCancel:
		r := op.LockCancel
		if err := f.locks.Cancel(index, nowMs, r.GetWaiter(), r.GetSession(), r.GetOwner()); err != nil {
			return ErrorResult(err)
		}
		return emptyResult()
	case *internalv1.Command_LockForceRelease:
		r := op.LockForceRelease
		n, err := f.locks.ForceRelease(index, nowMs, r.GetName(), r.GetToken(), r.GetReason(), r.GetMeta().GetClientId())
		if err != nil {
			return ErrorResult(err)
		}
		return &internalv1.Result{Result: &internalv1.Result_LockForceRelease{LockForceRelease: &concordv1.ForceReleaseResponse{
			Header: header(index), Released: int64(n),
		}}}
	case *internalv1.Command_LockExpireHolds:
		for _, h := range op.LockExpireHolds.GetHolds() {
			f.locks.ExpireHold(index, nowMs, lock.HoldRef{Name: h.GetName(), Token: h.GetToken(), Session: h.GetSession(), Owner: h.GetOwner()})
		}
		return emptyResult()
	case *internalv1.Command_LockCheckpointHolds:
		// Below RulesHoldCheckpoint it changes nothing, as on members of
		// a release before it, which do not know it.
		if f.rules < RulesHoldCheckpoint {
			return ErrorResult(errs.Wrapf(ErrBadCommand, "unknown command at index %d", index))
		}
		for _, h := range op.LockCheckpointHolds.GetHolds() {
			r := h.GetRef()
			f.locks.CheckpointHold(index, nowMs, lock.HoldRef{Name: r.GetName(), Token: r.GetToken(), Session: r.GetSession(), Owner: r.GetOwner()}, h.GetCountedMs())
		}
		return emptyResult()
	}
	return ErrorResult(errs.Wrapf(ErrBadCommand, "not a lock command"))
}
