package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/fsm"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
	"github.com/concord-dev/concord/internal/lock"
	"github.com/concord-dev/concord/internal/raftnode"
	"github.com/concord-dev/concord/internal/session"
)

// maxOwnerBytes bounds a lock owner's identity.
const maxOwnerBytes = 256

// maxListLocks bounds a page of ListLocks (its default too); a larger
// limit gets this many, with more set when there are others.
const maxListLocks = 1000

func (s *Server) checkLockName(name string) error {
	if name == "" {
		return errs.Wrapf(lock.ErrInvalidClaim, "empty lock name")
	}
	if len(name) > s.cfg.Limits.MaxKeyBytes {
		return errs.Wrapf(lock.ErrInvalidClaim, "lock name is %d bytes; the limit is %d (--max-key-bytes)", len(name), s.cfg.Limits.MaxKeyBytes)
	}
	return nil
}

func (s *Server) checkAcquire(req *concordv1.AcquireRequest, confirmed bool) error {
	if err := s.checkAcquireShape(req); err != nil {
		return err
	}
	if req.GetResumeToken() != 0 || req.GetResumeWaiter() != 0 {
		return nil // follows what exists: adds nothing
	}
	if s.retryOfApplied(req.GetMeta()) {
		// A retry of an applied acquire is answered as the first time
		// (even when its grant has ended since): refusing it here would
		// tell the caller it never took effect.
		return nil
	}
	if req.GetConversion() && s.fsm.RulesVersion() >= fsm.RulesConversion {
		// Converts the owner's grant in place, or takes nothing when the
		// grant has ended (and never queues): it adds nothing either way.
		// Below that rules version it is an acquire like any other.
		return nil
	}
	return s.checkLockQuota(req, confirmed)
}

// checkAcquireShape refuses what the state machine would refuse whatever
// it holds, and more (names, owners and hold times past the member's
// limits, no session), before anything is proposed.
func (s *Server) checkAcquireShape(req *concordv1.AcquireRequest) error {
	if len(req.GetClaims()) == 0 || len(req.GetClaims()) > lock.MaxClaims {
		return errs.Wrapf(lock.ErrInvalidClaim, "%d claims; give 1 to %d", len(req.GetClaims()), lock.MaxClaims)
	}
	for _, c := range req.GetClaims() {
		if err := s.checkLockName(c.GetName()); err != nil {
			return err
		}
	}
	if req.GetOwner() == "" || len(req.GetOwner()) > maxOwnerBytes {
		return errs.Wrapf(lock.ErrInvalidClaim, "owner must be 1 to %d bytes", maxOwnerBytes)
	}
	if req.GetSession() <= 0 {
		return errs.Wrapf(lock.ErrInvalidClaim, "a lock needs a session")
	}
	// Compared in milliseconds: a Duration of a huge hold_ms would wrap.
	if ms := req.GetHoldMs(); ms < 0 || ms > s.cfg.Limits.MaxSessionTTL.Milliseconds() {
		return errs.Wrapf(lock.ErrInvalidClaim, "hold time %d ms is outside [0, %s]", ms, s.cfg.Limits.MaxSessionTTL)
	}
	// The shape of the claims is checked here as the state machine checks
	// it, so that a request it would refuse whatever the table holds is
	// refused before anything is proposed.
	return lock.Validate(lockRequest(req))
}

// lockRequest is req as the lock table takes it (without Admit, which the
// state machine adds).
func lockRequest(req *concordv1.AcquireRequest) lock.Request {
	return lock.Request{Claims: lock.ClaimsFromProto(req.GetClaims()), Session: req.GetSession(),
		Owner: req.GetOwner(), Wait: req.GetWait(), HoldMs: req.GetHoldMs(), ResumeToken: req.GetResumeToken(),
		Conversion: req.GetConversion()}
}

