package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
)

// LockClaim is one lock an acquire wants.
type LockClaim = concordv1.LockClaim

// LockInfo describes a lock: holders, waiters in queue order.
type LockInfo = concordv1.LockInfo

// LockHolder is one holder of a lock, as an inspection reads it.
type LockHolder = concordv1.LockHolder

// LockWaiter is one queued request, as an inspection reads it.
type LockWaiter = concordv1.LockWaiter

// LockKind is a lock's kind: KindMutex, KindRWLock or KindSemaphore.
type LockKind = concordv1.LockKind

// LockMode is what a read-write claim asks for: ModeShared (read) or
// ModeExclusive (write).
type LockMode = concordv1.LockMode

// ForceReleaseRecord records an operator's force-release.
type ForceReleaseRecord = concordv1.ForceReleaseRecord

// Lock kinds and modes.
const (
	KindMutex     = concordv1.LockKind_LOCK_KIND_MUTEX
	KindRWLock    = concordv1.LockKind_LOCK_KIND_RWLOCK
	KindSemaphore = concordv1.LockKind_LOCK_KIND_SEMAPHORE
	ModeExclusive = concordv1.LockMode_LOCK_MODE_EXCLUSIVE
	ModeShared    = concordv1.LockMode_LOCK_MODE_SHARED
)

var ownerSeq atomic.Uint64

// NewOwner returns an owner identity for a lock handle, unique in this
// client: the client's ID and a counter.
func (c *Client) NewOwner() string {
	return c.clientID + "/" + strconv.FormatUint(ownerSeq.Add(1), 10)
}

// AcquireOptions adjust an acquire.
type AcquireOptions struct {
	// Wait queues the request until granted or ctx ends; without it the
	// acquire is a try-lock that fails at once with ErrLocked.
	Wait bool
	// Hold, when positive, ends the grant after that long even if the
	// session lives (Redisson's leaseTime).
	Hold time.Duration
	// OnQueued, if set, is told the waiter's place in the queue.
	OnQueued func(position int64)
	// Converts, if set, is the grant of the same owner that this acquire
	// converts in place (a read-write upgrade or downgrade; the request is
	// sent with conversion set). A conversion answered with that grant's
	// token (a downgrade) keeps the grant, and the hold clock the server
	// started for it: the new Grant keeps its hold deadline. A new token
	// (an upgrade) is a new grant, timed anew. If the grant had ended on
	// the server before the conversion applied (force-released, its hold
	// time over, before a keep-alive told the SDK), the server takes
	// nothing: the acquire fails with ErrConversionLost (an ErrLockLost)
	// and ends Converts with that cause. A conversion never waits in the
	// queue. Both need the cluster at rules version 2: a cluster still at
	// 1 applies the request as a plain acquire, granted anew or queued
	// (docs/locks.md).
	Converts *Grant
}

// Grant is a held lock. Its Context is cancelled, with ErrLockLost wrapping
// the reason as its cause, the moment the grant can no longer be trusted:
// the session is lost or no longer kept alive (Client.Close), the hold time
// ends, or the server reports the grant gone. Release cancels it too, with
// ErrNotHeld.
type Grant struct {
	Token uint64
	Names []string
	owner string
	sess  *Session
	// holdEnd is when the SDK counts the hold time over (see
	// holdDeadline); zero without one.
	holdEnd time.Time
	ctx     context.Context
	cancel  context.CancelCauseFunc
	done    chan struct{}
	// released: Release ended the grant (released it, or reported it lost).
	released atomic.Bool
	// afterEnd are the functions AfterEnd registered, run when the grant
	// ends; ended is set once they are taken to run, and endRun closed
	// once they have.
	mu       sync.Mutex
	afterEnd []*func()
	ended    bool
	endRun   chan struct{}
}

// Released reports whether Release has ended the grant: released it, or
// reported its loss.
func (g *Grant) Released() bool { return g.released.Load() }

// Context returns the grant's context.
func (g *Grant) Context() context.Context { return g.ctx }

// Lost is closed when the grant is lost or released.
func (g *Grant) Lost() <-chan struct{} { return g.ctx.Done() }

// Err returns why the grant ended: nil while held.
func (g *Grant) Err() error {
	if g.ctx.Err() == nil {
		return nil
	}
	return context.Cause(g.ctx)
}

