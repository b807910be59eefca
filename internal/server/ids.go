package server

import (
	"context"
	"math"
	"strings"
	"time"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/fsm"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
	"github.com/concord-dev/concord/internal/ids"
	"github.com/concord-dev/concord/internal/session"
)

const maxIDNameBytes = 256

func checkIDName(kind, name string) error {
	if name == "" || len(name) > maxIDNameBytes || strings.ContainsRune(name, 0) {
		return errs.Wrapf(ids.ErrInvalid, "%s must be 1 to %d bytes without NUL", kind, maxIDNameBytes)
	}
	return nil
}

// checkWorkerRef refuses, before anything is proposed, a reference to a
// worker ID that no lease could match.
func checkWorkerRef(pool string, id, sess int64, owner string) error {
	if err := checkIDName("pool", pool); err != nil {
		return err
	}
	if err := checkIDName("owner", owner); err != nil {
		return err
	}
	if id < 0 || id >= 1<<ids.MaxWorkerBits {
		return errs.Wrapf(ids.ErrInvalid, "worker ID %d is outside [0, %d)", id, 1<<ids.MaxWorkerBits)
	}
	if sess <= 0 {
		return errs.Wrapf(session.ErrNotFound, "session %d", sess)
	}
	return nil
}

func (s *Server) checkIDRoom(exists func(fsm.State) bool) error {
	var full bool
	s.fsm.Read(func(st fsm.State) { full = !exists(st) && st.IDs.Len() >= s.cfg.Limits.MaxIDObjects })
	if full {
		return errs.Wrapf(ErrQuotaExceeded, "the cluster holds %d ID pools, tags and sequences, the maximum (--max-id-objects)", s.cfg.Limits.MaxIDObjects)
	}
	return nil
}

// LeaseWorker leases a worker ID of a pool to a session.
func (s *Server) LeaseWorker(ctx context.Context, req *concordv1.LeaseWorkerRequest) (*concordv1.LeaseWorkerResponse, error) {
	if err := checkIDName("pool", req.GetPool()); err != nil {
		return nil, err
	}
	if err := checkIDName("owner", req.GetOwner()); err != nil {
		return nil, err
	}
	// Compared in milliseconds: a Duration of a huge guard_ms would wrap.
	if g := req.GetGuardMs(); g < 0 || g > time.Hour.Milliseconds() {
		return nil, errs.Wrapf(ids.ErrInvalid, "guard interval %d ms is outside [0, 1h]", g)
	}
	if b := req.GetWorkerBits(); b < 1 || b > ids.MaxWorkerBits {
		return nil, errs.Wrapf(ids.ErrInvalid, "%d worker bits; give 1 to %d", b, ids.MaxWorkerBits)
	}
	if req.GetSession() <= 0 {
		return nil, errs.Wrapf(session.ErrNotFound, "session %d", req.GetSession())
	}
	// Looked up by name: copying every pool's workers (Pools) on each lease,
	// under the state machine's read lock, cost O(all worker IDs).
	if err := s.checkIDRoom(func(st fsm.State) bool { return st.IDs.HasPool(req.GetPool()) }); err != nil {
		return nil, err
	}
	res, err := s.write(ctx, req.GetMeta(), &internalv1.Command{Op: &internalv1.Command_IdLeaseWorker{IdLeaseWorker: &concordv1.LeaseWorkerRequest{
		Pool: req.GetPool(), WorkerBits: req.GetWorkerBits(), Session: req.GetSession(), Owner: req.GetOwner(), GuardMs: req.GetGuardMs()}}})
	if err != nil {
		return nil, err
	}
	r := res.GetIdLeaseWorker()
	return &concordv1.LeaseWorkerResponse{Header: s.header(r.GetHeader().GetRevision()), WorkerId: r.GetWorkerId(), HighWaterMs: r.GetHighWaterMs()}, nil
}