// checkLockQuota refuses an acquire that could take the lock table's
// entries (lock objects, grants and queued waiters) past --max-locks
// (lock.Table.Additions says what counts), against this member's state
// before proposing. Requests racing each other may pass it together: from
// fsm.RulesLockLimit the state machine checks again, against the limit the
// command carries, and the bound is exact.
//
// The member never refuses from its own state alone; the lock table's
// campaign (tests/robustness, ProfileLockLimit) found the ways that went
// wrong:
//   - This member's state may lack writes acknowledged before the call (a
//     follower behind its leader, a leader just elected or deposed): a
//     refusal read from it could come after the release that made room. A
//     refusal is answered only once confirmed (after a read-index round,
//     see confirmLockLimit); until then checkLockQuota returns
//     errUnconfirmed. The round also brings the member's rules version up
//     to the cluster's (a member restarted from an older snapshot).
//   - From fsm.RulesLockLimit, a request with a request ID (every SDK
//     request) may be sent again under that ID (a retry; the take-back of
//     an SDK that predates this one resent every refused acquire to learn
//     what it took). Refused here, it left nothing for the state machine's
//     dedupe table to answer with, and the attempt sent again was granted
//     once there was room. It goes to the state machine, which refuses it
//     in log order and answers every attempt alike (a refusal then costs a
//     log entry). Below that version the state machine does not check,
//     and the confirmed refusal is the member's.
//   - From fsm.RulesLockLimit, a try-lock that names a lock that exists may
//     fail as not acquired, which the state machine answers before the
//     limit: the member leaves it to the state machine, so that the answer
//     is the same whoever gives it. Below that version it is counted, as
//     the only check there is (a shared grant of a held read lock counts).
func (s *Server) checkLockQuota(req *concordv1.AcquireRequest, confirmed bool) error {
	stateMachineChecks := s.fsm.RulesVersion() >= fsm.RulesLockLimit
	var held, adds int
	s.fsm.Read(func(st fsm.State) {
		if stateMachineChecks && !req.GetWait() {
			for _, c := range req.GetClaims() {
				if exists, _ := st.Locks.Involvement(c.GetName(), req.GetSession(), req.GetOwner()); exists {
					return
				}
			}
		}
		held = st.Locks.Entries()
		adds = st.Locks.Additions(req.GetSession(), req.GetOwner(), func(yield func(string) bool) {
			for _, c := range req.GetClaims() {
				if !yield(c.GetName()) {
					return
				}
			}
		})
	})
	if adds == 0 || held+adds <= s.cfg.Limits.MaxLocks {
		return nil
	}
	if meta := req.GetMeta(); stateMachineChecks && meta.GetClientId() != "" && meta.GetRequestId() != 0 {
		return nil
	}
	if !confirmed {
		return errUnconfirmed
	}
	return errs.Wrapf(ErrQuotaExceeded, "the cluster holds %d locks, grants and waiters and this acquire could add %d; the maximum is %d (--max-locks)",
		held, adds, s.cfg.Limits.MaxLocks)
}

// confirmLockLimit prepares an acquire that this member's state put over
// --max-locks (errUnconfirmed) again, once the member has applied every
// write acknowledged before the call: after a read-index round (as a
// linearizable read), the check is answered as it stands. So a refusal
// needs no log entry and reads a state no older than the call, and an
// acquire that fits after all is prepared and proposed as usual.
func (s *Server) confirmLockLimit(ctx context.Context, req *concordv1.AcquireRequest) (prepared[*concordv1.AcquireResponse], error) {
	s.metrics.lockLimitConfirmations.Inc()
	if err := s.barrier(ctx, concordv1.Consistency_CONSISTENCY_LINEARIZABLE, 0); err != nil {
		return prepared[*concordv1.AcquireResponse]{}, err
	}
	return s.prepareAcquireAs(req, true)
}

// checkWaiterRef refuses a reference to a waiter (a cancel) that no waiter
// could match, before anything is proposed.
func checkWaiterRef(waiter uint64, session int64, owner string) error {
	switch {
	case waiter == 0:
		return errs.Wrapf(lock.ErrInvalidClaim, "no waiter named")
	case session <= 0:
		return errs.Wrapf(lock.ErrInvalidClaim, "a waiter belongs to a session")
	case owner == "" || len(owner) > maxOwnerBytes:
		return errs.Wrapf(lock.ErrInvalidClaim, "owner must be 1 to %d bytes", maxOwnerBytes)
	}
	return nil
}

// holdStatus reports whether owner still holds every claimed lock under
// token.
func holdStatus(st fsm.State, req *concordv1.AcquireRequest, token uint64) bool {
	for _, c := range req.GetClaims() {
		if !st.Locks.HoldsLock(c.GetName(), req.GetSession(), req.GetOwner(), token) {
			return false
		}
	}
	return true
}

