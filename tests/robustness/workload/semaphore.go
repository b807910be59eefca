package workload

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/tests/robustness/checker"
	"github.com/concord-dev/concord/tests/robustness/history"
)

// SemaphoreConfig shapes the semaphore workload: Clients (default 3) take
// permits of Semaphores counting semaphores (default 2), of capacity 2, 3,
// 2, ...; Pace defaults to 30ms.
type SemaphoreConfig struct {
	HolderConfig
	// Semaphores is the number of semaphores (default 2).
	Semaphores int
	// Hold is the most a client holds its permits (default 200ms).
	Hold time.Duration
}

func (c *SemaphoreConfig) setDefaults() {
	c.HolderConfig.setDefaults(30 * time.Millisecond)
	if c.Semaphores <= 0 {
		c.Semaphores = 2
	}
	if c.Hold <= 0 {
		c.Hold = 200 * time.Millisecond
	}
}

// SemaphoreWorkload names the semaphore workload in histories.
const SemaphoreWorkload = "semaphores"

// Semaphores is the semaphore workload: clients take 1 to N permits of one
// or two counting semaphores of capacity N (2 or 3), waiting or trying,
// hold them briefly, sometimes inspect, and release them, through the SDK's
// low-level calls (AcquireLocks, ReleaseLocks, InspectLock) so that every
// outcome is recorded exactly. Each grant has its own owner. As in the lock
// workload, every operation records its session's Deadline(), clients
// sometimes stall past their session's TTL while holding, and a session in
// which an operation's outcome is unknown is revoked and recorded as seen
// gone. The history is checked against checker.SemModel, per semaphore.
type Semaphores struct {
	cfg      SemaphoreConfig
	env      *Env
	enders   enders
	counters counters
}

// NewSemaphores returns the workload.
func NewSemaphores(cfg SemaphoreConfig) *Semaphores {
	cfg.setDefaults()
	return &Semaphores{cfg: cfg}
}

// Name implements Workload.
func (w *Semaphores) Name() string { return SemaphoreWorkload }

func (w *Semaphores) semName(i int) string { return fmt.Sprintf("sem/s%d", i) }

// capacityOf returns semaphore i's capacity: 2, 3, 2, ...
func (w *Semaphores) capacityOf(i int) int { return 2 + i%2 }

func (w *Semaphores) capacity(name string) int {
	for i := 0; i < w.cfg.Semaphores; i++ {
		if w.semName(i) == name {
			return w.capacityOf(i)
		}
	}
	return 0
}

// Model implements Workload.
func (w *Semaphores) Model() *Model {
	opt := checker.SemOptions{LockOptions: checker.LockOptions{MaxClockRate: 1}, Capacity: w.capacity}
	if w.env != nil {
		opt.MaxClockRate = w.env.FastestClock
	}
	return &Model{
		Porcupine:     checker.SemModel,
		Operations:    func(ops []history.Op) []porcupine.Operation { return checker.SemOperations(ops, opt) },
		PartitionName: checker.SemPartitionName,
	}
}

// Counters returns what the clients did.
func (w *Semaphores) Counters() map[string]int {
	return w.counters.snapshot(SemaphoreWorkload)
}

// Run implements Workload.
func (w *Semaphores) Run(ctx context.Context, env *Env) error {
	w.env = env
	runClients(w.cfg.Clients, env.Seed, 6000, func(i int, rng *rand.Rand) {
		(&semClient{w: w, env: env, rng: rng}).run(ctx)
	})
	return nil
}