// ReserveWorker raises a held worker ID's high-water mark.
func (s *Server) ReserveWorker(ctx context.Context, req *concordv1.ReserveWorkerRequest) (*concordv1.ReserveWorkerResponse, error) {
	if err := checkWorkerRef(req.GetPool(), req.GetWorkerId(), req.GetSession(), req.GetOwner()); err != nil {
		return nil, err
	}
	// The state machine bounds the mark by the leader's clock; this
	// member's refuses what no clock near it would take.
	if u, now := req.GetUntilMs(), s.clock.Now().UnixMilli(); u < 0 || u > now+ids.MaxReserveAheadMs {
		return nil, errs.Wrapf(ids.ErrInvalid, "a reservation until %d ms is outside [0, now+%d ms]", u, int64(ids.MaxReserveAheadMs))
	}
	res, err := s.write(ctx, req.GetMeta(), &internalv1.Command{Op: &internalv1.Command_IdReserveWorker{IdReserveWorker: &concordv1.ReserveWorkerRequest{
		Pool: req.GetPool(), WorkerId: req.GetWorkerId(), Session: req.GetSession(), Owner: req.GetOwner(), UntilMs: req.GetUntilMs()}}})
	if err != nil {
		return nil, err
	}
	r := res.GetIdReserveWorker()
	return &concordv1.ReserveWorkerResponse{Header: s.header(r.GetHeader().GetRevision()), HighWaterMs: r.GetHighWaterMs()}, nil
}

// ReleaseWorker frees a worker ID.
func (s *Server) ReleaseWorker(ctx context.Context, req *concordv1.ReleaseWorkerRequest) (*concordv1.ReleaseWorkerResponse, error) {
	if err := checkWorkerRef(req.GetPool(), req.GetWorkerId(), req.GetSession(), req.GetOwner()); err != nil {
		return nil, err
	}
	if _, err := s.write(ctx, req.GetMeta(), &internalv1.Command{Op: &internalv1.Command_IdReleaseWorker{IdReleaseWorker: &concordv1.ReleaseWorkerRequest{
		Pool: req.GetPool(), WorkerId: req.GetWorkerId(), Session: req.GetSession(), Owner: req.GetOwner()}}}); err != nil {
		return nil, err
	}
	return &concordv1.ReleaseWorkerResponse{Header: s.header(s.fsm.AppliedIndex())}, nil
}

// ListWorkers describes the worker IDs of a pool.
func (s *Server) ListWorkers(ctx context.Context, req *concordv1.ListWorkersRequest) (*concordv1.ListWorkersResponse, error) {
	if err := checkIDName("pool", req.GetPool()); err != nil {
		return nil, err
	}
	if err := s.barrier(ctx, concordv1.Consistency_CONSISTENCY_LINEARIZABLE, 0); err != nil {
		return nil, err
	}
	out := &concordv1.ListWorkersResponse{}
	var rev uint64
	s.fsm.Read(func(st fsm.State) {
		rev = st.Applied
		p, ok := st.IDs.Pool(req.GetPool())
		if !ok {
			return
		}
		out.WorkerBits = int32(p.WorkerBits)
		for id := int64(0); id < int64(1)<<p.WorkerBits; id++ {
			if w := p.Workers[id]; w != nil {
				out.Workers = append(out.Workers, &concordv1.WorkerInfo{Id: w.ID, Session: w.Session, Owner: w.Owner,
					HighWaterMs: w.HighWater, LeasedUnixMs: w.LeasedMs, FreedUnixMs: w.FreedMs})
			}
		}
	})
	out.Header = s.header(rev)
	return out, nil
}

// CreateTag creates a segment tag.
func (s *Server) CreateTag(ctx context.Context, req *concordv1.CreateTagRequest) (*concordv1.CreateTagResponse, error) {
	if err := checkIDName("tag", req.GetTag()); err != nil {
		return nil, err
	}
	if req.GetStep() < 1 || req.GetStep() > s.cfg.Limits.MaxSegmentStep {
		return nil, errs.Wrapf(ids.ErrInvalid, "step %d is outside [1, %d] (--max-segment-step)", req.GetStep(), s.cfg.Limits.MaxSegmentStep)
	}
	if req.GetStart() < 0 {
		return nil, errs.Wrapf(ids.ErrInvalid, "start %d is negative", req.GetStart())
	}
	// A tag hands out IDs below MaxInt64: one at MaxInt64 could hand out
	// none.
	if req.GetStart() > math.MaxInt64-req.GetStep() {
		return nil, errs.Wrapf(ids.ErrInvalid, "start %d leaves no room for one step of %d below %d", req.GetStart(), req.GetStep(), int64(math.MaxInt64))
	}
	if err := s.checkIDRoom(func(st fsm.State) bool { _, ok := st.IDs.Tag(req.GetTag()); return ok }); err != nil {
		return nil, err
	}
	res, err := s.write(ctx, req.GetMeta(), &internalv1.Command{Op: &internalv1.Command_IdCreateTag{IdCreateTag: &concordv1.CreateTagRequest{
		Tag: req.GetTag(), Start: req.GetStart(), Step: req.GetStep()}}})
	if err != nil {
		return nil, err
	}
	r := res.GetIdCreateTag()
	return &concordv1.CreateTagResponse{Header: s.header(r.GetHeader().GetRevision()), Tag: r.GetTag()}, nil
}