// judgeGrant answers GRANTED with resp if the grant it carries is still
// held in st, and otherwise LOST at st's applied index with how it ended:
// a member can apply a grant and its end (a force-release, the session's
// expiry, the hold time) before it answers, in one batch or while the
// answer waits for its turn, and a retried acquire is answered with the
// first attempt's GRANTED however long ago that was. Answered GRANTED, the
// client would believe in a grant this member knows to be over, until a
// keep-alive told it. A grant at an index st has not applied (an acquire a
// follower forwarded) is not judged: its end cannot have been applied; the
// leader judged it before answering the follower (judgeForwardedGrant).
func (s *Server) judgeGrant(st fsm.State, req *concordv1.AcquireRequest, resp *concordv1.AcquireResponse) *concordv1.AcquireResponse {
	token := resp.GetToken()
	if resp.GetHeader().GetRevision() > st.Applied || holdStatus(st, req, token) {
		return resp
	}
	reason := lock.ReasonSessionEnded
	if st.Sessions.Exists(req.GetSession()) {
		reason = st.Locks.EndReason(token, req.GetSession(), req.GetOwner())
	}
	// A conversion applied in place keeps its converted token: LOST with
	// converted set says the conversion took the lock and the new grant
	// has ended since, where LOST without it says the grant to convert had
	// ended and the conversion took nothing.
	return &concordv1.AcquireResponse{Header: s.header(st.Applied), State: concordv1.AcquireState_ACQUIRE_STATE_LOST, Token: token,
		Reason: reason, Converted: resp.GetConverted()}
}

// judgeForwardedGrant judges, on the leader, the grant of a follower's
// forwarded acquire as judgeGrant judges its own, right after applying it:
// the follower may get the answer before it has applied the grant itself,
// and then leaves it unjudged (judgeGrant cannot judge a revision it has
// not applied), so a grant that ended in the same batch was answered
// GRANTED. res is the state machine's result, which stays as it is (the
// state machine remembers it for retries).
func (s *Server) judgeForwardedGrant(req *concordv1.AcquireRequest, res *internalv1.Result) *internalv1.Result {
	if h := s.beforeGrantJudged.Load(); h != nil {
		(*h)(req)
	}
	out := res.GetLockAcquire()
	judged := out
	s.fsm.Read(func(st fsm.State) { judged = s.judgeGrant(st, req, out) })
	if judged == out {
		return res
	}
	return &internalv1.Result{Result: &internalv1.Result_LockAcquire{LockAcquire: judged}}
}

// waiterStatus reports whether waiter id is still queued for the request's
// session and owner, and the grant's token if it has been granted to them
// meanwhile. A waiter of another session or owner is neither: a follower
// must never be handed another's grant. The token of a grant to the owner
// is above id (a queued request is granted by a later command); the table
// keeps no record of which waiter a grant came from, so an owner that
// holds the lock under a later token is told of its own grant whatever
// waiter it names.
func waiterStatus(st fsm.State, req *concordv1.AcquireRequest, id uint64) (queued bool, token uint64) {
	name := req.GetClaims()[0].GetName()
	l, ws, ok := st.Locks.Get(name)
	if !ok {
		return false, 0
	}
	for _, w := range ws {
		if w.ID == id {
			return w.Session == req.GetSession() && w.Owner == req.GetOwner(), 0
		}
	}
	for _, h := range l.Holders {
		if h.Session == req.GetSession() && h.Owner == req.GetOwner() && h.Token > id {
			return false, h.Token
		}
	}
	return false, 0
}

// waitEnded is the error of a wait that is no longer queued and holds no
// grant: SESSION_NOT_FOUND when its session has ended (the SDK reports
// ErrSessionExpired), else LOCK_NOT_WAITING: it was granted and the grant
// ended before the call followed it, or it was cancelled, or it is
// another's. The SDK reports the latter as a lost lock, not as an ended
// session.
func waitEnded(st fsm.State, sess int64, format string, args ...any) error {
	if !st.Sessions.Exists(sess) {
		return errs.Wrapf(session.ErrNotFound, "session %d ended: %s", sess, fmt.Sprintf(format, args...))
	}
	return errs.Wrapf(lock.ErrNotWaiting, format, args...)
}