func (g *Grant) lose(err error) { g.end(err) }

// end ends the grant's Context with cause (unless it has ended already)
// and runs the functions AfterEnd registered, before it returns.
// A second call waits for the first one's functions.
func (g *Grant) end(cause error) {
	g.cancel(cause)
	g.mu.Lock()
	if g.ended {
		run := g.endRun
		g.mu.Unlock()
		<-run
		return
	}
	fs, run := g.afterEnd, make(chan struct{})
	g.afterEnd, g.ended, g.endRun = nil, true, run
	g.mu.Unlock()
	for _, f := range fs {
		(*f)()
	}
	close(run)
}

// AfterEnd arranges for f to run once the grant's Context has ended (its
// cause is set by then), in the call that ends it: before Release, Detach,
// Client.Close or Session.Close return, unlike context.AfterFunc, whose
// function runs later on a goroutine of its own. f must be quick, and must
// neither block nor call the grant's methods; it runs at once if the grant
// has ended already. stop unregisters f; it reports false when f has run
// or is running. The SDK's RWMutex follows its grants with it, so that its
// Context ends exactly when a Mutex's would.
func (g *Grant) AfterEnd(f func()) (stop func() bool) {
	g.mu.Lock()
	if g.ended {
		g.mu.Unlock()
		f()
		return func() bool { return false }
	}
	p := &f
	g.afterEnd = append(g.afterEnd, p)
	g.mu.Unlock()
	return func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		i := slices.Index(g.afterEnd, p)
		if i < 0 {
			return false
		}
		g.afterEnd = slices.Delete(g.afterEnd, i, i+1)
		return true
	}
}

// sessionEnded loses the grant to the end of its session.
func (g *Grant) sessionEnded() {
	g.lose(fmt.Errorf("%w: %s: session %d ended: %w", ErrLockLost, namesOf(g.Names), g.sess.ID(), g.sess.Err()))
}

