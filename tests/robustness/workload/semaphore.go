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
// 2, ..., read and write RWLocks read-write locks (default 1), and take
// Mutexes mutexes (default 2) one at a time or all at once; Pace defaults
// to 30ms.
type SemaphoreConfig struct {
	HolderConfig
	// Semaphores is the number of semaphores (default 2).
	Semaphores int
	// RWLocks is the number of read-write locks (default 1; -1 for none).
	RWLocks int
	// Mutexes is the number of mutexes taken together (default 2; -1 for
	// none).
	Mutexes int
	// Hold is the most a client holds its permits (default 200ms).
	Hold time.Duration
}

func (c *SemaphoreConfig) setDefaults() {
	c.HolderConfig.setDefaults(30 * time.Millisecond)
	if c.Semaphores <= 0 {
		c.Semaphores = 2
	}
	if c.RWLocks == 0 {
		c.RWLocks = 1
	}
	if c.Mutexes == 0 {
		c.Mutexes = 2
	}
	if c.Hold <= 0 {
		c.Hold = 200 * time.Millisecond
	}
}

// SemaphoreWorkload names the semaphore workload in histories.
const SemaphoreWorkload = "semaphores"

// semTarget is a lock the semaphore workload uses, as the model sees it: a
// semaphore of capacity N, a read-write lock (checker.RWCapacity: a reader
// takes one permit, a writer all), or a mutex (capacity 1).
type semTarget struct {
	name     string
	kind     client.LockKind
	capacity int
}

// claim returns the claim of permits of the target (for a read-write lock,
// a read claim for 1, else a write claim).
func (t semTarget) claim(permits int) *client.LockClaim {
	switch t.kind {
	case client.KindRWLock:
		mode := client.ModeExclusive
		if permits == 1 {
			mode = client.ModeShared
		}
		return &client.LockClaim{Name: t.name, Kind: t.kind, Mode: mode}
	case client.KindSemaphore:
		return &client.LockClaim{Name: t.name, Kind: t.kind, Capacity: int64(t.capacity), Permits: int64(permits)}
	}
	return &client.LockClaim{Name: t.name, Kind: t.kind}
}

// permitsOf returns what an inspected holder of the target holds, as
// permits.
func (t semTarget) permitsOf(h *client.LockHolder) int {
	switch t.kind {
	case client.KindRWLock:
		if h.GetMode() == client.ModeShared {
			return 1
		}
		return checker.RWCapacity
	case client.KindSemaphore:
		return int(h.GetPermits())
	}
	return 1
}

// Semaphores is the semaphore workload, which also drives the locks that
// share the semaphore's model: clients take 1 to N permits of one or two
// counting semaphores of capacity N (2 or 3), read or write a read-write
// lock and convert their grant (upgrade, downgrade; a conversion of a
// grant that had ended is answered LOST, recorded as Lost), and take two mutexes
// one at a time or both at once (LockAll), waiting or trying, sometimes
// with a hold time (Redisson's leaseTime) shorter than they keep the
// grant. They hold briefly, sometimes inspect, sometimes force-release a
// semaphore or the read-write lock as an operator would, and release,
// through the SDK's low-level calls (AcquireLocks, ReleaseLocks,
// InspectLock, ForceReleaseLock) so that every outcome is recorded
// exactly. Each grant has its own owner. As in the lock workload, every
// operation records its session's Deadline(), clients sometimes stall
// past their session's TTL while holding, or cut themselves off from the
// cluster until the SDK says their grants are lost, sometimes hold long,
// every grant is followed for the loss-notice checker, and a session in which an
// operation's outcome is unknown is revoked and recorded as seen gone. The
// history is checked against checker.SemModel, per lock; a grant of both
// mutexes is checked as one grant of each, under one token.
type Semaphores struct {
	cfg      SemaphoreConfig
	env      *Env
	targets  []semTarget
	enders   enders
	counters counters
}