// AcquireLock takes a lock and reports through send: QUEUED (if it waits),
// GRANTED, and, while the stream stays open, LOST when the grant ends other
// than by Release. It returns when the stream's ctx ends, after LOST, or
// after a try-lock's single answer. A member that shuts down ends the stream
// without cancelling the wait: the client resumes on another member, keeping
// its place.
func (s *Server) AcquireLock(ctx context.Context, req *concordv1.AcquireRequest, send func(*concordv1.AcquireResponse) error) error {
	var (
		resp *concordv1.AcquireResponse
		err  error
	)
	if req.GetResumeWaiter() != 0 {
		resp, err = s.resumeWait(ctx, req)
	} else {
		resp, err = s.AcquireNow(ctx, req)
	}
	if err != nil {
		return err
	}
	switch resp.GetState() {
	case concordv1.AcquireState_ACQUIRE_STATE_NOT_ACQUIRED, concordv1.AcquireState_ACQUIRE_STATE_LOST:
		return send(resp)
	case concordv1.AcquireState_ACQUIRE_STATE_QUEUED:
		if err := send(resp); err != nil {
			return err
		}
		token, err := s.awaitGrant(ctx, req, resp.GetWaiter(), resp.GetHeader().GetRevision())
		if err != nil {
			return err
		}
		if token == 0 {
			return s.StreamEnd(ctx)
		}
		if resp, err = s.grantAnswer(req, token); err != nil {
			return err
		}
		if resp.GetState() == concordv1.AcquireState_ACQUIRE_STATE_LOST {
			return send(resp)
		}
	}
	if err := send(resp); err != nil {
		return err
	}
	if !req.GetWait() && req.GetResumeToken() == 0 {
		return nil
	}
	return s.watchGrant(ctx, req, resp.GetToken(), send)
}

// AcquireNow applies an acquire and answers at once: GRANTED,
// NOT_ACQUIRED, LOST, or QUEUED with the waiter's ID and place. A queued
// caller follows its wait with AcquireLock and the same owner, which keeps
// its place. The KV.Batch stream serves acquires this way.
func (s *Server) AcquireNow(ctx context.Context, req *concordv1.AcquireRequest) (*concordv1.AcquireResponse, error) {
	p, err := s.prepareAcquire(req)
	if errors.Is(err, errUnconfirmed) {
		p, err = s.confirmLockLimit(ctx, req)
	}
	return commit(ctx, s, p, err)
}

// StartAcquireNow is AcquireNow without waiting, as start describes.
func (s *Server) StartAcquireNow(ctx context.Context, req *concordv1.AcquireRequest, done func(*concordv1.AcquireResponse, error)) bool {
	return start(ctx, s, s.prepareAcquire, req, done)
}

func (s *Server) prepareAcquire(req *concordv1.AcquireRequest) (prepared[*concordv1.AcquireResponse], error) {
	return s.prepareAcquireAs(req, false)
}

// prepareAcquireAs prepares an acquire; confirmed says whether this
// member's state is known to hold every write acknowledged before the call
// (checkLockQuota).
func (s *Server) prepareAcquireAs(req *concordv1.AcquireRequest, confirmed bool) (prepared[*concordv1.AcquireResponse], error) {
	var p prepared[*concordv1.AcquireResponse]
	if req.GetResumeWaiter() != 0 {
		// Following a wait writes nothing (AwaitWaiter, AcquireLock); an
		// acquire that named one would be applied as a new request, and
		// past --max-locks, which checkAcquire waives for followers.
		return p, errs.Wrapf(lock.ErrInvalidClaim, "resume_waiter follows a queued acquire: send it as a lock wait, or on Lock.Acquire")
	}
	if err := s.checkAcquire(req, confirmed); err != nil {
		return p, err
	}
	p.cmd = &internalv1.Command{Meta: req.GetMeta(), LockLimit: int64(s.cfg.Limits.MaxLocks), Op: &internalv1.Command_LockAcquire{LockAcquire: acquireCommand(req)}}
	p.answer = func(res *internalv1.Result) *concordv1.AcquireResponse {
		out := res.GetLockAcquire()
		resp := &concordv1.AcquireResponse{Header: s.header(out.GetHeader().GetRevision()), State: out.GetState(),
			Token: out.GetToken(), Waiter: out.GetWaiter(), Position: out.GetPosition(), Reason: out.GetReason(), Converted: out.GetConverted()}
		if resp.GetState() != concordv1.AcquireState_ACQUIRE_STATE_GRANTED {
			return resp
		}
		if h := s.beforeGrantJudged.Load(); h != nil {
			(*h)(req)
		}
		// On a leader's batch stream this runs on the state machine's
		// goroutine, after the batch's apply: the read does not wait.
		s.fsm.Read(func(st fsm.State) { resp = s.judgeGrant(st, req, resp) })
		return resp
	}
	return p, nil
}