// AcquireLocks acquires the claimed locks for owner within session: one
// lock, or several mutexes atomically (all or none). With opts.Wait it waits
// in the locks' FIFO queues, across member failures, until granted or ctx
// ends (then the wait is cancelled). An acquire the caller gave up on is
// taken back in the background; the owner's next acquire waits for that.
//
// The acquire goes out on the member's KV.Batch stream, like a put, and is
// answered at once; only a request that has to wait opens a Lock.Acquire
// stream, on which the server pushes the grant. A held grant costs no
// stream: the session's keep-alives carry its token, and the server names
// the grants that ended under it (force-released, or their hold time over).
func (c *Client) AcquireLocks(ctx context.Context, sess *Session, owner string, claims []*LockClaim, opts AcquireOptions) (*Grant, error) {
	if err := sess.Err(); err != nil {
		return nil, sessionGone(err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err // nothing is sent, nothing to take back
	}
	if err := c.awaitAbandoned(ctx, sess.ID(), owner); err != nil {
		return nil, err
	}
	if opts.Hold > 0 {
		// The server holds for whole milliseconds: the SDK counts the
		// same hold, so that the grant's Context never outlives the
		// server's grant (a hold under a millisecond is one).
		opts.Hold = max(opts.Hold.Truncate(time.Millisecond), time.Millisecond)
	}
	req := &concordv1.AcquireRequest{Claims: claims, Session: sess.ID(), Owner: owner, Wait: opts.Wait,
		HoldMs: opts.Hold.Milliseconds(), Conversion: opts.Converts != nil, Meta: c.meta()}
	sent := time.Now()
	resp, err := c.acquireNow(ctx, req)
	if err != nil {
		// A refusal (by --max-locks, say) is taken back only when an
		// earlier attempt may have been applied, which call reports as
		// ErrUnknownOutcome. A plain refusal took nothing, and the
		// take-back sends the acquire again to learn what it took: after
		// a member's refusal, which left no trace in the log, that was
		// a new acquire, granted once there was room and then released
		// (the lock-limit fault campaign saw the lock held meanwhile). A
		// cluster from rules version 4 answers it from the state
		// machine's dedupe table instead.
		if ctx.Err() != nil || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrUnknownOutcome) {
			// The acquire may have been applied: take it back. A
			// conversion taken back ends the grant it converted.
			c.abandon(sess, owner, claims, req, 0, 0)
			if g := opts.Converts; g != nil {
				g.lose(fmt.Errorf("%w: %s (token %d): its conversion was given up, its outcome unknown, and the lock is taken back",
					ErrLockLost, namesOf(g.Names), g.Token))
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if c.ctx.Err() != nil && errors.Is(err, ErrUnknownOutcome) {
			// Close cut the acquire short after it may have been applied
			// (queued, or granted): whatever it did ends with the session,
			// which Close ended, as for an acquire that was waiting.
			return nil, fmt.Errorf("%w: %s: the client closed while the acquire was on its way; its grant or wait, if any, ends when the session expires on the server",
				ErrSessionExpired, claimNames(claims))
		}
		return nil, err
	}
	if g := opts.Converts; g != nil && resp.GetState() == concordv1.AcquireState_ACQUIRE_STATE_LOST {
		if resp.GetConverted() != 0 || resp.GetToken() != 0 {
			// The conversion took the lock (in place, or, on a cluster
			// at rules version 1, anew), and the member had applied the
			// new grant's end before it answered. The state machine's
			// refusal of a conversion of an ended grant carries no token.
			err := fmt.Errorf("%w: %s (token %d): the conversion's grant (token %d) ended before the answer: %s",
				ErrLockLost, namesOf(g.Names), g.Token, resp.GetToken(), resp.GetReason())
			g.lose(err)
			return nil, err
		}
		// The grant to convert had ended on the server, unseen by the
		// SDK so far, and the server took nothing for the conversion.
		err := fmt.Errorf("%w: %s (token %d) had ended on the server before its conversion reached it; nothing was granted",
			ErrConversionLost, namesOf(g.Names), g.Token)
		g.lose(err)
		return nil, err
	}
	// A grant this acquire made carries its index as its token (the
	// answer's revision); another is one the owner held already.
	fresh := resp.GetToken() == resp.GetHeader().GetRevision()
	if g, done, err := c.settle(sess, owner, claims, resp, opts, sent, fresh); done {
		return g, err
	}
	if resp.GetState() != concordv1.AcquireState_ACQUIRE_STATE_QUEUED {
		return nil, fmt.Errorf("%w: acquire answered with state %v", ErrUnavailable, resp.GetState())
	}
	if opts.OnQueued != nil {
		opts.OnQueued(resp.GetPosition())
	}
	return c.awaitGrant(ctx, sess, owner, claims, req, resp.GetWaiter(), opts, sent)
}

// acquireNow sends an acquire and returns the server's first answer.
func (c *Client) acquireNow(ctx context.Context, req *concordv1.AcquireRequest) (*concordv1.AcquireResponse, error) {
	var out *concordv1.AcquireResponse
	err := c.call(ctx, callWrite, func(ctx context.Context, ep *endpoint) error {
		if c.cfg.DisableBatching {
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stream, err := ep.lock.Acquire(sctx, connect.NewRequest(req))
			if err != nil {
				return err
			}
			defer stream.Close()
			if !stream.Receive() {
				if err := stream.Err(); err != nil {
					return err
				}
				return errStreamBroke
			}
			out = stream.Msg()
			return nil
		}
		r, err := ep.batcher.do(ctx, &concordv1.BatchCall{Request: &concordv1.BatchCall_LockAcquire{LockAcquire: req}})
		if err != nil {
			return err
		}
		out = r.GetLockAcquire()
		return nil
	})
	if err == nil {
		c.observe(out.GetHeader())
	}
	return out, err
}

// lockWaitWindow bounds one lock_wait call: the member answers QUEUED at
// its end and the SDK follows again, so a wait never looks like a member
// that stopped answering.
const lockWaitWindow = 10 * time.Second

// awaitGrant follows a queued acquire until the server reports the grant:
// with lock_wait calls on the member's batch stream, or on a Lock.Acquire
// stream when batching is off or the member cannot (with resume_waiter:
// nothing is applied again either way). A broken stream is resumed the
// same way on another member.
func (c *Client) awaitGrant(ctx context.Context, sess *Session, owner string, claims []*LockClaim, req *concordv1.AcquireRequest,
	waiter uint64, opts AcquireOptions, sent time.Time) (*Grant, error) {
	// Follow the waiter without applying the acquire again.
	follow := proto.Clone(req).(*concordv1.AcquireRequest)
	follow.ResumeWaiter, follow.Meta = waiter, nil
	batched := !c.cfg.DisableBatching
	// The wait ends with the session as the SDK counts it (closed,
	// orphaned, or no keep-alive confirmed within its TTL): a grant made
	// later would be refused anyway, and the waiter is taken back now
	// rather than when the cluster expires the session.
	wctx, endWait := context.WithCancel(ctx)
	defer endWait()
	go func() {
		select {
		case <-sess.Done():
			endWait()
		case <-wctx.Done():
		}
	}()
	// clientClosed is the error of a wait the client closed under: it
	// ended its sessions, and nothing can take the wait back (the server
	// cancels it when the session expires). Not ErrClosed: the acquire
	// was applied (it queued), and a grant may come before the expiry.
	clientClosed := func() error {
		return fmt.Errorf("%w: %s: the client closed while the acquire waited; its wait ends when the session expires on the server",
			ErrSessionExpired, claimNames(claims))
	}
	gaveUp := func() error {
		if ctx.Err() == nil && c.ctx.Err() != nil {
			return clientClosed()
		}
		c.abandon(sess, owner, claims, req, follow.GetResumeWaiter(), 0)
		if err := ctx.Err(); err != nil {
			return err
		}
		// Not ErrClosed even after Session.Close: the acquire was
		// applied (it queued), so it had an effect.
		return fmt.Errorf("%w: %s: given up while waiting: %v", ErrSessionExpired, claimNames(claims), sess.Err())
	}
	for backoff := 10 * time.Millisecond; ; backoff = min(2*backoff, 500*time.Millisecond) {
		ep := c.pick()
		var resp *concordv1.AcquireResponse
		var err error
		if batched {
			resp, err = c.waitBatched(wctx, ep, follow)
			if r := reasonOf(err); r == "TOO_MANY_WAITS" || r == "EMPTY_CALL" {
				// This stream follows too many waits already, or the
				// member predates lock_wait: follow on a stream.
				batched = false
				continue
			}
		} else {
			resp, err = c.waitStream(wctx, ep, follow)
		}
		if err == nil && resp != nil {
			// The waiter's grant: made after it queued.
			if g, done, err := c.settle(sess, owner, claims, resp, opts, sent, true); done {
				return g, err
			}
			if resp.GetState() == concordv1.AcquireState_ACQUIRE_STATE_QUEUED && batched && wctx.Err() == nil {
				backoff = 10 * time.Millisecond
				continue // the window ended: follow again
			}
		}
		if wctx.Err() != nil {
			return nil, gaveUp()
		}
		if c.ctx.Err() != nil {
			return nil, clientClosed()
		}
		err = fromWire(err)
		if errors.Is(err, ErrNotHeld) {
			// LOCK_NOT_WAITING, with the session alive (an ended session
			// is SESSION_NOT_FOUND: ErrSessionExpired): the waiter was
			// granted and the grant ended before this call followed it
			// (force-released, its hold time over), or it was cancelled.
			// Nothing is left to take back.
			return nil, fmt.Errorf("%w: %s: the wait ended on the server without its grant reaching this client (granted and ended, or cancelled): %v",
				ErrLockLost, claimNames(claims), err)
		}
		if err != nil && !retryable(err, true) {
			c.abandon(sess, owner, claims, req, follow.GetResumeWaiter(), 0)
			return nil, err
		}
		c.failover(ep)
		select {
		case <-wctx.Done():
			return nil, gaveUp()
		case <-c.ctx.Done():
			return nil, clientClosed()
		case <-time.After(backoff):
		}
	}
}

// reasonSessionEnded is the reason of a LOST answer whose grant ended with
// its session (AcquireResponse.reason).
const reasonSessionEnded = "session ended"

// settle turns a final answer to an acquire (GRANTED, NOT_ACQUIRED, LOST)
// into its outcome; done is false for any other. fresh tells that a grant
// was made after the acquire was sent, rather than held by the owner
// already.
func (c *Client) settle(sess *Session, owner string, claims []*LockClaim,
	resp *concordv1.AcquireResponse, opts AcquireOptions, sent time.Time, fresh bool) (g *Grant, done bool, err error) {
	switch resp.GetState() {
	case concordv1.AcquireState_ACQUIRE_STATE_GRANTED:
		g, err = c.granted(sess, owner, claims, resp.GetToken(), opts, sent, fresh)
		return g, true, err
	case concordv1.AcquireState_ACQUIRE_STATE_NOT_ACQUIRED:
		return nil, true, fmt.Errorf("%w: %s", ErrLocked, claimNames(claims))
	case concordv1.AcquireState_ACQUIRE_STATE_LOST:
		if resp.GetReason() == reasonSessionEnded {
			// The grant ended with its session, which a followed wait
			// reports as ErrSessionExpired: both hold here.
			return nil, true, fmt.Errorf("%w: %w: %s: its grant (token %d) ended with the session before the answer",
				ErrSessionExpired, ErrLockLost, claimNames(claims), resp.GetToken())
		}
		return nil, true, fmt.Errorf("%w: %s: %s", ErrLockLost, claimNames(claims), resp.GetReason())
	}
	return nil, false, nil
}

// waitBatched follows a waiter with one lock_wait call on ep's batch
// stream: GRANTED, QUEUED when the window ended first, or an error.
func (c *Client) waitBatched(ctx context.Context, ep *endpoint, follow *concordv1.AcquireRequest) (*concordv1.AcquireResponse, error) {
	// The member answers at the end of the window; the SDK waits a little
	// longer for that answer.
	wctx, cancel := context.WithTimeout(ctx, lockWaitWindow+2*time.Second)
	defer cancel()
	r, err := ep.batcher.do(wctx, &concordv1.BatchCall{TimeoutMs: lockWaitWindow.Milliseconds(),
		Request: &concordv1.BatchCall_LockWait{LockWait: follow}})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, fmt.Errorf("%w: %s did not end a lock wait of %s", ErrUnavailable, ep.addr, lockWaitWindow)
		}
		return nil, err
	}
	resp := r.GetLockWait()
	if resp == nil {
		return nil, fmt.Errorf("%w: a lock wait answered without its result", ErrUnavailable)
	}
	c.observe(resp.GetHeader())
	return resp, nil
}

