// Package concurrency offers distributed locks on a concord session:
// Mutex, RWMutex and Semaphore, plus LockAll for several mutexes at once.
//
//	sess, _ := c.NewSession(ctx)
//	m := concurrency.NewMutex(sess, "order:42")
//	if err := m.Lock(ctx); err != nil { ... }
//	defer m.Unlock(ctx)
//	// Guard writes with the fencing token, so a holder that lost the lock
//	// (paused past its session, say) cannot write.
//	res, err := m.Txn().Then(client.OpPut("orders/42", data)).Commit(m.Context())
//	if err == nil && !res.Succeeded { ... } // the lock was lost: nothing was written
//
// Locks are fair: waiters are served in the order they queued, and the server
// pushes a grant to the waiter the moment the lock is released. A lock is
// lost when its session is, or when its hold time ends; then Context() is
// cancelled with ErrLockLost as its cause. The session's keep-alive is the
// only renewal: there is no per-lock renewal traffic.
package concurrency

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/concord-dev/concord/client"
)

// Option adjusts a lock handle.
type Option func(*options)

type options struct {
	hold time.Duration
}

// WithHoldTime ends each grant after d even if the session lives
// (Redisson's leaseTime). Zero, the default, holds until Unlock or the
// session's end.
func WithHoldTime(d time.Duration) Option { return func(o *options) { o.hold = d } }

func apply(opts []Option) options {
	var o options
	for _, f := range opts {
		f(&o)
	}
	return o
}

// handle is the shared machinery of the lock types: one owner identity, a
// reentrancy count, and the current grant.
//
// Its calls to the cluster (an acquire, which may wait in a queue for long,
// a release, a conversion) run without h.mu held, so that Token, Context
// and Lost answer at once, and another goroutine's call on the handle can
// give up when its own ctx ends. That call still waits for the one in
// flight (busy) before it starts: its outcome depends on that one's (a
// Lock counts one more hold of the grant the Lock in flight takes), and the
// server answers an owner's acquire with what the owner already has, so
// the handle never sends two at once. A try-lock does not wait for a Lock
// known to queue: the lock is taken, and it fails at once (lockFor).
type handle struct {
	sess   *client.Session
	owner  string
	opts   options
	claims []*client.LockClaim
	// follow, if set, is told each grant the handle starts to hold, and
	// the grant it converts (nil for a new hold), under h.mu.
	follow func(g, converts *client.Grant)

	mu    sync.Mutex
	count int
	grant *client.Grant
	// busy is closed when the call in flight ends; nil when none is.
	busy chan struct{}
	// queued is closed when the acquire in flight (a Lock) is known to
	// wait in the queue; nil when no acquire that may wait is in flight.
	queued chan struct{}
}

// errOwnWaitQueued answers a try-lock of a handle whose own Lock waits in
// the queue: the lock is taken, or others queue ahead.
var errOwnWaitQueued = fmt.Errorf("%w: this handle's own Lock waits in the queue", client.ErrLocked)

func newHandle(s *client.Session, claims []*client.LockClaim, opts []Option) *handle {
	return &handle{sess: s, owner: s.Client().NewOwner(), opts: apply(opts), claims: claims}
}

// lock locks h.mu once no call of the handle is in flight, unless ctx ends
// first.
func (h *handle) lock(ctx context.Context) error { return h.lockFor(ctx, false) }