// resumeWait answers a request to follow a queued waiter: QUEUED with its
// place, once this member has applied the command that queued it (the
// waiter's ID is that command's index). Nothing is written; awaitGrant
// then reports the grant, or that the waiter left the queue.
func (s *Server) resumeWait(ctx context.Context, req *concordv1.AcquireRequest) (*concordv1.AcquireResponse, error) {
	if err := s.checkAcquire(req, true); err != nil {
		return nil, err
	}
	id := req.GetResumeWaiter()
	if err := s.waitCommitted(ctx, id, func(committed uint64) error {
		return errs.Wrapf(lock.ErrNotWaiting, "waiter %d: no such request has been committed", id)
	}); err != nil {
		return nil, err
	}
	resp := &concordv1.AcquireResponse{State: concordv1.AcquireState_ACQUIRE_STATE_QUEUED, Waiter: id, Position: -1}
	var ended error
	s.fsm.Read(func(st fsm.State) {
		resp.Header = s.header(st.Applied)
		queued, token := waiterStatus(st, req, id)
		switch {
		case queued:
			_, ws, _ := st.Locks.Get(req.GetClaims()[0].GetName())
			for i, w := range ws {
				if w.ID == id {
					resp.Position = int64(i)
				}
			}
		case token == 0:
			ended = waitEnded(st, req.GetSession(), "waiter %d is not queued for this session and owner (granted and ended, cancelled, or another's)", id)
		}
	})
	if ended != nil {
		return nil, ended
	}
	return resp, nil
}

// AwaitWaiter follows a queued acquire (req.ResumeWaiter) until it is
// granted (GRANTED with the token), leaves the queue (an error), or ctx
// ends (QUEUED with its place: the caller follows again). Nothing is
// written. KV.Batch's lock_wait calls run it.
func (s *Server) AwaitWaiter(ctx context.Context, req *concordv1.AcquireRequest) (*concordv1.AcquireResponse, error) {
	if req.GetResumeWaiter() == 0 {
		return nil, errs.Wrapf(lock.ErrInvalidClaim, "a lock wait names the waiter it follows (resume_waiter)")
	}
	resp, err := s.resumeWait(ctx, req)
	if err != nil {
		return nil, err
	}
	token, err := s.awaitGrant(ctx, req, resp.GetWaiter(), resp.GetHeader().GetRevision())
	if err != nil {
		return nil, err
	}
	if token == 0 {
		return resp, nil
	}
	return s.grantAnswer(req, token)
}

// grantAnswer answers a wait whose waiter was granted token: GRANTED if
// the grant still holds at this member's applied index (the answer's
// revision), else LOST with how it ended (judgeGrant), or SESSION_NOT_FOUND
// once the session has ended, as for a wait that follows it.
func (s *Server) grantAnswer(req *concordv1.AcquireRequest, token uint64) (*concordv1.AcquireResponse, error) {
	var resp *concordv1.AcquireResponse
	var err error
	s.fsm.Read(func(st fsm.State) {
		if !st.Sessions.Exists(req.GetSession()) {
			err = errs.Wrapf(session.ErrNotFound, "session %d ended, and its grant (token %d) with it", req.GetSession(), token)
			return
		}
		resp = s.judgeGrant(st, req, &concordv1.AcquireResponse{Header: s.header(st.Applied), State: concordv1.AcquireState_ACQUIRE_STATE_GRANTED, Token: token})
	})
	return resp, err
}

// LostGrants names which of the grants session thought it held have ended
// as of this member's applied index: those of tokens (any grant of the
// session with the token), and those of held (each by token and owner).
// Tokens above the applied index are not judged.
func (s *Server) LostGrants(session int64, tokens []uint64, held []*concordv1.HeldGrant) []*concordv1.LostGrant {
	if len(tokens) == 0 && len(held) == 0 {
		return nil
	}
	var out []*concordv1.LostGrant
	s.fsm.Read(func(st fsm.State) {
		for _, t := range tokens {
			if t == 0 || t > st.Applied || st.Locks.Holding(session, t) {
				continue
			}
			out = append(out, &concordv1.LostGrant{Token: t, Reason: st.Locks.EndReason(t, session, "")})
		}
		for _, h := range held {
			t := h.GetToken()
			if t == 0 || t > st.Applied || st.Locks.HoldsGrant(session, h.GetOwner(), t) {
				continue
			}
			out = append(out, &concordv1.LostGrant{Token: t, Owner: h.GetOwner(), Reason: st.Locks.EndReason(t, session, h.GetOwner())})
		}
	})
	return out
}

func acquireCommand(r *concordv1.AcquireRequest) *concordv1.AcquireRequest {
	return &concordv1.AcquireRequest{Claims: r.GetClaims(), Session: r.GetSession(), Owner: r.GetOwner(),
		Wait: r.GetWait(), HoldMs: r.GetHoldMs(), ResumeToken: r.GetResumeToken(), Conversion: r.GetConversion()}
}

