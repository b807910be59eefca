package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
)

// LockClaim is one lock an acquire wants.
type LockClaim = concordv1.LockClaim

// LockInfo describes a lock: holders, waiters in queue order.
type LockInfo = concordv1.LockInfo

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
}

// Grant is a held lock. Its Context is cancelled, with ErrLockLost wrapping
// the reason as its cause, the moment the grant can no longer be trusted:
// the session is lost, the hold time ends, or the server reports the grant
// gone. Release cancels it too, with ErrNotHeld.
type Grant struct {
	Token  uint64
	Names  []string
	owner  string
	sess   *Session
	ctx    context.Context
	cancel context.CancelCauseFunc
	stop   context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

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

func (g *Grant) lose(err error) { g.cancel(err) }

// AcquireLocks acquires the claimed locks for owner within session: one
// lock, or several mutexes atomically (all or none). With opts.Wait it waits
// in the locks' FIFO queues, across member failures, until granted or ctx
// ends (then the wait is cancelled). The grant is watched until released.
func (c *Client) AcquireLocks(ctx context.Context, sess *Session, owner string, claims []*LockClaim, opts AcquireOptions) (*Grant, error) {
	if err := sess.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSessionExpired, err)
	}
	req := &concordv1.AcquireRequest{Claims: claims, Session: sess.ID(), Owner: owner, Wait: opts.Wait,
		HoldMs: opts.Hold.Milliseconds(), Meta: c.meta()}
	sent := time.Now()
	var waiter uint64
	for backoff := 10 * time.Millisecond; ; backoff = min(2*backoff, 500*time.Millisecond) {
		ep := c.pick()
		sctx, stop := context.WithCancel(c.ctx)
		stopOnDone := context.AfterFunc(ctx, stop)
		stream, err := ep.lock.Acquire(sctx, connect.NewRequest(req))
		if err == nil {
			for stream.Receive() {
				msg := stream.Msg()
				c.observe(msg.GetHeader())
				switch msg.GetState() {
				case concordv1.AcquireState_ACQUIRE_STATE_QUEUED:
					waiter = msg.GetWaiter()
					if opts.OnQueued != nil {
						opts.OnQueued(msg.GetPosition())
					}
				case concordv1.AcquireState_ACQUIRE_STATE_GRANTED:
					stopOnDone()
					if err := sess.Err(); err != nil {
						// The session ended while the grant was on its way:
						// the lock is not held for long, so do not hand it out.
						stop()
						c.abandon(sess, owner, 0, claims)
						return nil, fmt.Errorf("%w: %v", ErrSessionExpired, err)
					}
					return c.watchGrant(sess, owner, claims, msg.GetToken(), opts, sent, stream, stop), nil
				case concordv1.AcquireState_ACQUIRE_STATE_NOT_ACQUIRED:
					stopOnDone()
					stop()
					return nil, fmt.Errorf("%w: %s", ErrLocked, claimNames(claims))
				case concordv1.AcquireState_ACQUIRE_STATE_LOST:
					stopOnDone()
					stop()
					return nil, fmt.Errorf("%w: %s: %s", ErrLockLost, claimNames(claims), msg.GetReason())
				}
			}
			err = stream.Err()
			_ = stream.Close()
		}
		stopOnDone()
		stop()
		if ctx.Err() != nil {
			c.abandon(sess, owner, waiter, claims)
			return nil, ctx.Err()
		}
		err = fromWire(err)
		if err != nil && !retryable(err, true) {
			if waiter != 0 {
				c.abandon(sess, owner, waiter, claims)
			}
			return nil, err
		}
		// The stream broke (member failure): acquiring again with the same
		// owner is idempotent and keeps the waiter's place.
		c.failover(ep)
		select {
		case <-ctx.Done():
			c.abandon(sess, owner, waiter, claims)
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
	}
}

func claimNames(claims []*LockClaim) string {
	if len(claims) == 1 {
		return strconv.Quote(claims[0].GetName())
	}
	names := make([]string, len(claims))
	for i, c := range claims {
		names[i] = c.GetName()
	}
	return fmt.Sprintf("%q", names)
}

// abandon takes back a wait the caller gave up on: it cancels the waiter,
// and releases the grant if it was granted in the meantime. It runs in the
// background and retries for a while, so that an abandoned waiter never
// holds a lock nobody uses.
func (c *Client) abandon(sess *Session, owner string, waiter uint64, claims []*LockClaim) {
	if waiter == 0 && len(claims) == 0 {
		return
	}
	names := make([]string, len(claims))
	for i, cl := range claims {
		names[i] = cl.GetName()
	}
	go func() {
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.RetryTimeout)
		defer cancel()
		if waiter != 0 {
			err := c.call(ctx, true, func(ctx context.Context, ep *endpoint) error {
				_, err := ep.lock.Cancel(ctx, connect.NewRequest(&concordv1.CancelWaitRequest{Waiter: waiter, Session: sess.ID(), Owner: owner, Meta: c.meta()}))
				return err
			})
			if err == nil || errors.Is(err, ErrSessionExpired) {
				return
			}
		}
		_ = c.ReleaseLocks(ctx, sess, owner, names, 0)
	}()
}