// waitStream follows a waiter on a Lock.Acquire stream until its final
// answer (GRANTED, NOT_ACQUIRED or LOST); it returns nil and the stream's
// error when the stream ends before one.
func (c *Client) waitStream(ctx context.Context, ep *endpoint, follow *concordv1.AcquireRequest) (*concordv1.AcquireResponse, error) {
	sctx, stop := context.WithCancel(c.ctx)
	defer stop()
	defer context.AfterFunc(ctx, stop)()
	stream, err := ep.lock.Acquire(sctx, connect.NewRequest(follow))
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	for stream.Receive() {
		msg := stream.Msg()
		c.observe(msg.GetHeader())
		switch msg.GetState() {
		case concordv1.AcquireState_ACQUIRE_STATE_QUEUED:
			follow.ResumeWaiter = msg.GetWaiter()
		case concordv1.AcquireState_ACQUIRE_STATE_GRANTED, concordv1.AcquireState_ACQUIRE_STATE_NOT_ACQUIRED,
			concordv1.AcquireState_ACQUIRE_STATE_LOST:
			return msg, nil
		}
	}
	return nil, stream.Err()
}

// granted turns a grant the server answered into a Grant, unless it is
// over by the SDK's count: its session ended while the answer was on its
// way, or its hold time did, or the SDK cannot count it. Such a grant is
// not handed out with a cancelled Context: Lock fails instead.
func (c *Client) granted(sess *Session, owner string, claims []*LockClaim,
	token uint64, opts AcquireOptions, sent time.Time, fresh bool) (*Grant, error) {
	if err := sess.Err(); err != nil {
		// The lock is not held for long: do not hand it out. The server
		// applied the grant (it is taken back), so this is not ErrClosed,
		// which says a call had no effect.
		c.abandon(sess, owner, claims, nil, 0, token)
		return nil, fmt.Errorf("%w: %v", ErrSessionExpired, err)
	}
	holdEnd, known := holdDeadline(token, opts, sent, fresh)
	if !known {
		// Not made for this acquire, the grant may be in use under an
		// earlier Grant of the owner: it is left to its hold time.
		return nil, fmt.Errorf("%w: %s: the owner held this grant (token %d) before the acquire, and its hold time of %s "+
			"runs from then: the SDK cannot vouch for any of it", ErrLockLost, claimNames(claims), token, opts.Hold)
	}
	if !holdEnd.IsZero() && !time.Now().Before(holdEnd) {
		// Made for this acquire, nobody else uses it: give it back.
		c.abandon(sess, owner, claims, nil, 0, token)
		return nil, fmt.Errorf("%w: %s: granted %s after the acquire was sent, past its hold time of %s: the SDK counts the hold "+
			"from the acquire, the last moment it knows to precede the grant, so it cannot vouch for any of it and gave the grant back",
			ErrLockLost, claimNames(claims), time.Since(sent).Round(time.Millisecond), opts.Hold)
	}
	return c.watchGrant(sess, owner, claims, token, opts.Hold, holdEnd), nil
}