// awaitGrant waits until waiter id is granted (returning its token) or
// leaves the queue (an error), or ctx ends (0, nil).
func (s *Server) awaitGrant(ctx context.Context, req *concordv1.AcquireRequest, id, rev uint64) (uint64, error) {
	ch := s.locks.waitFor(id)
	defer s.locks.forgetWaiter(id, ch)
	// The grant may have applied before we registered: look at the state
	// once this member has applied the command that queued us.
	if err := s.waitApplied(ctx, rev); err != nil {
		return 0, err
	}
	var queued bool
	var token uint64
	var ended error
	status := func(why string) {
		s.fsm.Read(func(st fsm.State) {
			if queued, token = waiterStatus(st, req, id); !queued && token == 0 {
				ended = waitEnded(st, req.GetSession(), "waiter %d left the queue: %s", id, why)
			}
		})
	}
	status("granted and ended before this call followed it, or cancelled")
	for {
		if token != 0 {
			return token, nil
		}
		if ended != nil {
			return 0, ended
		}
		select {
		case ev := <-ch:
			if ev.granted {
				if ev.firstToHandOff() {
					s.locks.m.handoffSeconds.Observe(time.Since(ev.at).Seconds())
				}
				return ev.token, nil
			}
			status(ev.reason)
		case <-ctx.Done():
			return 0, nil
		case <-s.stopCh:
			return 0, raftnode.ErrStopped
		}
	}
}

// watchGrant keeps the stream open while the grant lives and sends LOST if
// it ends other than by the owner's release.
func (s *Server) watchGrant(ctx context.Context, req *concordv1.AcquireRequest, token uint64, send func(*concordv1.AcquireResponse) error) error {
	name := req.GetClaims()[0].GetName()
	key := holdKey(name, token, req.GetSession(), req.GetOwner())
	ch := s.locks.watchHold(key)
	defer s.locks.forgetHold(key, ch)
	// The grant is the command at index token: a member that serves the
	// stream without leading may not have applied it yet, and would take
	// it for ended.
	if err := s.waitApplied(ctx, token); err != nil {
		if ctx.Err() != nil {
			return s.StreamEnd(ctx)
		}
		return err
	}
	for {
		var held bool
		var reason string
		s.fsm.Read(func(st fsm.State) {
			if held = holdStatus(st, req, token); !held {
				reason = st.Locks.EndReason(token, req.GetSession(), req.GetOwner())
			}
		})
		if !held {
			// It ended before the stream followed it (or in a snapshot
			// this member installed): the table no longer knows how, so
			// the client is told, even if it released the grant itself.
			return s.sendLost(token, reason, send)
		}
		select {
		case ev := <-ch:
			if ev.replaced {
				continue
			}
			if ev.reason == lock.ReasonReleased || ev.reason == lock.ReasonUpgraded {
				// Ended by its owner: the upgrade's write grant is
				// followed under its own token.
				return nil
			}
			return s.sendLost(token, ev.reason, send)
		case <-ctx.Done():
			return s.StreamEnd(ctx)
		case <-s.stopCh:
			return raftnode.ErrStopped
		}
	}
}

func (s *Server) sendLost(token uint64, reason string, send func(*concordv1.AcquireResponse) error) error {
	return send(&concordv1.AcquireResponse{Header: s.header(s.fsm.AppliedIndex()), State: concordv1.AcquireState_ACQUIRE_STATE_LOST, Token: token, Reason: reason})
}

// ReleaseLock ends the caller's grant.
func (s *Server) ReleaseLock(ctx context.Context, req *concordv1.ReleaseRequest) (*concordv1.ReleaseResponse, error) {
	p, err := s.prepareRelease(req)
	return commit(ctx, s, p, err)
}

// StartRelease is ReleaseLock without waiting, as start describes.
func (s *Server) StartRelease(ctx context.Context, req *concordv1.ReleaseRequest, done func(*concordv1.ReleaseResponse, error)) bool {
	return start(ctx, s, s.prepareRelease, req, done)
}