// watchGrant starts watching a grant on its stream.
func (c *Client) watchGrant(sess *Session, owner string, claims []*LockClaim, token uint64, opts AcquireOptions, sent time.Time,
	stream *connect.ServerStreamForClient[concordv1.AcquireResponse], stop context.CancelFunc) *Grant {
	names := make([]string, len(claims))
	for i, cl := range claims {
		names[i] = cl.GetName()
	}
	g := &Grant{Token: token, Names: names, owner: owner, sess: sess, done: make(chan struct{})}
	g.ctx, g.cancel = context.WithCancelCause(context.Background())
	watchCtx, stopWatch := context.WithCancel(c.ctx)
	g.stop = func() { stopWatch(); stop() }
	go func() {
		defer close(g.done)
		defer stop()
		var hold <-chan time.Time
		if opts.Hold > 0 {
			t := time.NewTimer(time.Until(sent.Add(opts.Hold)))
			defer t.Stop()
			hold = t.C
		}
		lost := make(chan error, 1)
		go c.followGrant(watchCtx, sess, owner, claims, token, stream, lost)
		select {
		case <-sess.Done():
			g.lose(fmt.Errorf("%w: %s: session %d ended: %v", ErrLockLost, claimNames(claims), sess.ID(), sess.Err()))
		case <-hold:
			g.lose(fmt.Errorf("%w: %s: hold time of %s ended", ErrLockLost, claimNames(claims), opts.Hold))
		case err := <-lost:
			g.lose(err)
		case <-watchCtx.Done():
		}
	}()
	return g
}

// followGrant reads the grant's stream for LOST, and when the stream breaks
// re-attaches with the token (which never queues) on another member.
func (c *Client) followGrant(ctx context.Context, sess *Session, owner string, claims []*LockClaim, token uint64,
	stream *connect.ServerStreamForClient[concordv1.AcquireResponse], lost chan<- error) {
	for backoff := 20 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		for stream.Receive() {
			msg := stream.Msg()
			if msg.GetState() == concordv1.AcquireState_ACQUIRE_STATE_LOST {
				lost <- fmt.Errorf("%w: %s: %s", ErrLockLost, claimNames(claims), msg.GetReason())
				return
			}
		}
		_ = stream.Close()
		if ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		ep := c.pick()
		req := &concordv1.AcquireRequest{Claims: claims, Session: sess.ID(), Owner: owner, Wait: true, ResumeToken: token}
		s, err := ep.lock.Acquire(ctx, connect.NewRequest(req))
		if err != nil {
			c.failover(ep)
			continue
		}
		stream = s
	}
}

// Detach stops watching the grant without releasing it, and cancels its
// Context. It is used when the server converts a grant in place (a
// read-write upgrade or downgrade), which the new grant then follows.
func (g *Grant) Detach() {
	g.once.Do(func() {
		g.stop()
		g.cancel(fmt.Errorf("%w: converted", ErrNotHeld))
	})
}

// Release releases the grant and stops watching it.
func (g *Grant) Release(ctx context.Context) error {
	err := g.sess.c.ReleaseLocks(ctx, g.sess, g.owner, g.Names, g.Token)
	g.once.Do(func() {
		g.stop()
		g.cancel(fmt.Errorf("%w: released", ErrNotHeld))
	})
	if err != nil && g.ctx.Err() != nil && errors.Is(context.Cause(g.ctx), ErrLockLost) {
		return fmt.Errorf("%w: %v", ErrLockLost, context.Cause(g.ctx))
	}
	return err
}

// ReleaseLocks releases owner's grants of the named locks; with a token, the
// grants must carry it.
func (c *Client) ReleaseLocks(ctx context.Context, sess *Session, owner string, names []string, token uint64) error {
	req := &concordv1.ReleaseRequest{Names: names, Session: sess.ID(), Owner: owner, Token: token, Meta: c.meta()}
	return c.call(ctx, true, func(ctx context.Context, ep *endpoint) error {
		r, err := ep.lock.Release(ctx, connect.NewRequest(req))
		if err == nil {
			c.observe(r.Msg.GetHeader())
		}
		return err
	})
}

// InspectLock describes a lock and its recent force-releases.
func (c *Client) InspectLock(ctx context.Context, name string) (*LockInfo, []*ForceReleaseRecord, error) {
	resp, err := unaryCall(ctx, c, true, func(ctx context.Context, ep *endpoint) (*connect.Response[concordv1.InspectLockResponse], error) {
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
		resp, err := unaryCall(ctx, c, true, func(ctx context.Context, ep *endpoint) (*connect.Response[concordv1.ListLocksResponse], error) {
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
	err := c.call(ctx, true, func(ctx context.Context, ep *endpoint) error {
		r, err := ep.lock.ForceRelease(ctx, connect.NewRequest(req))
		if err != nil {
			return err
		}
		n = r.Msg.GetReleased()
		return nil
	})
	return n, err
}