// lockFor is lock; for a try-lock (try), it fails with errOwnWaitQueued
// instead of waiting once the handle's acquire in flight is known to
// queue: a try-lock fails at once when the lock is taken or anyone queues,
// and the handle's own wait does. An acquire in flight whose answer has
// not come yet is waited for (it may be granted at once, and the try-lock
// then counts one more hold).
func (h *handle) lockFor(ctx context.Context, try bool) error {
	for {
		h.mu.Lock()
		busy, queued := h.busy, h.queued
		if busy == nil {
			return nil
		}
		h.mu.Unlock()
		if !try {
			queued = nil // never ready
		}
		select {
		case <-busy:
		case <-queued:
			return errOwnWaitQueued
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// begin marks a call in flight and unlocks h.mu for its duration; the
// function it returns locks h.mu again and ends the call.
func (h *handle) begin() (end func()) {
	busy := make(chan struct{})
	h.busy = busy
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		h.busy, h.queued = nil, nil
		close(busy)
	}
}

// acquire takes the handle's locks, or counts one more hold of them. It
// returns the grant. converts is the grant this acquire converts in place,
// if it does, and holds the holds the new grant starts with (the converted
// grant's count), set with the grant under h.mu: a release of the handle
// must never see the grant without its count.
func (h *handle) acquire(ctx context.Context, wait bool, converts *client.Grant, holds int) (*client.Grant, error) {
	if err := h.lockFor(ctx, !wait); err != nil {
		return nil, err
	}
	defer h.mu.Unlock()
	if h.count > 0 {
		if err := h.grant.Err(); err != nil {
			return nil, fmt.Errorf("%w: %v", client.ErrLockLost, err)
		}
		h.count++
		return h.grant, nil
	}
	opts := client.AcquireOptions{Wait: wait, Hold: h.opts.hold, Converts: converts}
	if wait {
		queued := make(chan struct{})
		var once sync.Once
		opts.OnQueued = func(int64) { once.Do(func() { close(queued) }) }
		h.queued = queued
	}
	end := h.begin()
	g, err := h.sess.Client().AcquireLocks(ctx, h.sess, h.owner, h.claims, opts)
	end()
	if err != nil {
		return nil, err
	}
	h.grant, h.count = g, holds
	if h.follow != nil {
		h.follow(g, converts)
	}
	return g, nil
}

// release gives one hold back; the last one releases the grant. A release
// that fails short of the server's word keeps the grant (see
// client.Grant.Release): the handle still holds it, and a later release
// ends it.
func (h *handle) release(ctx context.Context) error {
	if err := h.lock(ctx); err != nil {
		return err
	}
	defer h.mu.Unlock()
	if h.count == 0 {
		return fmt.Errorf("%w: this handle does not hold %s", client.ErrNotHeld, h.claims[0].GetName())
	}
	if h.count > 1 {
		h.count--
		if err := h.grant.Err(); err != nil {
			// The hold given back was of a grant already lost: the
			// caller's work under it was not protected to its end.
			return fmt.Errorf("%w: %v", client.ErrLockLost, err)
		}
		return nil
	}
	g := h.grant
	end := h.begin()
	err := g.Release(ctx)
	end()
	if err != nil && g.Err() == nil {
		return err
	}
	h.grant, h.count = nil, 0
	return err
}

// releasedDirectly reports whether the handle's grant was released
// through the Grant itself (its count stays): a lost grant is not, and
// stays for Release to report its loss.
func (h *handle) releasedDirectly() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.count == 0 || h.grant.Released() {
		return true // Release on the Grant reported a loss itself
	}
	err := h.grant.Err()
	return err != nil && !errors.Is(err, client.ErrLockLost)
}

// held reports whether the handle holds its locks (or is converting them).
func (h *handle) held() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.count > 0
}

func (h *handle) token() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.grant == nil {
		return 0
	}
	return h.grant.Token
}

var closedCtx = func() context.Context {
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(fmt.Errorf("%w: not held", client.ErrNotHeld))
	return ctx
}()

func (h *handle) context() context.Context {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.grant == nil {
		return closedCtx
	}
	return h.grant.Context()
}

// Mutex is an exclusive lock, reentrant per handle.
type Mutex struct{ h *handle }

// NewMutex returns a handle on the mutex called name, bound to s.
func NewMutex(s *client.Session, name string, opts ...Option) *Mutex {
	return &Mutex{h: newHandle(s, []*client.LockClaim{{Name: name, Kind: client.KindMutex}}, opts)}
}

// Lock waits in the queue until the mutex is granted or ctx ends. Locking a
// handle that already holds it only counts.
func (m *Mutex) Lock(ctx context.Context) error {
	_, err := m.h.acquire(ctx, true, nil, 1)
	return err
}

// TryLock takes the mutex if it is free and nobody queues, and reports
// whether it did. On a handle that holds the mutex it only counts; while
// the handle's own Lock waits in the queue (in another goroutine) it
// reports false at once, and while that Lock's first answer is on its way
// it waits for it (its ctx bounds the wait).
func (m *Mutex) TryLock(ctx context.Context) (bool, error) {
	_, err := m.h.acquire(ctx, false, nil, 1)
	return try(err)
}

// Unlock releases one level of the handle's hold; the last one releases the
// mutex (and the next waiter is granted at once).
func (m *Mutex) Unlock(ctx context.Context) error { return m.h.release(ctx) }

// Token returns the fencing token of the current grant (0 when not held).
func (m *Mutex) Token() uint64 { return m.h.token() }