func (s *Server) prepareRelease(req *concordv1.ReleaseRequest) (prepared[*concordv1.ReleaseResponse], error) {
	var p prepared[*concordv1.ReleaseResponse]
	if len(req.GetNames()) == 0 || len(req.GetNames()) > lock.MaxClaims {
		return p, errs.Wrapf(lock.ErrInvalidClaim, "%d locks to release", len(req.GetNames()))
	}
	for i, n := range req.GetNames() {
		if err := s.checkLockName(n); err != nil {
			return p, err
		}
		if slices.Contains(req.GetNames()[:i], n) {
			return p, errs.Wrapf(lock.ErrInvalidClaim, "lock %q named twice", n)
		}
	}
	if req.GetOwner() == "" || len(req.GetOwner()) > maxOwnerBytes {
		return p, errs.Wrapf(lock.ErrInvalidClaim, "owner must be 1 to %d bytes", maxOwnerBytes)
	}
	if req.GetSession() <= 0 {
		return p, errs.Wrapf(lock.ErrInvalidClaim, "a release names the session that holds the lock")
	}
	p.cmd = &internalv1.Command{Meta: req.GetMeta(), Op: &internalv1.Command_LockRelease{LockRelease: &concordv1.ReleaseRequest{
		Names: req.GetNames(), Session: req.GetSession(), Owner: req.GetOwner(), Token: req.GetToken()}}}
	p.answer = func(*internalv1.Result) *concordv1.ReleaseResponse {
		return &concordv1.ReleaseResponse{Header: s.header(s.fsm.AppliedIndex())}
	}
	return p, nil
}

// CancelWait takes a waiter off the queues.
func (s *Server) CancelWait(ctx context.Context, req *concordv1.CancelWaitRequest) (*concordv1.CancelWaitResponse, error) {
	if err := checkWaiterRef(req.GetWaiter(), req.GetSession(), req.GetOwner()); err != nil {
		return nil, err
	}
	if _, err := s.write(ctx, req.GetMeta(), &internalv1.Command{Op: &internalv1.Command_LockCancel{LockCancel: &concordv1.CancelWaitRequest{
		Waiter: req.GetWaiter(), Session: req.GetSession(), Owner: req.GetOwner()}}}); err != nil {
		return nil, err
	}
	return &concordv1.CancelWaitResponse{Header: s.header(s.fsm.AppliedIndex())}, nil
}

// ForceReleaseLock ends grants on an operator's request; it is recorded.
func (s *Server) ForceReleaseLock(ctx context.Context, req *concordv1.ForceReleaseRequest) (*concordv1.ForceReleaseResponse, error) {
	if err := s.checkLockName(req.GetName()); err != nil {
		return nil, err
	}
	if len(req.GetReason()) > 1024 {
		return nil, errs.Wrapf(ErrInvalidArgument, "reason is %d bytes; the limit is 1024", len(req.GetReason()))
	}
	// The record names the caller by the client ID it sent, kept in the
	// command's body: the command's own meta gets this member's ID when
	// the caller sent none (identify).
	body := &concordv1.ForceReleaseRequest{Name: req.GetName(), Token: req.GetToken(), Reason: req.GetReason()}
	if id := req.GetMeta().GetClientId(); id != "" {
		body.Meta = &concordv1.WriteMeta{ClientId: id}
	}
	before := s.fsm.AppliedIndex()
	res, err := s.write(ctx, req.GetMeta(), &internalv1.Command{Op: &internalv1.Command_LockForceRelease{LockForceRelease: body}})
	if err != nil {
		return nil, err
	}
	r := res.GetLockForceRelease()
	// A retry with the same request ID is answered with the first outcome,
	// applied before this call began: counted and logged once.
	if r.GetHeader().GetRevision() > before {
		s.locks.m.forced.Inc()
		s.log.Warn("lock force-released", "lock", req.GetName(), "token", req.GetToken(), "reason", req.GetReason())
	}
	return &concordv1.ForceReleaseResponse{Header: s.header(r.GetHeader().GetRevision()), Released: r.GetReleased()}, nil
}

func sessionNamer(st fsm.State) func(int64) string {
	return func(id int64) string {
		sess, _ := st.Sessions.Get(id)
		return sess.Name
	}
}

// InspectLock describes a lock.
func (s *Server) InspectLock(ctx context.Context, req *concordv1.InspectLockRequest) (*concordv1.InspectLockResponse, error) {
	if err := s.checkLockName(req.GetName()); err != nil {
		return nil, err
	}
	if err := s.barrier(ctx, req.GetConsistency(), 0); err != nil {
		return nil, err
	}
	out := &concordv1.InspectLockResponse{}
	var rev uint64
	s.fsm.Read(func(st fsm.State) {
		rev = st.Applied
		l, ws, ok := st.Locks.Get(req.GetName())
		if ok {
			out.Lock = lock.InfoProto(l, ws, sessionNamer(st))
		} else {
			out.Lock = &concordv1.LockInfo{Name: req.GetName()}
		}
		var recs []lock.ForceRecord
		for _, f := range st.Locks.Forced() {
			if f.Name == req.GetName() {
				recs = append(recs, f)
			}
		}
		out.ForceReleases = lock.ForceProto(recs)
	})
	out.Header = s.header(rev)
	return out, nil
}