// holdDeadline is when the SDK counts a grant's hold time over: zero
// without one; known is false when it cannot count it.
//
// The grant's Context must never outlive the server's grant, and the
// leader starts the hold clock when it applies the grant (a new leader
// starts it afresh, which only lengthens it). The SDK cannot see that
// moment. The last one it knows to precede it is sent, when it sent the
// acquire (the SDK counts the hold from there, less the clockRateMargin
// that covers a leader clock running fast), provided the grant was made
// for this acquire (fresh): a grant the owner held already started its
// clock earlier, at a moment the SDK does not know, unless it is the grant
// being converted (a downgrade keeps the grant, its token, and the clock
// the leader started for it).
//
// For a grant that queued, sent is early by the whole wait, and nothing
// the server answers tells more: a lock_wait answer (or a Lock.Acquire
// stream's) may be produced at any moment of its call, even for a grant
// applied before the call was sent, so no later moment of the SDK's is
// known to precede the grant. A grant that queued for longer than its hold
// time is therefore not handed out (see granted).
func holdDeadline(token uint64, opts AcquireOptions, sent time.Time, fresh bool) (end time.Time, known bool) {
	switch {
	case opts.Converts != nil && opts.Converts.Token == token:
		return opts.Converts.holdEnd, true
	case opts.Hold <= 0:
		return time.Time{}, true
	case !fresh:
		return time.Time{}, false
	}
	return leaseEnd(sent, opts.Hold), true
}