// Context is cancelled, with a cause wrapping ErrLockLost, when the grant is
// lost; and with ErrNotHeld once released. Run the guarded work under it.
func (m *Mutex) Context() context.Context { return m.h.context() }

// Lost is closed when the current grant ends.
func (m *Mutex) Lost() <-chan struct{} { return m.h.context().Done() }

// Txn starts a transaction fenced by the grant: it applies only while the
// mutex is held under the current token.
func (m *Mutex) Txn() *client.Txn {
	return m.h.sess.Client().Txn().If(client.LockHeld(m.h.claims[0].GetName(), m.Token()))
}

func try(err error) (bool, error) {
	if errors.Is(err, client.ErrLocked) {
		return false, nil
	}
	return err == nil, err
}

// RWMutex is a read-write lock: many readers or one writer, and a waiting
// writer is not starved (readers that arrive after it queue behind it). A
// handle holds either the read or the write lock; Upgrade and Downgrade
// convert one into the other.
type RWMutex struct {
	read  *handle
	write *handle

	// The two modes share one owner, whose acquire of the other mode the
	// server takes for a conversion: an acquire of one mode must never be
	// in flight beside the other mode's hold or acquire. Without this, an
	// RLock and a Lock racing on one handle both succeeded, the server
	// holding one grant in one mode. pending counts the acquires in flight
	// per mode (a conversion counts as one of the mode it converts to).
	mu      sync.Mutex
	pending map[*handle]int

	// hold is the current (or last) hold: from the acquire that starts
	// it to the release that ends it, across conversions.
	hmu  sync.Mutex
	hold *rwHold
}

// rwHold is an RWMutex's hold. Its context follows the grant the handle
// holds, and a conversion moves it to the new grant before the converted
// one is detached: it ends when the hold ends for a real reason (a loss,
// the last release), with the grant's cause, never at a conversion.
type rwHold struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	// stop stops following the current grant; rw.hmu guards it.
	stop func() bool
}

// follow makes the hold follow g, which the read handle (shared) or the
// write handle acquired: a new hold when converts is nil, else the hold of
// the grant g converts. It runs under the acquiring handle's mu, before
// anyone can release g.
func (rw *RWMutex) follow(g, converts *client.Grant, shared bool) {
	rw.hmu.Lock()
	defer rw.hmu.Unlock()
	hd := rw.hold
	if converts == nil || hd == nil {
		ctx, cancel := context.WithCancelCause(context.Background())
		hd = &rwHold{ctx: ctx, cancel: cancel}
		rw.hold = hd
	} else {
		// If the converted grant ended meanwhile (lost while the
		// conversion was on its way), its end has ended the hold. A
		// grant that had ended on the server before the conversion
		// applied is never converted: a member that knows conversions
		// takes nothing and the acquire fails (see RWMutex.convert).
		hd.stop()
		if shared && g.Token != converts.Token {
			// A downgrade in place keeps the grant's token: this read
			// lock was granted anew, by a member of a release that
			// ignores conversion, so the write grant had ended before
			// the downgrade reached it (force-released, say, before a
			// keep-alive told the SDK).
			hd.cancel(fmt.Errorf("%w: %s (token %d) had ended before its downgrade reached the server, which granted a read lock anew (token %d)",
				client.ErrLockLost, strconv.Quote(rw.read.claims[0].GetName()), converts.Token, g.Token))
		}
	}
	hd.stop = g.AfterEnd(func() { hd.cancel(context.Cause(g.Context())) })
}

// claim marks an acquire of h's mode in flight, unless the other mode is
// held or in flight: then it fails at once with ErrWouldDeadlock (hint
// says what to do instead). The function it returns ends the mark.
func (rw *RWMutex) claim(h *handle, hint string) (func(), error) {
	other := rw.read
	if h == rw.read {
		other = rw.write
	}
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if rw.pending[other] > 0 || other.held() {
		return nil, fmt.Errorf("%w: %s", client.ErrWouldDeadlock, hint)
	}
	return rw.mark(h), nil
}

// mark counts an acquire of h's mode in flight; rw.mu is held.
func (rw *RWMutex) mark(h *handle) func() {
	rw.pending[h]++
	return func() {
		rw.mu.Lock()
		rw.pending[h]--
		rw.mu.Unlock()
	}
}