// ListLocks describes the locks whose names start with a prefix.
func (s *Server) ListLocks(ctx context.Context, req *concordv1.ListLocksRequest) (*concordv1.ListLocksResponse, error) {
	if len(req.GetPrefix()) > s.cfg.Limits.MaxKeyBytes || len(req.GetAfter()) > s.cfg.Limits.MaxKeyBytes {
		return nil, errs.Wrapf(lock.ErrInvalidClaim, "prefix or after longer than %d bytes", s.cfg.Limits.MaxKeyBytes)
	}
	if err := s.barrier(ctx, req.GetConsistency(), 0); err != nil {
		return nil, err
	}
	if req.GetLimit() < 0 {
		return nil, errs.Wrapf(ErrInvalidArgument, "limit %d is negative", req.GetLimit())
	}
	limit := int(min(req.GetLimit(), maxListLocks))
	if limit == 0 {
		limit = maxListLocks
	}
	out := &concordv1.ListLocksResponse{}
	var rev uint64
	s.fsm.Read(func(st fsm.State) {
		rev = st.Applied
		names := st.Locks.Names(req.GetPrefix(), req.GetAfter(), limit+1)
		if len(names) > limit {
			names, out.More = names[:limit], true
		}
		for _, n := range names {
			l, ws, _ := st.Locks.Get(n)
			out.Locks = append(out.Locks, lock.InfoProto(l, ws, sessionNamer(st)))
		}
	})
	out.Header = s.header(rev)
	return out, nil
}

// expireHolds proposes the release of grants whose hold time ran out, and
// the checkpoints of what this leader has counted of the others'.
func (s *Server) expireHolds(ctx context.Context) {
	for {
		due, next := s.holds.Due(256)
		if len(due) > 0 {
			refs := make([]*internalv1.LockHoldRef, len(due))
			for i, d := range due {
				refs[i] = &internalv1.LockHoldRef{Name: d.Name, Token: d.Token, Session: d.Session, Owner: d.Owner}
			}
			_, err := s.proposeLocal(ctx, &internalv1.Command{Op: &internalv1.Command_LockExpireHolds{
				LockExpireHolds: &internalv1.ExpireLockHolds{Holds: refs}}})
			if err == nil {
				continue
			}
			s.holds.Retry(due)
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("proposing lock hold expiry failed", "holds", len(due), "err", err)
			next = 50 * time.Millisecond
		}
		if cnext := s.checkpointHolds(ctx); cnext < next {
			next = cnext
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.holds.Wake():
		case <-t.C:
		}
		t.Stop()
	}
}

// checkpointHolds proposes one entry of the checkpoints that are due (256
// grants at most), and returns the time until the next ones: expireHolds
// checks the hold times that ended between entries, so that a pass over
// many grants never holds up their expiry. A checkpoint that fails is not
// retried: the grant's next one follows an interval later, and a leader
// that follows counts from the last one that applied, which only
// lengthens the hold. Below fsm.RulesHoldCheckpoint none is proposed.
func (s *Server) checkpointHolds(ctx context.Context) time.Duration {
	due, next := s.holds.DueCheckpoints(256)
	if len(due) == 0 || s.fsm.RulesVersion() < fsm.RulesHoldCheckpoint {
		return next
	}
	holds := make([]*internalv1.LockHoldCheckpoint, len(due))
	for i, d := range due {
		holds[i] = &internalv1.LockHoldCheckpoint{CountedMs: d.CountedMs,
			Ref: &internalv1.LockHoldRef{Name: d.Ref.Name, Token: d.Ref.Token, Session: d.Ref.Session, Owner: d.Ref.Owner}}
	}
	if _, err := s.proposeLocal(ctx, &internalv1.Command{Op: &internalv1.Command_LockCheckpointHolds{
		LockCheckpointHolds: &internalv1.CheckpointLockHolds{Holds: holds}}}); err != nil {
		if ctx.Err() == nil {
			s.log.Debug("proposing lock hold checkpoints failed", "holds", len(due), "err", err)
		}
		return next
	}
	s.metrics.holdCheckpoints.Add(float64(len(due)))
	return next
}