func claimNames(claims []*LockClaim) string {
	names := make([]string, len(claims))
	for i, c := range claims {
		names[i] = c.GetName()
	}
	return namesOf(names)
}

func namesOf(names []string) string {
	if len(names) == 1 {
		return strconv.Quote(names[0])
	}
	return fmt.Sprintf("%q", names)
}

// abandonKey names the owner of an acquire being taken back.
type abandonKey struct {
	session int64
	owner   string
}

// abandon takes back, in the background and retrying for a while, an
// acquire the caller gave up on (its ctx ended, its outcome is unknown, or
// its grant cannot be handed out), so that an abandoned request never holds
// a lock nobody uses. A grant whose token is known is released under it, a
// known waiter is cancelled. Otherwise the same request is sent again: the
// server answers a repeated request ID with the first outcome, so the
// answer says whether it was queued (then cancelled) or granted (then
// released).
//
// The server answers an owner's acquire with the grant or the waiter that
// owner already has (acquiring again is idempotent), so an acquire of the
// owner sent while the take-back runs would be answered with what is being
// taken back, and lose it. The owner's next acquire therefore waits until
// the take-back is over (awaitAbandoned): an owner never runs the two at
// once, whichever handle or goroutine sends them, and keeps its identity.
// Take-backs of one owner run one after the other.
func (c *Client) abandon(sess *Session, owner string, claims []*LockClaim, req *concordv1.AcquireRequest, waiter, token uint64) {
	names := make([]string, len(claims))
	for i, cl := range claims {
		names[i] = cl.GetName()
	}
	key := abandonKey{sess.ID(), owner}
	done := make(chan struct{})
	c.abandonMu.Lock()
	if c.abandons == nil {
		c.abandons = map[abandonKey]chan struct{}{}
	}
	prev := c.abandons[key]
	c.abandons[key] = done
	c.abandonMu.Unlock()
	go func() {
		defer func() {
			c.abandonMu.Lock()
			if c.abandons[key] == done {
				delete(c.abandons, key)
			}
			c.abandonMu.Unlock()
			close(done)
		}()
		if prev != nil {
			<-prev
		}
		c.takeBack(sess, owner, names, req, waiter, token)
	}()
}