// NewRWMutex returns a handle on the read-write lock called name.
func NewRWMutex(s *client.Session, name string, opts ...Option) *RWMutex {
	rw := &RWMutex{
		read:    newHandle(s, []*client.LockClaim{{Name: name, Kind: client.KindRWLock, Mode: client.ModeShared}}, opts),
		write:   newHandle(s, []*client.LockClaim{{Name: name, Kind: client.KindRWLock, Mode: client.ModeExclusive}}, opts),
		pending: map[*handle]int{},
	}
	// One owner for both: the server sees an upgrade or a downgrade, not
	// two strangers.
	rw.write.owner = rw.read.owner
	rw.read.follow = func(g, converts *client.Grant) { rw.follow(g, converts, true) }
	rw.write.follow = func(g, converts *client.Grant) { rw.follow(g, converts, false) }
	return rw
}

// RLock takes a read lock. While this handle holds the write lock it fails
// with ErrWouldDeadlock: use Downgrade.
func (rw *RWMutex) RLock(ctx context.Context) error {
	done, err := rw.claim(rw.read, "this handle holds or is taking the write lock; Downgrade instead")
	if err != nil {
		return err
	}
	defer done()
	_, err = rw.read.acquire(ctx, true, nil, 1)
	return err
}

// TryRLock takes a read lock if only readers hold it and nobody queues (a
// queued writer is not starved), and reports whether it did. While this
// handle holds the write lock it fails with ErrWouldDeadlock: use
// Downgrade.
func (rw *RWMutex) TryRLock(ctx context.Context) (bool, error) {
	done, err := rw.claim(rw.read, "this handle holds or is taking the write lock; Downgrade instead")
	if err != nil {
		return false, err
	}
	defer done()
	_, err = rw.read.acquire(ctx, false, nil, 1)
	return try(err)
}

// RUnlock releases a read lock. It reports ErrLockLost, as Unlock does,
// when the hold was lost (see Lost).
func (rw *RWMutex) RUnlock(ctx context.Context) error { return rw.release(ctx, rw.read) }

// Lock takes the write lock. While this handle holds a read lock it fails
// with ErrWouldDeadlock (it would wait for itself): use Upgrade.
func (rw *RWMutex) Lock(ctx context.Context) error {
	done, err := rw.claim(rw.write, "this handle holds or is taking a read lock; Upgrade instead")
	if err != nil {
		return err
	}
	defer done()
	_, err = rw.write.acquire(ctx, true, nil, 1)
	return err
}

// TryLock takes the write lock if it is free.
func (rw *RWMutex) TryLock(ctx context.Context) (bool, error) {
	done, err := rw.claim(rw.write, "this handle holds or is taking a read lock; Upgrade instead")
	if err != nil {
		return false, err
	}
	defer done()
	_, err = rw.write.acquire(ctx, false, nil, 1)
	return try(err)
}

// Unlock releases the write lock. It reports ErrLockLost when the hold was
// lost (see Lost), as a Mutex's does, even when the grant it released was
// live: a conversion may have ended the hold while its grant was lost and
// then moved the handle to a grant made anew.
func (rw *RWMutex) Unlock(ctx context.Context) error { return rw.release(ctx, rw.write) }

// release gives back one hold of h. The hold it reports on is the
// current one once the release is over (a release waits for a call in
// flight, which may start a hold): the one it released, unless another
// goroutine has started a new one since.
func (rw *RWMutex) release(ctx context.Context, h *handle) error {
	err := h.release(ctx)
	rw.hmu.Lock()
	hd := rw.hold
	rw.hmu.Unlock()
	if err != nil || hd == nil || hd.ctx.Err() == nil {
		return err
	}
	if cause := context.Cause(hd.ctx); errors.Is(cause, client.ErrLockLost) {
		return fmt.Errorf("%w: %v", client.ErrLockLost, cause)
	}
	return nil
}

