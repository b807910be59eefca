package fsm

import (
	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/errs"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
)

// applyIDs applies the ID commands.
func (f *FSM) applyIDs(index uint64, cmd *internalv1.Command) *internalv1.Result {
	nowMs := f.now / 1e6
	switch op := cmd.GetOp().(type) {
	case *internalv1.Command_IdLeaseWorker:
		r := op.IdLeaseWorker
		w, err := f.ids.LeaseWorker(nowMs, r.GetPool(), int(r.GetWorkerBits()), r.GetSession(), r.GetOwner(), r.GetGuardMs())
		if err != nil {
			return ErrorResult(err)
		}
		return &internalv1.Result{Result: &internalv1.Result_IdLeaseWorker{IdLeaseWorker: &concordv1.LeaseWorkerResponse{
			Header: header(index), WorkerId: w.ID, HighWaterMs: w.HighWater}}}
	case *internalv1.Command_IdReserveWorker:
		r := op.IdReserveWorker
		hw, err := f.ids.ReserveWorker(nowMs, r.GetPool(), r.GetWorkerId(), r.GetSession(), r.GetOwner(), r.GetUntilMs())
		if err != nil {
			return ErrorResult(err)
		}
		return &internalv1.Result{Result: &internalv1.Result_IdReserveWorker{IdReserveWorker: &concordv1.ReserveWorkerResponse{
			Header: header(index), HighWaterMs: hw}}}
	case *internalv1.Command_IdReleaseWorker:
		r := op.IdReleaseWorker
		if err := f.ids.ReleaseWorker(nowMs, r.GetPool(), r.GetWorkerId(), r.GetSession(), r.GetOwner()); err != nil {
			return ErrorResult(err)
		}
		return emptyResult()
	case *internalv1.Command_IdCreateTag:
		r := op.IdCreateTag
		tg, err := f.ids.CreateTag(nowMs, r.GetTag(), r.GetStart(), r.GetStep())
		if err != nil {
			return ErrorResult(err)
		}
		return &internalv1.Result{Result: &internalv1.Result_IdCreateTag{IdCreateTag: &concordv1.CreateTagResponse{
			Header: header(index), Tag: &concordv1.TagInfo{Tag: tg.Name, Start: tg.Start, Step: tg.Step, Next: tg.Next,
				Fetches: tg.Fetches, CreatedUnixMs: tg.CreatedMs, LastFetchUnixMs: tg.LastMs}}}}
	case *internalv1.Command_IdAllocSegment:
		r := op.IdAllocSegment
		start, end, err := f.ids.AllocSegment(nowMs, r.GetTag(), r.GetCount())
		if err != nil {
			return ErrorResult(err)
		}
		return &internalv1.Result{Result: &internalv1.Result_IdAllocSegment{IdAllocSegment: &concordv1.AllocSegmentResponse{
			Header: header(index), Start: start, End: end}}}
	case *internalv1.Command_IdNextSequence:
		r := op.IdNextSequence
		first, last, err := f.ids.NextSequence(r.GetName(), r.GetN())
		if err != nil {
			return ErrorResult(err)
		}
		return &internalv1.Result{Result: &internalv1.Result_IdNextSequence{IdNextSequence: &concordv1.NextSequenceResponse{
			Header: header(index), First: first, Last: last}}}
	}
	return ErrorResult(errs.Wrapf(ErrBadCommand, "not an ID command"))
}