// NewSemaphores returns the workload.
func NewSemaphores(cfg SemaphoreConfig) *Semaphores {
	cfg.setDefaults()
	w := &Semaphores{cfg: cfg}
	for i := 0; i < cfg.Semaphores; i++ {
		w.targets = append(w.targets, semTarget{name: fmt.Sprintf("sem/s%d", i), kind: client.KindSemaphore, capacity: 2 + i%2})
	}
	for i := 0; i < cfg.RWLocks; i++ {
		w.targets = append(w.targets, semTarget{name: fmt.Sprintf("sem/rw%d", i), kind: client.KindRWLock, capacity: checker.RWCapacity})
	}
	for i := 0; i < cfg.Mutexes; i++ {
		w.targets = append(w.targets, semTarget{name: fmt.Sprintf("sem/m%d", i), kind: client.KindMutex, capacity: 1})
	}
	return w
}

// Name implements Workload.
func (w *Semaphores) Name() string { return SemaphoreWorkload }

func (w *Semaphores) capacity(name string) int {
	for _, t := range w.targets {
		if t.name == name {
			return t.capacity
		}
	}
	return 0
}

// ofKind returns the targets of kind.
func (w *Semaphores) ofKind(kind client.LockKind) []semTarget {
	var out []semTarget
	for _, t := range w.targets {
		if t.kind == kind {
			out = append(out, t)
		}
	}
	return out
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
// a fresh client must be granted every permit of each lock.
func (w *Semaphores) Finish(ctx context.Context, env *Env) error {
	w.enders.wait()
	var errs []error
	for _, t := range w.targets {
		// Every permit, the write lock, the mutex.
		err := finalGrant(ctx, env, SemaphoreWorkload, t.claim(t.capacity), checker.KindSemAcquire, checker.KindSemRelease, int64(t.capacity))
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Check implements Workload: the model checks everything.
func (w *Semaphores) Check(env *Env, h *history.History) (checker.Stats, []checker.Violation) {
	return checker.Stats{}, nil
}

// semGrant is a held grant of a client: of one lock, or of every mutex at
// once.
type semGrant struct {
	targets []semTarget
	owner   string
	// permits of each target.
	permits int
	hold    time.Duration
	g       *client.Grant
	// call is when the acquire that started the grant's hold clock was
	// invoked; tr follows the grant for the loss-notice checker.
	call int64
	tr   *grantTracker
}

func (g *semGrant) names() []string {
	out := make([]string, len(g.targets))
	for i, t := range g.targets {
		out[i] = t.name
	}
	return out
}

// semClient is one client of the semaphore workload.
type semClient struct {
	w   *Semaphores
	env *Env
	rng *rand.Rand

	cl     *client.Client
	ss     *lockSessions
	stalls int
	// cut is the client's way to the members, which it cuts while
	// holding now and then.
	cut *cutOff
}

func (c *semClient) run(ctx context.Context) {
	cut, endpoints, err := holderCutOff(c.env, c.w.cfg.HolderConfig, &c.w.counters)
	if err != nil {
		c.env.Logf("semaphore client: %v", err)
		return
	}
	defer cut.close()
	c.cut = cut
	cl, err := newClient(ctx, endpoints)
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
	sems, rws, mutexes := c.w.ofKind(client.KindSemaphore), c.w.ofKind(client.KindRWLock), c.w.ofKind(client.KindMutex)
	forcible := append(append([]semTarget(nil), sems...), rws...)
	for pause(ctx, time.Duration(c.rng.Int64N(int64(c.w.cfg.Pace)+1))) {
		sess := c.ss.ensure(ctx)
		if sess == nil {
			return
		}
		r := c.rng.IntN(100)
		switch {
		case r < 12:
			c.inspect(ctx, sess, c.w.targets[c.rng.IntN(len(c.w.targets))], "")
			continue
		case r < 16:
			// Never a mutex: a force-release ends a grant of every
			// mutex, which the per-lock model cannot follow.
			c.force(ctx, sess, forcible[c.rng.IntN(len(forcible))])
			continue
		}
		wait := r >= 35
		var held []*semGrant
		switch k := c.rng.IntN(100); {
		case k < 40 || (len(rws) == 0 && len(mutexes) == 0):
			i := c.rng.IntN(len(sems))
			g := c.acquire(ctx, sess, sems[i:i+1], 1+c.rng.IntN(sems[i].capacity), wait)
			if g == nil {
				continue
			}
			held = append(held, g)
			// Sometimes a second semaphore too, always in name order
			// (no cycle of waits).
			if i+1 < len(sems) && c.rng.IntN(4) == 0 && c.ss.sess == sess {
				if g2 := c.acquire(ctx, sess, sems[i+1:i+2], 1+c.rng.IntN(sems[i+1].capacity), c.rng.IntN(2) == 0); g2 != nil {
					held = append(held, g2)
				}
			}
		case k < 75 && len(rws) > 0:
			i := c.rng.IntN(len(rws))
			permits := 1
			if c.rng.IntN(5) < 2 {
				permits = checker.RWCapacity
			}
			if g := c.acquire(ctx, sess, rws[i:i+1], permits, wait); g != nil {
				held = append(held, g)
			}
		case len(mutexes) > 0:
			targets := mutexes
			if c.rng.IntN(3) == 0 {
				i := c.rng.IntN(len(mutexes))
				targets = mutexes[i : i+1]
			}
			if g := c.acquire(ctx, sess, targets, 1, wait); g != nil {
				held = append(held, g)
			}
		}
		if len(held) > 0 {
			c.hold(ctx, sess, held)
		}
	}
}

// acquire takes permits of each target with a new owner, waiting or not,
// sometimes with a hold time; it returns the grant when granted.
func (c *semClient) acquire(ctx context.Context, sess *client.Session, targets []semTarget, permits int, wait bool) *semGrant {
	kind, timeout := checker.KindSemTry, c.w.cfg.OpTimeout
	if wait {
		kind, timeout = checker.KindSemAcquire, c.w.cfg.Wait
	}
	var hold time.Duration
	if c.rng.IntN(4) == 0 {
		hold = 100*time.Millisecond + time.Duration(c.rng.Int64N(int64(300*time.Millisecond)))
	}
	owner := c.cl.NewOwner()
	ops := make([]history.Op, len(targets))
	claims := make([]*client.LockClaim, len(targets))
	for i, t := range targets {
		ops[i] = c.ss.begin(kind, sess, t.name)
		ops[i].Owner, ops[i].Count, ops[i].HoldMs = owner, int64(permits), hold.Milliseconds()
		if len(targets) > 1 {
			ops[i].Locks = len(targets)
		}
		claims[i] = t.claim(permits)
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	g, err := c.cl.AcquireLocks(actx, sess, owner, claims, client.AcquireOptions{Wait: wait, Hold: hold})
	cancel()
	settleAcquire(ops, g, err, wait, false)
	ops = c.ss.recordAll(ops)
	if err != nil {
		if !wait && errors.Is(err, client.ErrLocked) {
			c.w.counters.add("try refused", 1)
		}
		return nil
	}
	sg := &semGrant{targets: targets, owner: owner, permits: permits, hold: hold, g: g, call: ops[0].Call}
	sg.track(c.env, sess, ops[0].Process, ops[0].Return)
	c.w.counters.add("grants", 1)
	c.w.counters.add(sg.describe(), 1)
	if hold > 0 {
		c.w.counters.add("grants with a hold time", 1)
	}
	return sg
}

// track starts following the grant for the loss-notice checker; granted is
// when its acquire (or conversion) returned it.
func (g *semGrant) track(env *Env, sess *client.Session, process int, granted int64) {
	g.tr = trackSDKGrant(env, sess, history.Grant{Workload: SemaphoreWorkload, Process: process, Owner: g.owner, Locks: g.names(),
		Capacity: g.targets[0].capacity, Permits: g.permits, Token: g.g.Token, HoldMs: g.hold.Milliseconds(),
		Call: g.call, Granted: granted}, g.g)
}

// describe names a grant's kind, for the counters.
func (g *semGrant) describe() string {
	switch t := g.targets[0]; {
	case len(g.targets) > 1:
		return fmt.Sprintf("grants of %d mutexes at once", len(g.targets))
	case t.kind == client.KindMutex:
		return "grants of a mutex"
	case t.kind == client.KindRWLock && g.permits == 1:
		return "read grants"
	case t.kind == client.KindRWLock:
		return "write grants"
	}
	return fmt.Sprintf("grants of %d permits", g.permits)
}

// hold keeps the grants a little, sometimes converting a read-write
// grant, inspecting, stalling past the session's TTL, or cut off from the
// cluster, then releases them (last first).
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
		c.inspect(ctx, sess, held[0].targets[0], held[0].owner)
		for i := len(held) - 1; i >= 0; i-- {
			if ops := c.release(sess, held[i]); ops[0].Status == history.OK && !ops[0].Succeeded {
				c.w.counters.add("stale releases refused", 1)
			}
		}
		return
	}
	if c.cut.whileHolding(ctx, c.rng, held[0].g.Lost()) {
		for i := len(held) - 1; i >= 0; i-- {
			c.release(sess, held[i])
		}
		return
	}
	if g := held[0]; g.targets[0].kind == client.KindRWLock && c.rng.IntN(3) == 0 {
		c.endBeforeConvert(ctx, g)
		c.convert(ctx, sess, g)
	}
	if c.rng.IntN(2) == 0 {
		g := held[c.rng.IntN(len(held))]
		c.inspect(ctx, sess, g.targets[c.rng.IntN(len(g.targets))], g.owner)
	}
	t := time.NewTimer(holdFor(c.rng, c.w.cfg.Hold, c.w.cfg.TTL, &c.w.counters))
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

// endBeforeConvert sometimes ends a grant before it is converted, so that
// the server answers the conversion LOST: it waits until the SDK counts the
// grant's hold time over, and a little longer (the leader starts the hold
// clock when it applies the grant, after the SDK does), or force-releases
// the grant as an operator would.
func (c *semClient) endBeforeConvert(ctx context.Context, g *semGrant) {
	switch n := c.rng.IntN(4); {
	case n == 0 && g.hold > 0:
		c.w.counters.add("conversions after the hold time", 1)
		t := time.NewTimer(2*g.hold + time.Second)
		select {
		case <-g.g.Lost():
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		pause(ctx, g.hold/2)
	case n == 1:
		c.w.counters.add("conversions after a force-release", 1)
		c.forceRelease(ctx, g.targets[0], g.g.Token)
	}
}

// convert upgrades a read grant of a read-write lock, or downgrades a
// write grant, in place.
func (c *semClient) convert(ctx context.Context, sess *client.Session, g *semGrant) {
	kind, permits := checker.KindSemDowngrade, 1
	if g.permits == 1 {
		kind, permits = checker.KindSemUpgrade, checker.RWCapacity
	}
	t := g.targets[0]
	op := c.ss.begin(kind, sess, t.name)
	op.Owner, op.Count, op.HoldMs = g.owner, int64(permits), g.hold.Milliseconds()
	cctx, cancel := context.WithTimeout(ctx, c.w.cfg.Wait)
	ng, err := c.cl.AcquireLocks(cctx, sess, g.owner, []*client.LockClaim{t.claim(permits)},
		client.AcquireOptions{Wait: true, Hold: g.hold, Converts: g.g})
	cancel()
	switch {
	case err == nil:
		op.Status, op.Succeeded, op.Token = history.OK, true, ng.Token
	case errors.Is(err, client.ErrWouldDeadlock):
		op.Status = history.OK
	case errors.Is(err, client.ErrConversionLost):
		// The server answered LOST: the grant had ended there (force-
		// released, its hold time or its session over), and the
		// conversion took nothing and queued nothing. No other error of
		// a conversion is that answer: a transport error or a call given
		// up leaves the outcome unknown (the SDK ends g.g with an error
		// of its own), and the SDK's other ErrLockLost answers follow a
		// grant the server made.
		op.Status, op.Lost = history.OK, true
	case certainFailure(err):
		op.Status, op.Err = history.Fail, errText(err)
	default:
		op.Status, op.Err = history.Unknown, errText(err)
	}
	op = c.ss.record(op)
	switch {
	case err == nil:
		c.w.counters.add(string(kind)+"s", 1)
		// The old grant was given up when the conversion was invoked: the
		// server may have applied it (and granted others a read) at once.
		g.tr.endAt(op.Call)
		g.g.Detach() // the SDK made a new Grant for the converted grant
		if ng.Token != g.g.Token {
			g.call = op.Call // a new grant, its hold timed anew
		}
		g.g, g.permits = ng, permits
		g.track(c.env, sess, op.Process, op.Return)
	case errors.Is(err, client.ErrWouldDeadlock):
		c.w.counters.add("upgrades refused (others read)", 1)
	case op.Lost:
		c.w.counters.add("conversions lost", 1)
	}
}

// release releases a grant under its token, even after ctx ended: one
// operation per lock.
func (c *semClient) release(sess *client.Session, g *semGrant) []history.Op {
	g.tr.end()
	ops := make([]history.Op, len(g.targets))
	for i, t := range g.targets {
		ops[i] = c.ss.begin(checker.KindSemRelease, sess, t.name)
		ops[i].Owner, ops[i].Token, ops[i].Count = g.owner, g.g.Token, int64(g.permits)
		if len(g.targets) > 1 {
			ops[i].Locks = len(g.targets)
		}
	}
	rctx, cancel := context.WithTimeout(context.Background(), c.w.cfg.OpTimeout)
	err := c.cl.ReleaseLocks(rctx, sess, g.owner, g.names(), g.g.Token)
	cancel()
	if err == nil {
		g.tr.released()
	}
	settleRelease(ops, err)
	return c.ss.recordAll(ops)
}

// inspect reads a lock linearizably; self is the client's own grant of
// it, if any. It returns the holders read (none when it failed).
func (c *semClient) inspect(ctx context.Context, sess *client.Session, t semTarget, self string) []checker.SemHolderView {
	op := c.ss.begin(checker.KindSemInspect, sess, t.name)
	op.Self = self
	ictx, cancel := context.WithTimeout(ctx, c.w.cfg.OpTimeout)
	info, _, err := c.cl.InspectLock(ictx, t.name)
	cancel()
	if err != nil {
		op.Status, op.Err = history.Fail, errText(err)
		c.ss.record(op)
		return nil
	}
	op.Status = history.OK
	hs := make([]checker.SemHolderView, 0, len(info.GetHolders()))
	for _, h := range info.GetHolders() {
		hs = append(hs, checker.SemHolderView{Owner: h.GetOwner(), Permits: t.permitsOf(h), Token: h.GetToken()})
		op.Count += int64(t.permitsOf(h))
	}
	op.Holders, op.Value = len(hs), checker.EncodeSemHolders(hs)
	c.ss.record(op)
	return hs
}

// force force-releases a lock as an operator would: every holder, or
// (half the time) the grant of one holder an inspection just read.
func (c *semClient) force(ctx context.Context, sess *client.Session, t semTarget) {
	var token uint64
	if c.rng.IntN(2) == 0 {
		hs := c.inspect(ctx, sess, t, "")
		if len(hs) == 0 {
			return
		}
		token = hs[c.rng.IntN(len(hs))].Token
	}
	c.forceRelease(ctx, t, token)
}

// forceRelease force-releases the holder of a lock under token (every
// holder when 0).
func (c *semClient) forceRelease(ctx context.Context, t semTarget, token uint64) {
	op := history.Op{Kind: checker.KindSemForce, Key: t.name, Token: token, Call: c.env.Recorder.Now()}
	fctx, cancel := context.WithTimeout(ctx, c.w.cfg.OpTimeout)
	n, err := c.cl.ForceReleaseLock(fctx, t.name, token, "robustness workload")
	cancel()
	switch {
	case err == nil:
		op.Status, op.Succeeded, op.Holders = history.OK, true, int(n)
		c.w.counters.add("force-releases", 1)
	case errors.Is(err, client.ErrNotHeld):
		op.Status = history.OK
		c.w.counters.add("force-releases of nothing", 1)
	case certainFailure(err):
		op.Status, op.Err = history.Fail, errText(err)
	default:
		op.Status, op.Err = history.Unknown, errText(err)
	}
	c.ss.record(op)
}