func (c *Client) takeBack(sess *Session, owner string, names []string, req *concordv1.AcquireRequest, waiter, token uint64) {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.RetryTimeout)
	defer cancel()
	if token == 0 && waiter == 0 && req != nil {
		resp, err := c.acquireNow(ctx, req)
		switch {
		case err != nil:
		case resp.GetState() == concordv1.AcquireState_ACQUIRE_STATE_QUEUED:
			waiter = resp.GetWaiter()
		case resp.GetState() == concordv1.AcquireState_ACQUIRE_STATE_GRANTED:
			token = resp.GetToken()
		default:
			return // nothing was taken
		}
	}
	if token == 0 && waiter != 0 {
		err := c.call(ctx, callWrite, func(ctx context.Context, ep *endpoint) error {
			_, err := ep.lock.Cancel(ctx, connect.NewRequest(&concordv1.CancelWaitRequest{Waiter: waiter, Session: sess.ID(), Owner: owner, Meta: c.meta()}))
			return err
		})
		if err == nil || errors.Is(err, ErrSessionExpired) {
			return
		}
		// Granted meanwhile, or gone: release whatever the owner holds.
	}
	_ = c.ReleaseLocks(ctx, sess, owner, names, token)
}

// awaitAbandoned waits until the SDK has taken back the abandoned acquires
// of owner in session (see abandon), or ctx ends.
func (c *Client) awaitAbandoned(ctx context.Context, session int64, owner string) error {
	c.abandonMu.Lock()
	done := c.abandons[abandonKey{session, owner}]
	c.abandonMu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// watchGrant starts watching a grant: for the session's end, the hold
// time, and the server's word (through the session's keep-alives) that it
// ended. The watch ends with the grant: lost, released or detached.
func (c *Client) watchGrant(sess *Session, owner string, claims []*LockClaim, token uint64, hold time.Duration, holdEnd time.Time) *Grant {
	names := make([]string, len(claims))
	for i, cl := range claims {
		names[i] = cl.GetName()
	}
	g := &Grant{Token: token, Names: names, owner: owner, sess: sess, holdEnd: holdEnd, done: make(chan struct{})}
	g.ctx, g.cancel = context.WithCancelCause(context.Background())
	sess.track(g)
	go func() {
		defer close(g.done)
		var holdOver <-chan time.Time
		if !holdEnd.IsZero() {
			t := time.NewTimer(time.Until(holdEnd))
			defer t.Stop()
			holdOver = t.C
		}
		select {
		case <-sess.Done():
			g.sessionEnded()
		case <-holdOver:
			g.lose(fmt.Errorf("%w: %s: hold time of %s ended", ErrLockLost, namesOf(names), hold))
		case <-g.ctx.Done():
		}
		sess.untrack(g)
	}()
	return g
}

// Detach stops watching the grant without releasing it, and cancels its
// Context. It is used when the server converts a grant in place (a
// read-write upgrade or downgrade), which the new grant then follows.
func (g *Grant) Detach() {
	g.sess.untrack(g)
	g.end(fmt.Errorf("%w: converted", ErrNotHeld))
}

// Release releases the grant and stops watching it. When the release fails
// short of the server's word (ctx ended, the cluster unreachable, the
// outcome unknown), the server may still hold the grant: it stays watched
// and its Context live, and Release may be called again.
func (g *Grant) Release(ctx context.Context) error {
	// A keep-alive answered once the release applied names the token as
	// ended: untracked meanwhile, the grant is not taken for lost.
	g.sess.untrack(g)
	live := g.ctx.Err() == nil
	err := g.sess.c.ReleaseLocks(ctx, g.sess, g.owner, g.Names, g.Token)
	if err != nil && !errors.Is(err, ErrNotHeld) && g.ctx.Err() == nil {
		g.sess.track(g)
		return err
	}
	g.released.Store(true)
	if live && errors.Is(err, ErrNotHeld) {
		// The SDK had not learned it yet (a force-release is reported by
		// the next keep-alive): the grant was lost while held.
		lost := fmt.Errorf("%w: %s (token %d) had ended before its release (force-released, or its hold time or session over): %w",
			ErrLockLost, namesOf(g.Names), g.Token, err)
		g.end(lost)
		return lost
	}
	g.end(fmt.Errorf("%w: released", ErrNotHeld))
	if cause := context.Cause(g.ctx); (err != nil || !live) && errors.Is(cause, ErrLockLost) {
		// Ended before the release by the SDK's count (its hold time or
		// its session), even if the server held it still and released
		// it now: the work it guarded was told to stop, and so is the
		// caller.
		// Not ErrClosed, whatever ended the session (Close, Orphan):
		// ErrClosed says a call had no effect, and this release may have
		// taken effect (it did if err is nil).
		return fmt.Errorf("%w: %v", ErrLockLost, cause)
	}
	return err
}

// ReleaseLocks releases owner's grants of the named locks; with a token, the
// grants must carry it.
func (c *Client) ReleaseLocks(ctx context.Context, sess *Session, owner string, names []string, token uint64) error {
	req := &concordv1.ReleaseRequest{Names: names, Session: sess.ID(), Owner: owner, Token: token, Meta: c.meta()}
	r, err := c.kvCall(ctx, &concordv1.BatchCall{Request: &concordv1.BatchCall_LockRelease{LockRelease: req}},
		func(ctx context.Context, ep *endpoint) (*concordv1.BatchResult, error) {
			resp, err := ep.lock.Release(ctx, connect.NewRequest(req))
			if err != nil {
				return nil, err
			}
			return &concordv1.BatchResult{Response: &concordv1.BatchResult_LockRelease{LockRelease: resp.Msg}}, nil
		})
	if err == nil {
		c.observe(r.GetLockRelease().GetHeader())
	}
	return err
}

// InspectLock describes a lock and its recent force-releases.
func (c *Client) InspectLock(ctx context.Context, name string) (*LockInfo, []*ForceReleaseRecord, error) {
	resp, err := unaryCall(ctx, c, callRead, func(ctx context.Context, ep *endpoint) (*connect.Response[concordv1.InspectLockResponse], error) {
		return ep.lock.Inspect(ctx, connect.NewRequest(&concordv1.InspectLockRequest{Name: name}))
	})
	if err != nil {
		return nil, nil, err
	}
	return resp.GetLock(), resp.GetForceReleases(), nil
}

// ListLocks describes every lock whose name starts with prefix.
func (c *Client) ListLocks(ctx context.Context, prefix string) ([]*LockInfo, error) {
	var out []*LockInfo
	after := ""
	for {
		resp, err := unaryCall(ctx, c, callRead, func(ctx context.Context, ep *endpoint) (*connect.Response[concordv1.ListLocksResponse], error) {
			return ep.lock.List(ctx, connect.NewRequest(&concordv1.ListLocksRequest{Prefix: prefix, After: after}))
		})
		if err != nil {
			return nil, err
		}
		out = append(out, resp.GetLocks()...)
		if !resp.GetMore() || len(resp.GetLocks()) == 0 {
			return out, nil
		}
		after = resp.GetLocks()[len(resp.GetLocks())-1].GetName()
	}
}

// ForceReleaseLock ends the grants of a lock (only the one with token, when
// non-zero) on an operator's request; the reason is recorded.
func (c *Client) ForceReleaseLock(ctx context.Context, name string, token uint64, reason string) (int64, error) {
	req := &concordv1.ForceReleaseRequest{Name: name, Token: token, Reason: reason, Meta: c.meta()}
	var n int64
	err := c.call(ctx, callWrite, func(ctx context.Context, ep *endpoint) error {
		r, err := ep.lock.ForceRelease(ctx, connect.NewRequest(req))
		if err != nil {
			return err
		}
		n = r.Msg.GetReleased()
		return nil
	})
	return n, err
}