// convert moves the grant of from into to through the server's in-place
// conversion, with its reentrancy count: a conversion changes the mode of
// the holds taken, not how many were.
//
// The acquire is sent as a conversion (client.AcquireOptions.Converts), so
// the server converts the owner's grant or takes nothing. A grant that had
// ended on the server before the conversion applied (force-released, its
// hold time over, before a keep-alive told the SDK) would otherwise come
// back as a grant made anew: an upgrade's token looks the same either way,
// and the loss would stay silent, the caller believing it held the lock
// from the first mode through the second. The server decides in the one
// command that would have granted it, so no grant exists even for a
// moment, nobody is made to wait for one, and the conversion never queues
// behind another holder. The SDK then fails the conversion with
// client.ErrConversionLost (an ErrLockLost) and ends from's grant with
// that cause, which ends the hold (Lost, Context); from keeps its count
// until RUnlock or Unlock reports the loss, as a lost grant does.
func (rw *RWMutex) convert(ctx context.Context, from, to *handle) error {
	// The conversion is an acquire of to's mode: an acquire of from's mode
	// racing it (which would count a hold of the grant being converted, or
	// take the converted grant back to from's mode) fails at once.
	rw.mu.Lock()
	done := rw.mark(to)
	rw.mu.Unlock()
	defer done()
	if err := from.lock(ctx); err != nil {
		return err
	}
	defer from.mu.Unlock()
	if from.count == 0 {
		return fmt.Errorf("%w: nothing to convert", client.ErrNotHeld)
	}
	g := from.grant
	if err := g.Err(); err != nil {
		return err // lost: there is nothing to convert
	}
	end := from.begin()
	_, err := to.acquire(ctx, true, g, from.count)
	end()
	if err != nil {
		return err
	}
	g.Detach()
	from.grant, from.count = nil, 0
	return nil
}

// Upgrade turns this handle's read lock into the write lock, at once: it
// never waits in the queue. It fails with ErrWouldDeadlock while other
// readers hold the lock (two readers upgrading would wait for each other
// forever), and with client.ErrConversionLost (an ErrLockLost) if the read
// lock had ended on the server (force-released, its hold time over) before
// a keep-alive told the SDK: then the server grants nothing, Lost and
// Context end with that cause, and RUnlock reports the loss. (If the SDK
// had learned of the loss first, Upgrade sends nothing and returns the
// loss, an ErrLockLost.) A successful Upgrade gives the write lock a new
// fencing token. The ErrConversionLost answer needs the cluster at rules
// version 2 (docs/operations.md, Upgrades): a cluster still at 1 (a member
// of a release before conversions in it) grants the write lock anew, and
// Upgrade returns as if the read lock had been held throughout.
func (rw *RWMutex) Upgrade(ctx context.Context) error { return rw.convert(ctx, rw.read, rw.write) }

// Downgrade turns this handle's write lock into a read lock, at once, with
// the same fencing token; readers queued behind it are let in. Like
// Upgrade, it fails with client.ErrConversionLost, and takes nothing, if
// the write lock had ended on the server before the SDK learned it; Unlock
// then reports the loss. (A cluster at rules version 1, where a member of a release
// before conversions runs, grants a read lock anew instead, under another
// token: Downgrade returns, and the hold ends at once with ErrLockLost.)
func (rw *RWMutex) Downgrade(ctx context.Context) error { return rw.convert(ctx, rw.write, rw.read) }

// Token returns the fencing token of the grant the handle holds.
func (rw *RWMutex) Token() uint64 {
	if t := rw.write.token(); t != 0 {
		return t
	}
	return rw.read.token()
}

// Context is the context of the handle's hold, from the RLock or Lock
// that starts it to the RUnlock or Unlock that ends it, across Upgrade and
// Downgrade: a successful conversion does not end it. It is cancelled, as
// a Mutex's is, with a cause wrapping ErrLockLost when the lock is lost
// (the session, the hold time, a force-release, a conversion whose outcome
// is unknown), and with ErrNotHeld once released. While the handle holds
// nothing it is cancelled already.
func (rw *RWMutex) Context() context.Context {
	if !rw.write.held() && !rw.read.held() {
		return closedCtx
	}
	rw.hmu.Lock()
	defer rw.hmu.Unlock()
	return rw.hold.ctx
}

// Lost is closed when the handle's hold ends (at once when it holds
// nothing): Context().Done(). It stays open across a successful Upgrade or
// Downgrade, so a channel taken before one still tells the loss after it.
func (rw *RWMutex) Lost() <-chan struct{} { return rw.Context().Done() }

// Txn starts a transaction fenced by the grant the handle holds: it applies
// only while the lock is held under the grant's token. Readers granted by
// one command share its token, so for a read lock the check is that a
// grant with this token still holds (see docs/locks.md).
func (rw *RWMutex) Txn() *client.Txn {
	return rw.read.sess.Client().Txn().If(client.LockHeld(rw.read.claims[0].GetName(), rw.Token()))
}

// Semaphore hands out up to capacity permits; a holder may take several.
type Semaphore struct {
	s        *client.Session
	name     string
	capacity int64
	opts     []Option

	mu      sync.Mutex
	handles []*handle
}