// AllocSegment hands out the next count IDs of a tag.
func (s *Server) AllocSegment(ctx context.Context, req *concordv1.AllocSegmentRequest) (*concordv1.AllocSegmentResponse, error) {
	if err := checkIDName("tag", req.GetTag()); err != nil {
		return nil, err
	}
	if req.GetCount() < 1 || req.GetCount() > s.cfg.Limits.MaxSegmentStep {
		return nil, errs.Wrapf(ids.ErrInvalid, "count %d is outside [1, %d] (--max-segment-step)", req.GetCount(), s.cfg.Limits.MaxSegmentStep)
	}
	res, err := s.write(ctx, req.GetMeta(), &internalv1.Command{Op: &internalv1.Command_IdAllocSegment{IdAllocSegment: &concordv1.AllocSegmentRequest{
		Tag: req.GetTag(), Count: req.GetCount()}}})
	if err != nil {
		return nil, err
	}
	r := res.GetIdAllocSegment()
	return &concordv1.AllocSegmentResponse{Header: s.header(r.GetHeader().GetRevision()), Start: r.GetStart(), End: r.GetEnd()}, nil
}

// ListTags describes every tag.
func (s *Server) ListTags(ctx context.Context) (*concordv1.ListTagsResponse, error) {
	if err := s.barrier(ctx, concordv1.Consistency_CONSISTENCY_LINEARIZABLE, 0); err != nil {
		return nil, err
	}
	out := &concordv1.ListTagsResponse{}
	var rev uint64
	s.fsm.Read(func(st fsm.State) {
		rev = st.Applied
		for _, tg := range st.IDs.Tags() {
			out.Tags = append(out.Tags, &concordv1.TagInfo{Tag: tg.Name, Start: tg.Start, Step: tg.Step, Next: tg.Next,
				Fetches: tg.Fetches, CreatedUnixMs: tg.CreatedMs, LastFetchUnixMs: tg.LastMs})
		}
	})
	out.Header = s.header(rev)
	return out, nil
}

func (s *Server) checkCount(n int64) error {
	if n < 1 || n > s.cfg.Limits.MaxIDsPerCall {
		return errs.Wrapf(ids.ErrInvalid, "n %d is outside [1, %d] (--max-ids-per-call)", n, s.cfg.Limits.MaxIDsPerCall)
	}
	return nil
}

// NextSequence returns the next values of a gap-free sequence.
func (s *Server) NextSequence(ctx context.Context, req *concordv1.NextSequenceRequest) (*concordv1.NextSequenceResponse, error) {
	if err := checkIDName("sequence", req.GetName()); err != nil {
		return nil, err
	}
	if err := s.checkCount(req.GetN()); err != nil {
		return nil, err
	}
	if err := s.checkIDRoom(func(st fsm.State) bool { return st.IDs.Sequence(req.GetName()) != 0 }); err != nil {
		return nil, err
	}
	res, err := s.write(ctx, req.GetMeta(), &internalv1.Command{Op: &internalv1.Command_IdNextSequence{IdNextSequence: &concordv1.NextSequenceRequest{
		Name: req.GetName(), N: req.GetN()}}})
	if err != nil {
		return nil, err
	}
	r := res.GetIdNextSequence()
	return &concordv1.NextSequenceResponse{Header: s.header(r.GetHeader().GetRevision()), First: r.GetFirst(), Last: r.GetLast()}, nil
}