// Finish implements Workload: once every session of the run is seen gone,
// a fresh client must be granted every permit of each semaphore.
func (w *Semaphores) Finish(ctx context.Context, env *Env) error {
	w.enders.wait()
	var errs []error
	for i := 0; i < w.cfg.Semaphores; i++ {
		if err := w.finalSem(ctx, env, w.semName(i), w.capacityOf(i)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Check implements Workload: the model checks everything.
func (w *Semaphores) Check(env *Env, h *history.History) (checker.Stats, []checker.Violation) {
	return checker.Stats{}, nil
}

// semGrant is a held grant of a client.
type semGrant struct {
	name    string
	owner   string
	permits int
	g       *client.Grant
}

// semClient is one client of the semaphore workload.
type semClient struct {
	w   *Semaphores
	env *Env
	rng *rand.Rand

	cl     *client.Client
	ss     *lockSessions
	stalls int
}

func (c *semClient) run(ctx context.Context) {
	cl, err := newClient(ctx, c.env.Cluster.Endpoints())
	if err != nil {
		return
	}
	c.cl = cl
	c.ss = &lockSessions{env: c.env, cl: cl, ttl: c.w.cfg.TTL, workload: SemaphoreWorkload, enders: &c.w.enders}
	defer func() {
		c.ss.close()
		cl.Close()
	}()
	c.ss.proc = c.env.Recorder.NewProcess()
	for pause(ctx, time.Duration(c.rng.Int64N(int64(c.w.cfg.Pace)+1))) {
		sess := c.ss.ensure(ctx)
		if sess == nil {
			return
		}
		first := c.rng.IntN(c.w.cfg.Semaphores)
		r := c.rng.IntN(100)
		switch {
		case r < 15:
			c.inspect(ctx, sess, c.w.semName(first), "")
		case r < 40:
			if g := c.acquire(ctx, sess, first, false); g != nil {
				c.hold(ctx, sess, []*semGrant{g})
			}
		default:
			g := c.acquire(ctx, sess, first, true)
			if g == nil {
				continue
			}
			held := []*semGrant{g}
			// Sometimes a second semaphore too, always in name order
			// (no cycle of waits).
			if first+1 < c.w.cfg.Semaphores && c.rng.IntN(4) == 0 && c.ss.sess == sess {
				if g2 := c.acquire(ctx, sess, first+1, c.rng.IntN(2) == 0); g2 != nil {
					held = append(held, g2)
				}
			}
			c.hold(ctx, sess, held)
		}
	}
}

// acquire takes 1..N permits of semaphore i with a new owner, waiting or
// not; it returns the grant when granted.
func (c *semClient) acquire(ctx context.Context, sess *client.Session, i int, wait bool) *semGrant {
	name, capacity := c.w.semName(i), c.w.capacityOf(i)
	permits := 1 + c.rng.IntN(capacity)
	kind, timeout := checker.KindSemTry, c.w.cfg.OpTimeout
	if wait {
		kind, timeout = checker.KindSemAcquire, c.w.cfg.Wait
	}
	owner := c.cl.NewOwner()
	op := c.ss.begin(kind, sess, name)
	op.Owner, op.Count = owner, int64(permits)
	actx, cancel := context.WithTimeout(ctx, timeout)
	claim := &client.LockClaim{Name: name, Kind: client.KindSemaphore, Capacity: int64(capacity), Permits: int64(permits)}
	g, err := c.cl.AcquireLocks(actx, sess, owner, []*client.LockClaim{claim}, client.AcquireOptions{Wait: wait})
	cancel()
	switch {
	case err == nil:
		op.Status, op.Succeeded, op.Token = history.OK, true, g.Token
	case !wait && errors.Is(err, client.ErrLocked):
		op.Status = history.OK
	case certainFailure(err):
		op.Status, op.Err = history.Fail, errText(err)
	default:
		// May have been granted meanwhile; the client ends the session.
		op.Status, op.Err = history.Unknown, errText(err)
	}
	c.ss.record(op)
	if err != nil {
		if !wait && errors.Is(err, client.ErrLocked) {
			c.w.counters.add("try refused", 1)
		}
		return nil
	}
	c.w.counters.add("grants", 1)
	c.w.counters.add(fmt.Sprintf("grants of %d permits", permits), 1)
	return &semGrant{name: name, owner: owner, permits: permits, g: g}
}

// hold keeps the grants a little, sometimes inspecting, sometimes stalling
// past the session's TTL, then releases them (last first).
func (c *semClient) hold(ctx context.Context, sess *client.Session, held []*semGrant) {
	defer func() {
		for _, g := range held {
			g.g.Detach()
		}
	}()
	if c.stalls < c.w.cfg.Stalls && c.rng.IntN(12) == 0 {
		c.stalls++
		c.w.counters.add("stalls", 1)
		c.ss.orphan()
		pause(ctx, stallFor(c.env, c.w.cfg.TTL))
		c.inspect(ctx, sess, held[0].name, held[0].owner)
		for i := len(held) - 1; i >= 0; i-- {
			if op := c.release(sess, held[i]); op.Status == history.OK && !op.Succeeded {
				c.w.counters.add("stale releases refused", 1)
			}
		}
		return
	}
	if c.rng.IntN(2) == 0 {
		g := held[c.rng.IntN(len(held))]
		c.inspect(ctx, sess, g.name, g.owner)
	}
	t := time.NewTimer(time.Duration(c.rng.Int64N(int64(c.w.cfg.Hold) + 1)))
	select {
	case <-t.C:
	case <-held[0].g.Lost():
		c.w.counters.add("grants lost", 1)
	case <-ctx.Done():
	}
	t.Stop()
	for i := len(held) - 1; i >= 0; i-- {
		c.release(sess, held[i])
	}
}

// release releases a grant under its token, even after ctx ended.
func (c *semClient) release(sess *client.Session, g *semGrant) history.Op {
	op := c.ss.begin(checker.KindSemRelease, sess, g.name)
	op.Owner, op.Token, op.Count = g.owner, g.g.Token, int64(g.permits)
	rctx, cancel := context.WithTimeout(context.Background(), c.w.cfg.OpTimeout)
	err := c.cl.ReleaseLocks(rctx, sess, g.owner, []string{g.name}, g.g.Token)
	cancel()
	switch {
	case err == nil:
		op.Status, op.Succeeded = history.OK, true
	case errors.Is(err, client.ErrNotHeld):
		op.Status = history.OK
	case certainFailure(err):
		op.Status, op.Err = history.Fail, errText(err)
	default:
		op.Status, op.Err = history.Unknown, errText(err)
	}
	return c.ss.record(op)
}

// inspect reads name linearizably; self is the client's own grant of it,
// if any.
func (c *semClient) inspect(ctx context.Context, sess *client.Session, name, self string) {
	op := c.ss.begin(checker.KindSemInspect, sess, name)
	op.Self = self
	ictx, cancel := context.WithTimeout(ctx, c.w.cfg.OpTimeout)
	info, _, err := c.cl.InspectLock(ictx, name)
	cancel()
	if err != nil {
		op.Status, op.Err = history.Fail, errText(err)
		c.ss.record(op)
		return
	}
	op.Status = history.OK
	hs := make([]checker.SemHolderView, 0, len(info.GetHolders()))
	for _, h := range info.GetHolders() {
		hs = append(hs, checker.SemHolderView{Owner: h.GetOwner(), Permits: int(h.GetPermits()), Token: h.GetToken()})
		op.Count += h.GetPermits()
	}
	op.Holders, op.Value = len(hs), checker.EncodeSemHolders(hs)
	c.ss.record(op)
}

// finalSem acquires every permit of name from a fresh client after the
// heal and releases them, recording both: every session of the run has
// been revoked or is expiring, so they must be granted within 30s.
func (w *Semaphores) finalSem(ctx context.Context, env *Env, name string, capacity int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rec := env.Recorder
	cl, err := newClient(ctx, env.Cluster.Endpoints())
	if err != nil {
		return fmt.Errorf("final acquire of %s: connecting: %w", name, err)
	}
	defer cl.Close()
	var sess *client.Session
	for sess == nil {
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		sess, err = cl.NewSession(sctx, client.WithTTL(10*time.Second))
		scancel()
		if err != nil && !pause(ctx, 200*time.Millisecond) {
			return fmt.Errorf("final acquire of %s: no session: %w", name, err)
		}
	}
	defer func() {
		rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = sess.Close(rctx)
		rcancel()
	}()
	proc := rec.NewProcess()
	owner := "final/" + name
	op := history.Op{Process: proc, Workload: SemaphoreWorkload, Kind: checker.KindSemAcquire, Key: name, Owner: owner,
		Session: sess.ID(), Count: int64(capacity), Call: rec.Now()}
	claim := &client.LockClaim{Name: name, Kind: client.KindSemaphore, Capacity: int64(capacity), Permits: int64(capacity)}
	g, err := cl.AcquireLocks(ctx, sess, owner, []*client.LockClaim{claim}, client.AcquireOptions{Wait: true})
	op.Return = rec.Now()
	if err != nil {
		op.Status, op.Err = history.Unknown, errText(err)
		rec.Add(op)
		return fmt.Errorf("all %d permits of %s not granted within 30s of the heal, with every session of the run revoked or expired: %w", capacity, name, err)
	}
	op.Status, op.Succeeded, op.Token = history.OK, true, g.Token
	rec.Add(op)
	rel := history.Op{Process: proc, Workload: SemaphoreWorkload, Kind: checker.KindSemRelease, Key: name, Owner: owner, Session: sess.ID(),
		Token: g.Token, Count: int64(capacity), Call: rec.Now()}
	err = cl.ReleaseLocks(ctx, sess, owner, []string{name}, g.Token)
	rel.Return = rec.Now()
	g.Detach()
	switch {
	case err == nil:
		rel.Status, rel.Succeeded = history.OK, true
	case errors.Is(err, client.ErrNotHeld):
		rel.Status = history.OK
	default:
		rel.Status, rel.Err = history.Unknown, errText(err)
	}
	rec.Add(rel)
	return nil
}