// NewSemaphore returns a handle on the semaphore called name with capacity
// permits (every handle must agree on the capacity).
func NewSemaphore(s *client.Session, name string, capacity int64, opts ...Option) *Semaphore {
	return &Semaphore{s: s, name: name, capacity: capacity, opts: opts}
}

func (sm *Semaphore) handle(n int64) *handle {
	return newHandle(sm.s, []*client.LockClaim{{Name: sm.name, Kind: client.KindSemaphore, Permits: n, Capacity: sm.capacity}}, sm.opts)
}

// Acquire waits for n permits and returns their grant (release it, or call
// Release on the semaphore for the oldest).
func (sm *Semaphore) Acquire(ctx context.Context, n int64) (*client.Grant, error) {
	h := sm.handle(n)
	g, err := h.acquire(ctx, true, nil, 1)
	if err != nil {
		return nil, err
	}
	sm.mu.Lock()
	sm.prune()
	sm.handles = append(sm.handles, h)
	sm.mu.Unlock()
	return g, nil
}

// TryAcquire takes n permits if they are free and nobody queues.
func (sm *Semaphore) TryAcquire(ctx context.Context, n int64) (*client.Grant, bool, error) {
	h := sm.handle(n)
	g, err := h.acquire(ctx, false, nil, 1)
	if ok, err := try(err); !ok {
		return nil, false, err
	}
	sm.mu.Lock()
	sm.prune()
	sm.handles = append(sm.handles, h)
	sm.mu.Unlock()
	return g, true, nil
}

// Release returns the permits of the oldest grant this handle holds.
// Grants released through the Grant itself are skipped; a lost one is
// reported (ErrLockLost) and given up, as Unlock does.
func (sm *Semaphore) Release(ctx context.Context) error {
	sm.mu.Lock()
	sm.prune()
	if len(sm.handles) == 0 {
		sm.mu.Unlock()
		return fmt.Errorf("%w: no permits of %q held by this handle", client.ErrNotHeld, sm.name)
	}
	h := sm.handles[0]
	sm.handles = sm.handles[1:]
	sm.mu.Unlock()
	err := h.release(ctx)
	if err != nil && h.held() {
		// The server may still hold the permits: they stay the oldest.
		sm.mu.Lock()
		sm.handles = append([]*handle{h}, sm.handles...)
		sm.mu.Unlock()
	}
	return err
}

// prune drops the handles whose grant was released through the Grant
// itself; lost ones stay, so that Release reports the loss rather than
// release a younger grant in their place. sm.mu is held.
func (sm *Semaphore) prune() {
	kept := sm.handles[:0]
	for _, h := range sm.handles {
		if !h.releasedDirectly() {
			kept = append(kept, h)
		}
	}
	clear(sm.handles[len(kept):])
	sm.handles = kept
}

// Multi holds several mutexes taken atomically.
type Multi struct{ h *handle }

// LockAll takes every named mutex at once (all or none), waiting in each
// queue; waiters for several locks hold their place in every queue, so two
// LockAll calls over the same locks in any order cannot deadlock.
func LockAll(ctx context.Context, s *client.Session, names []string, opts ...Option) (*Multi, error) {
	claims := make([]*client.LockClaim, len(names))
	for i, n := range names {
		claims[i] = &client.LockClaim{Name: n, Kind: client.KindMutex}
	}
	m := &Multi{h: newHandle(s, claims, opts)}
	if _, err := m.h.acquire(ctx, true, nil, 1); err != nil {
		return nil, err
	}
	return m, nil
}

// Unlock releases every mutex of the set.
func (m *Multi) Unlock(ctx context.Context) error { return m.h.release(ctx) }

// Token returns the set's fencing token.
func (m *Multi) Token() uint64 { return m.h.token() }

// Context is the set's grant context.
func (m *Multi) Context() context.Context { return m.h.context() }

// Lost is closed when the set's grant ends: the locks a LockAll took end
// together.
func (m *Multi) Lost() <-chan struct{} { return m.h.context().Done() }

// Txn starts a transaction fenced by the set's grant: it applies only
// while every lock of the set is held under its token.
func (m *Multi) Txn() *client.Txn {
	token := m.Token()
	cmps := make([]client.Cmp, len(m.h.claims))
	for i, c := range m.h.claims {
		cmps[i] = client.LockHeld(c.GetName(), token)
	}
	return m.h.sess.Client().Txn().If(cmps...)
}
