// Package concurrency offers distributed locks on a concord session:
// Mutex, RWMutex and Semaphore, plus LockAll for several mutexes at once.
//
//	sess, _ := c.NewSession(ctx)
//	m := concurrency.NewMutex(sess, "order:42")
//	if err := m.Lock(ctx); err != nil { ... }
//	defer m.Unlock(ctx)
//	// Guard writes with the fencing token, so a holder that lost the lock
//	// (paused past its session, say) cannot write.
//	_, err := m.Txn().Then(client.OpPut("orders/42", data)).Commit(m.Context())
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
type handle struct {
	sess   *client.Session
	owner  string
	opts   options
	claims []*client.LockClaim

	mu    sync.Mutex
	count int
	grant *client.Grant
}

func newHandle(s *client.Session, claims []*client.LockClaim, opts []Option) *handle {
	return &handle{sess: s, owner: s.Client().NewOwner(), opts: apply(opts), claims: claims}
}

func (h *handle) acquire(ctx context.Context, wait bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.count > 0 {
		if h.grant.Err() != nil {
			return fmt.Errorf("%w: %v", client.ErrLockLost, h.grant.Err())
		}
		h.count++
		return nil
	}
	g, err := h.sess.Client().AcquireLocks(ctx, h.sess, h.owner, h.claims, client.AcquireOptions{Wait: wait, Hold: h.opts.hold})
	if err != nil {
		return err
	}
	h.grant, h.count = g, 1
	return nil
}

func (h *handle) release(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.count == 0 {
		return fmt.Errorf("%w: this handle does not hold %s", client.ErrNotHeld, h.claims[0].GetName())
	}
	h.count--
	if h.count > 0 {
		return nil
	}
	g := h.grant
	h.grant = nil
	return g.Release(ctx)
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
func (m *Mutex) Lock(ctx context.Context) error { return m.h.acquire(ctx, true) }

// TryLock takes the mutex if it is free and nobody queues, and reports
// whether it did.
func (m *Mutex) TryLock(ctx context.Context) (bool, error) { return try(m.h.acquire(ctx, false)) }

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
}

// NewRWMutex returns a handle on the read-write lock called name.
func NewRWMutex(s *client.Session, name string, opts ...Option) *RWMutex {
	rw := &RWMutex{
		read:  newHandle(s, []*client.LockClaim{{Name: name, Kind: client.KindRWLock, Mode: client.ModeShared}}, opts),
		write: newHandle(s, []*client.LockClaim{{Name: name, Kind: client.KindRWLock, Mode: client.ModeExclusive}}, opts),
	}
	// One owner for both: the server sees an upgrade or a downgrade, not
	// two strangers.
	rw.write.owner = rw.read.owner
	return rw
}

func (rw *RWMutex) holding(h *handle) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.count > 0
}

// RLock takes a read lock. While this handle holds the write lock it fails
// with ErrWouldDeadlock: use Downgrade.
func (rw *RWMutex) RLock(ctx context.Context) error {
	if rw.holding(rw.write) {
		return fmt.Errorf("%w: this handle holds the write lock; Downgrade instead", client.ErrWouldDeadlock)
	}
	return rw.read.acquire(ctx, true)
}

// RUnlock releases a read lock.
func (rw *RWMutex) RUnlock(ctx context.Context) error { return rw.read.release(ctx) }

// Lock takes the write lock. While this handle holds a read lock it fails
// with ErrWouldDeadlock (it would wait for itself): use Upgrade.
func (rw *RWMutex) Lock(ctx context.Context) error {
	if rw.holding(rw.read) {
		return fmt.Errorf("%w: this handle holds a read lock; Upgrade instead", client.ErrWouldDeadlock)
	}
	return rw.write.acquire(ctx, true)
}

// TryLock takes the write lock if it is free.
func (rw *RWMutex) TryLock(ctx context.Context) (bool, error) {
	if rw.holding(rw.read) {
		return false, fmt.Errorf("%w: this handle holds a read lock; Upgrade instead", client.ErrWouldDeadlock)
	}
	return try(rw.write.acquire(ctx, false))
}

// Unlock releases the write lock.
func (rw *RWMutex) Unlock(ctx context.Context) error { return rw.write.release(ctx) }

// convert moves the grant of from into to through the server's in-place
// conversion.
func (rw *RWMutex) convert(ctx context.Context, from, to *handle) error {
	from.mu.Lock()
	defer from.mu.Unlock()
	if from.count == 0 {
		return fmt.Errorf("%w: nothing to convert", client.ErrNotHeld)
	}
	if err := to.acquire(ctx, true); err != nil {
		return err
	}
	from.grant.Detach()
	from.grant, from.count = nil, 0
	return nil
}

// Upgrade turns this handle's read lock into the write lock, at once. It
// fails with ErrWouldDeadlock while other readers hold the lock (two
// readers upgrading would wait for each other forever).
func (rw *RWMutex) Upgrade(ctx context.Context) error { return rw.convert(ctx, rw.read, rw.write) }

// Downgrade turns this handle's write lock into a read lock; readers queued
// behind it are let in.
func (rw *RWMutex) Downgrade(ctx context.Context) error { return rw.convert(ctx, rw.write, rw.read) }

// Token returns the fencing token of the grant the handle holds.
func (rw *RWMutex) Token() uint64 {
	if t := rw.write.token(); t != 0 {
		return t
	}
	return rw.read.token()
}

// Context is the context of the grant the handle holds.
func (rw *RWMutex) Context() context.Context {
	if rw.holding(rw.write) {
		return rw.write.context()
	}
	return rw.read.context()
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
	if err := h.acquire(ctx, true); err != nil {
		return nil, err
	}
	sm.mu.Lock()
	sm.handles = append(sm.handles, h)
	sm.mu.Unlock()
	return h.grant, nil
}

// TryAcquire takes n permits if they are free and nobody queues.
func (sm *Semaphore) TryAcquire(ctx context.Context, n int64) (*client.Grant, bool, error) {
	h := sm.handle(n)
	ok, err := try(h.acquire(ctx, false))
	if !ok {
		return nil, false, err
	}
	sm.mu.Lock()
	sm.handles = append(sm.handles, h)
	sm.mu.Unlock()
	return h.grant, true, nil
}

// Release returns the permits of the oldest grant this handle holds.
func (sm *Semaphore) Release(ctx context.Context) error {
	sm.mu.Lock()
	if len(sm.handles) == 0 {
		sm.mu.Unlock()
		return fmt.Errorf("%w: no permits of %q held by this handle", client.ErrNotHeld, sm.name)
	}
	h := sm.handles[0]
	sm.handles = sm.handles[1:]
	sm.mu.Unlock()
	return h.release(ctx)
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
	if err := m.h.acquire(ctx, true); err != nil {
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
