package workload

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/tests/robustness/checker"
	"github.com/concord-dev/concord/tests/robustness/history"
)

// LockConfig shapes the lock workload: Clients (default 3) contend for
// Locks mutexes (default 2); a stalled client inspects the lock and
// releases it after its session could have ended; Pace defaults to 30ms.
type LockConfig struct {
	HolderConfig
	// Locks is the number of mutexes (default 2).
	Locks int
	// Hold is the most a client holds a lock (default 200ms).
	Hold time.Duration
	// InspectMembers, if set, sends the inspections through these members
	// alone (client i through InspectMembers[i mod len]).
	InspectMembers []int
	// Limit, if set, is the cluster's --max-locks, and no other workload
	// takes locks: the clients then try-lock one mutex or two at once
	// (LockAll), or wait for one, at most checker.MaxTableLocks mutexes;
	// refusals over the limit are recorded, and so is when a wait was
	// answered QUEUED (history.Op.Queued); and the history is checked
	// against the lock-table model (checker.LockTable), which holds the
	// whole table, waiters' places included, to the limit, under the
	// name LockLimitWorkload.
	Limit int
	// RWLocks, under a Limit, is the number of read-write locks beside
	// the mutexes (Locks + RWLocks at most checker.MaxTableLocks): the
	// clients try-lock them to read, mostly, or to write, so that
	// several readers' grants count against the limit at once.
	RWLocks int
	// Semaphores, under a Limit, is the number of semaphores beside them
	// (all of them at most checker.MaxTableLocks), of SemCapacity
	// permits each (default 3): the clients try to take one permit or
	// two, so that several holders count against the limit at once.
	Semaphores  int
	SemCapacity int
}

func (c *LockConfig) setDefaults() {
	c.HolderConfig.setDefaults(30 * time.Millisecond)
	if c.Locks <= 0 {
		c.Locks = 2
	}
	if c.Hold <= 0 {
		c.Hold = 200 * time.Millisecond
	}
	if c.Limit > 0 {
		c.Locks = min(c.Locks, checker.MaxTableLocks)
		c.RWLocks = min(c.RWLocks, checker.MaxTableLocks-c.Locks)
		c.Semaphores = min(c.Semaphores, checker.MaxTableLocks-c.Locks-c.RWLocks)
	} else {
		c.RWLocks, c.Semaphores = 0, 0
	}
	if c.SemCapacity <= 0 {
		c.SemCapacity = 3
	}
}

// LockWorkload names the lock workload in histories.
const LockWorkload = "locks"

// LockLimitWorkload names the lock workload under a lock limit
// (LockConfig.Limit).
const LockLimitWorkload = "lock-limit"

// Locks is the lock workload: clients contend for a few mutexes with Lock
// (waiting), TryLock and InspectLock, through the SDK's low-level calls
// (AcquireLocks, ReleaseLocks, InspectLock) so that every outcome is
// recorded exactly: the token granted, "not held" answers, unknown
// outcomes. Each grant has its own owner, so the model can tell grants
// apart. Sessions are kept alive by the SDK, and every operation records
// the session's Deadline(), which bounds how early its grants may end.
// Clients sometimes stall while holding: they stop keeping the session
// alive and wait past its TTL, then inspect and release (which the server
// must refuse unless a leader change restarted the TTL), or they cut
// themselves off from the cluster (see cutOff) and wait until the SDK
// tells them the lock is lost, then release. Now and then a
// client holds long, until the SDK tells it the lock is lost (see holdFor).
// Every grant is followed until it ends as its holder saw it, for the
// loss-notice checker (history.Grant). After an
// operation of unknown outcome a client revokes the operation's session and
// records when it is seen gone, which bounds the operation. The history is
// checked against checker.LockModel, per lock.
type Locks struct {
	cfg      LockConfig
	env      *Env
	enders   enders
	counters counters
	// reading counts the read grants the clients hold, as they see them
	// (for the counter of reads granted beside another), and sharing the
	// grants of semaphores.
	reading, sharing atomic.Int32
}

// NewLocks returns the workload.
func NewLocks(cfg LockConfig) *Locks {
	cfg.setDefaults()
	return &Locks{cfg: cfg}
}

// Name implements Workload.
func (w *Locks) Name() string {
	if w.cfg.Limit > 0 {
		return LockLimitWorkload
	}
	return LockWorkload
}

// Model implements Workload.
func (w *Locks) Model() *Model {
	if w.cfg.Limit == 0 {
		return lockModel(w.env)
	}
	table := checker.LockTable{Limit: w.cfg.Limit}
	for i := 0; i < w.cfg.Locks; i++ {
		table.Names = append(table.Names, w.lockName(i))
	}
	for i := 0; i < w.cfg.RWLocks; i++ {
		table.RW |= 1 << len(table.Names)
		table.Names = append(table.Names, w.rwName(i))
	}
	for i := 0; i < w.cfg.Semaphores; i++ {
		table.Capacity[len(table.Names)] = w.cfg.SemCapacity
		table.Names = append(table.Names, w.semName(i))
	}
	opt := lockOptions(w.env)
	return &Model{
		Porcupine:     table.Model(),
		Operations:    func(ops []history.Op) []porcupine.Operation { return table.Operations(ops, opt) },
		PartitionName: checker.LockTablePartitionName,
	}
}

func lockOptions(env *Env) checker.LockOptions {
	opt := checker.LockOptions{MaxClockRate: 1}
	if env != nil {
		opt.MaxClockRate = env.FastestClock
	}
	return opt
}

func lockModel(env *Env) *Model {
	opt := lockOptions(env)
	return &Model{
		Porcupine:     checker.LockModel,
		Operations:    func(ops []history.Op) []porcupine.Operation { return checker.LockOperations(ops, opt) },
		PartitionName: checker.LockPartitionName,
	}
}

func (w *Locks) lockName(i int) string { return fmt.Sprintf("lock/m%d", i) }

// rwName names read-write lock i (LockConfig.RWLocks).
func (w *Locks) rwName(i int) string { return fmt.Sprintf("lock/rw%d", i) }

// semName names semaphore i (LockConfig.Semaphores).
func (w *Locks) semName(i int) string { return fmt.Sprintf("lock/s%d", i) }

// semClaim is a claim of permits of semaphore name.
func (w *Locks) semClaim(name string, permits int) *client.LockClaim {
	return &client.LockClaim{Name: name, Kind: client.KindSemaphore, Capacity: int64(w.cfg.SemCapacity), Permits: int64(permits)}
}

// Counters returns what the clients did: grants, stalls, releases the
// server refused.
func (w *Locks) Counters() map[string]int {
	return w.counters.snapshot(w.Name())
}

// Run implements Workload.
func (w *Locks) Run(ctx context.Context, env *Env) error {
	w.env = env
	runClients(w.cfg.Clients, env.Seed, 3000, func(i int, rng *rand.Rand) {
		(&lockClient{w: w, env: env, index: i, rng: rng}).run(ctx)
	})
	return nil
}

// Finish implements Workload: once every session of the run is seen
// gone, each lock must be granted to a fresh client.
func (w *Locks) Finish(ctx context.Context, env *Env) error {
	w.enders.wait()
	var errs []error
	for i := 0; i < w.cfg.Locks; i++ {
		if err := finalLock(ctx, env, w.Name(), w.lockName(i)); err != nil {
			errs = append(errs, err)
		}
	}
	for i := 0; i < w.cfg.RWLocks; i++ {
		claim := &client.LockClaim{Name: w.rwName(i), Kind: client.KindRWLock, Mode: client.ModeExclusive}
		if err := finalGrant(ctx, env, w.Name(), claim, checker.KindLockAcquire, checker.KindLockRelease, 0); err != nil {
			errs = append(errs, err)
		}
	}
	for i := 0; i < w.cfg.Semaphores; i++ {
		// Every permit: none may still be out.
		n := w.cfg.SemCapacity
		if err := finalGrant(ctx, env, w.Name(), w.semClaim(w.semName(i), n), checker.KindLockAcquire, checker.KindLockRelease, int64(n)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Check implements Workload: beyond the model, no token may be granted
// twice (the model rejects that too; this names the two grants).
func (w *Locks) Check(env *Env, h *history.History) (checker.Stats, []checker.Violation) {
	_, vs := checker.CheckLockTokens(h.Of(w.Name()))
	return checker.Stats{}, vs
}

// enders revokes the sessions lock clients give up, in the background,
// and records when each is seen gone.
type enders struct {
	wg sync.WaitGroup
}

// end revokes session id until a revoke is acknowledged or refused because
// the session no longer exists (bounded by two minutes: the cluster may be
// faulted until the heal), and records that observation as a
// KindLockSessionGone operation of workload: no grant of the session
// exists afterwards, and none can be made.
func (e *enders) end(env *Env, workload string, id int64) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		rec := env.Recorder
		// One Call for every attempt: an attempt that timed out may have
		// applied the revoke, and a later one then sees it gone.
		call := rec.Now()
		err := env.Cluster.Do(context.Background(), 2*time.Minute, 3*time.Second, func(ctx context.Context, cl *client.Client) error {
			op := history.Op{Workload: workload, Kind: checker.KindLockSessionGone, Session: id, Call: call}
			_, err := cl.RevokeSession(ctx, id)
			if err != nil && !errors.Is(err, client.ErrSessionExpired) {
				return err
			}
			op.Return, op.Status, op.Process = rec.Now(), history.OK, rec.NewProcess()
			rec.Add(op)
			return nil
		})
		if err != nil && env.Logf != nil {
			env.Logf("%s: session %d not seen gone: %v", workload, id, err)
		}
	}()
}

// wait waits until every session given up has been seen gone (or its
// ender gave up).
func (e *enders) wait() { e.wg.Wait() }

// lockSessions is a client's session management, shared by the lock
// workloads: a session kept alive by the SDK, replaced when lost, orphaned
// (a stall) or ended (after an operation of unknown outcome, so that the
// operation's effect is bounded); every session it made is ended when the
// client stops.
type lockSessions struct {
	env      *Env
	cl       *client.Client
	ttl      time.Duration
	workload string
	enders   *enders
	sess     *client.Session
	old      []*client.Session
	// proc is the client's history process; record starts a new one after
	// an unknown outcome.
	proc int
}

// begin starts recording an operation of kind on key in session sess.
func (s *lockSessions) begin(kind history.Kind, sess *client.Session, key string) history.Op {
	return history.Op{Kind: kind, Key: key, Session: sessionID(sess), TTL: s.ttl.Milliseconds(), Deadline: deadline(s.env, sess),
		Call: s.env.Recorder.Now()}
}

// record completes op and adds it; after an unknown outcome the client
// ends the operation's session (if it had one) and continues as a new
// process.
func (s *lockSessions) record(op history.Op) history.Op {
	return s.recordAll([]history.Op{op})[0]
}

// recordAll completes and adds ops, the parts of one call (one per lock of
// a call on several), as record does: with one return time, and the
// session ended once when the outcome is unknown.
func (s *lockSessions) recordAll(ops []history.Op) []history.Op {
	ret := s.env.Recorder.Now()
	unknown := false
	for i := range ops {
		ops[i].Return, ops[i].Workload, ops[i].Process = ret, s.workload, s.proc
		ops[i] = s.env.Recorder.Add(ops[i])
		unknown = unknown || ops[i].Status == history.Unknown
	}
	if unknown {
		if id := ops[0].Session; id != 0 {
			s.end(id)
		}
		s.proc = s.env.Recorder.NewProcess()
	}
	return ops
}

// ensure returns a live session, making one if needed; nil when ctx ended.
func (s *lockSessions) ensure(ctx context.Context) *client.Session {
	if s.sess != nil && s.sess.Err() == nil {
		return s.sess
	}
	s.orphan()
	for ctx.Err() == nil {
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		sess, err := s.cl.NewSession(sctx, client.WithTTL(s.ttl))
		cancel()
		if err == nil {
			s.sess = sess
			return sess
		}
		pause(ctx, 200*time.Millisecond)
	}
	return nil
}

// orphan stops keeping the current session alive (it expires after its
// TTL) and forgets it.
func (s *lockSessions) orphan() {
	if s.sess == nil {
		return
	}
	s.sess.Orphan()
	s.old = append(s.old, s.sess)
	s.sess = nil
}

// end gives session id up after an operation of unknown outcome in it: it
// is no longer kept alive, and it is revoked in the background.
func (s *lockSessions) end(id int64) {
	if s.sess != nil && s.sess.ID() == id {
		s.sess.Orphan()
		s.sess = nil
	}
	s.enders.end(s.env, s.workload, id)
}

// close ends every session the client made, after its last recorded
// operation.
func (s *lockSessions) close() {
	s.orphan()
	for _, sess := range s.old {
		s.enders.end(s.env, s.workload, sess.ID())
	}
	s.old = nil
}

func sessionID(sess *client.Session) int64 {
	if sess == nil {
		return 0
	}
	return sess.ID()
}

// deadline samples the session's Deadline() for an operation.
func deadline(env *Env, sess *client.Session) int64 {
	if sess == nil {
		return 0
	}
	return env.Recorder.Clock().At(sess.Deadline())
}

// stallFor is how long a stalled holder waits so that its session, no
// longer kept alive, has surely expired unless a leader change restarted
// its TTL: 1.4 TTL at the slowest lease clock, plus 300ms.
func stallFor(env *Env, ttl time.Duration) time.Duration {
	slow := env.SlowestClock
	if slow <= 0 || slow > 1 {
		slow = 1
	}
	return time.Duration(float64(ttl)/slow)*14/10 + 300*time.Millisecond
}

// lockClient is one client of the lock workload.
type lockClient struct {
	w     *Locks
	env   *Env
	index int
	rng   *rand.Rand

	cl        *client.Client
	inspector *client.Client // the client inspections go through
	ss        *lockSessions
	stalls    int
	// cut is the client's way to the members, which it cuts while
	// holding now and then.
	cut *cutOff
}

func (c *lockClient) run(ctx context.Context) {
	cut, endpoints, err := holderCutOff(c.env, c.w.cfg.HolderConfig, &c.w.counters)
	if err != nil {
		c.env.Logf("lock client %d: %v", c.index, err)
		return
	}
	defer cut.close()
	c.cut = cut
	cl, err := newClient(ctx, endpoints)
	if err != nil {
		return
	}
	c.cl, c.inspector = cl, cl
	if ms := c.w.cfg.InspectMembers; len(ms) > 0 {
		if c.inspector, err = newClient(ctx, endpointsOf(c.env, []int{ms[c.index%len(ms)]})); err != nil {
			cl.Close()
			return
		}
		defer c.inspector.Close()
	}
	c.ss = &lockSessions{env: c.env, cl: cl, ttl: c.w.cfg.TTL, workload: c.w.Name(), enders: &c.w.enders}
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
		if c.w.cfg.Semaphores > 0 && c.rng.IntN(6) == 0 {
			// A semaphore, one time in six: one permit or two of its
			// three, so that two or three hold it together; a
			// try-lock.
			name := c.w.semName(c.rng.IntN(c.w.cfg.Semaphores))
			permits := 1 + c.rng.IntN(2)
			if g, owner, tr := c.acquireShared(ctx, sess, c.w.semClaim(name, permits), semClaim); g != nil {
				c.hold(ctx, sess, []string{name}, owner, g, tr, semClaim)
			}
			continue
		}
		if c.w.cfg.RWLocks > 0 && c.rng.IntN(4) == 0 {
			// A read-write lock, one time in four: to read (four times
			// in five), so that readers hold it together, or to write;
			// a try-lock either way.
			rw := c.w.rwName(c.rng.IntN(c.w.cfg.RWLocks))
			mode := readClaim
			if c.rng.IntN(5) == 0 {
				mode = writeClaim
			}
			claim := &client.LockClaim{Name: rw, Kind: client.KindRWLock, Mode: client.ModeExclusive}
			if mode == readClaim {
				claim.Mode = client.ModeShared
			}
			if g, owner, tr := c.acquireShared(ctx, sess, claim, mode); g != nil {
				c.hold(ctx, sess, []string{rw}, owner, g, tr, mode)
			}
			continue
		}
		name := c.w.lockName(c.rng.IntN(c.w.cfg.Locks))
		r := c.rng.IntN(100)
		switch {
		case r < 15:
			c.inspect(ctx, sess, name, "")
		case r < 40 && c.w.cfg.Limit > 0 && c.w.cfg.Locks >= 2:
			// Two mutexes at once (LockAll): all or none, and both
			// counted against the limit.
			i := c.rng.IntN(c.w.cfg.Locks)
			j := (i + 1 + c.rng.IntN(c.w.cfg.Locks-1)) % c.w.cfg.Locks
			names := []string{c.w.lockName(i), c.w.lockName(j)}
			if g, owner, tr := c.acquire(ctx, sess, names, false); g != nil {
				c.hold(ctx, sess, names, owner, g, tr, mutexClaim)
			}
		case r < 40 || (c.w.cfg.Limit > 0 && r >= 65):
			if g, owner, tr := c.acquire(ctx, sess, []string{name}, false); g != nil {
				c.hold(ctx, sess, []string{name}, owner, g, tr, mutexClaim)
			}
		default:
			if g, owner, tr := c.acquire(ctx, sess, []string{name}, true); g != nil {
				c.hold(ctx, sess, []string{name}, owner, g, tr, mutexClaim)
			}
		}
	}
}

// acquire takes the mutexes names at once (LockAll when there are
// several) with a new owner, waiting or not; it returns the grant, its
// owner and its tracker when granted. The call is recorded as one
// operation per mutex, with one call time.
func (c *lockClient) acquire(ctx context.Context, sess *client.Session, names []string, wait bool) (*client.Grant, string, *grantTracker) {
	kind, timeout := checker.KindLockTry, c.w.cfg.OpTimeout
	if wait {
		kind, timeout = checker.KindLockAcquire, c.w.cfg.Wait
	}
	owner := c.cl.NewOwner()
	ops := c.begin(kind, sess, names, owner)
	claims := make([]*client.LockClaim, len(names))
	for i, name := range names {
		claims[i] = &client.LockClaim{Name: name, Kind: client.KindMutex}
	}
	// When the server answered QUEUED: the lock-table model counts the
	// waiter's place from before then (checker.LockTableInput.Phase).
	var queued int64
	actx, cancel := context.WithTimeout(ctx, timeout)
	g, err := c.cl.AcquireLocks(actx, sess, owner, claims, client.AcquireOptions{Wait: wait, OnQueued: func(int64) {
		if queued == 0 {
			queued = c.env.Recorder.Now()
		}
	}})
	cancel()
	settleAcquire(ops, g, err, wait, c.w.cfg.Limit > 0)
	for i := range ops {
		ops[i].Queued = queued
	}
	ops = c.ss.recordAll(ops)
	if ops[0].Quota {
		c.w.counters.add("refused over the limit", 1)
		if len(names) > 1 {
			c.w.counters.add("refused over the limit, two at once", 1)
		}
		if wait {
			c.w.counters.add("waits refused over the limit", 1)
		}
	}
	if queued != 0 {
		c.w.counters.add("waits queued", 1)
		if err == nil {
			c.w.counters.add("waits queued, then granted", 1)
		}
	}
	if err != nil {
		return nil, "", nil
	}
	c.w.counters.add("grants", 1)
	if len(names) > 1 {
		c.w.counters.add("grants of two at once", 1)
	}
	tr := trackSDKGrant(c.env, sess, history.Grant{Workload: c.w.Name(), Process: ops[0].Process, Owner: owner, Locks: names,
		Capacity: 1, Permits: 1, Token: g.Token, Call: ops[0].Call, Granted: ops[0].Return}, g)
	return g, owner, tr
}

// acquireShared try-locks claim, of a read-write lock (to read or to
// write) or of a semaphore, as mode says, with a new owner; it returns the
// grant, its owner and its tracker when granted.
func (c *lockClient) acquireShared(ctx context.Context, sess *client.Session, claim *client.LockClaim, mode claimMode) (*client.Grant, string, *grantTracker) {
	owner := c.cl.NewOwner()
	name := claim.GetName()
	ops := c.begin(checker.KindLockTry, sess, []string{name}, owner)
	capacity, permits, verb := checker.RWCapacity, checker.RWCapacity, "writes"
	switch mode {
	case readClaim:
		permits, verb, ops[0].Shared = 1, "reads", true
	case semClaim:
		capacity, permits, verb = int(claim.GetCapacity()), int(claim.GetPermits()), "semaphore takes"
		ops[0].Count = int64(permits)
	}
	actx, cancel := context.WithTimeout(ctx, c.w.cfg.OpTimeout)
	g, err := c.cl.AcquireLocks(actx, sess, owner, []*client.LockClaim{claim}, client.AcquireOptions{})
	cancel()
	settleAcquire(ops, g, err, false, true)
	ops = c.ss.recordAll(ops)
	switch {
	case ops[0].Quota:
		c.w.counters.add("refused over the limit", 1)
		c.w.counters.add(verb+" refused over the limit", 1)
	case err == nil:
		c.w.counters.add("grants", 1)
		c.w.counters.add(verb+" granted", 1)
		switch {
		case mode == readClaim && c.w.reading.Add(1) > 1:
			c.w.counters.add("reads granted beside another reader", 1)
		case mode == semClaim && c.w.sharing.Add(1) > 1:
			c.w.counters.add("semaphore takes granted beside another holder", 1)
		}
	case ops[0].Status == history.OK:
		c.w.counters.add(verb+" refused as locked", 1)
	}
	if err != nil {
		return nil, "", nil
	}
	tr := trackSDKGrant(c.env, sess, history.Grant{Workload: c.w.Name(), Process: ops[0].Process, Owner: owner, Locks: []string{name},
		Capacity: capacity, Permits: permits, Token: g.Token, Call: ops[0].Call, Granted: ops[0].Return}, g)
	return g, owner, tr
}

// begin starts recording a call of kind on the mutexes names by owner:
// one operation per mutex, all with the call's time.
func (c *lockClient) begin(kind history.Kind, sess *client.Session, names []string, owner string) []history.Op {
	ops := make([]history.Op, len(names))
	for i, name := range names {
		ops[i] = c.ss.begin(kind, sess, name)
		ops[i].Owner, ops[i].Call = owner, ops[0].Call
		if len(names) > 1 {
			ops[i].Locks = len(names)
		}
	}
	return ops
}

// overLimit reports whether an acquire was refused over the cluster's
// lock limit: QUOTA_EXCEEDED, not another refusal that wraps the same
// sentinel (too many sessions, too many waits), and not the last answer
// of a call whose earlier attempt may have been applied (the SDK wraps
// that in ErrUnknownOutcome).
func overLimit(err error) bool {
	var ce *client.Error
	return !errors.Is(err, client.ErrUnknownOutcome) && errors.As(err, &ce) && ce.Reason == "QUOTA_EXCEEDED"
}

// claimMode is what a lock client's grant is: of mutexes, of a
// read-write lock, to read or to write, or of permits of a semaphore.
type claimMode int

const (
	mutexClaim claimMode = iota
	readClaim
	writeClaim
	semClaim
)

// hold keeps the grant of names a little (now and then long), sometimes
// inspecting the first lock (a mutex: the lock-table model reads no
// read-write lock's holders), sometimes stalling past the session's TTL
// or cut off from the cluster until the SDK says the grant is lost, then
// releases it.
func (c *lockClient) hold(ctx context.Context, sess *client.Session, names []string, owner string, g *client.Grant, tr *grantTracker, mode claimMode) {
	defer g.Detach()
	if c.stalls < c.w.cfg.Stalls && c.rng.IntN(12) == 0 {
		c.stalls++
		c.w.counters.add("stalls", 1)
		// Stop keeping the session alive: the SDK gives the grant up at
		// once, the server when the session expires.
		c.ss.orphan()
		pause(ctx, stallFor(c.env, c.w.cfg.TTL))
		if mode == mutexClaim {
			c.inspect(ctx, sess, names[0], owner)
		}
		if ops := c.release(sess, names, owner, g.Token, tr, mode); ops[0].Status == history.OK && !ops[0].Succeeded {
			c.w.counters.add("stale releases refused", 1)
		}
		return
	}
	if c.cut.whileHolding(ctx, c.rng, g.Lost()) {
		if ops := c.release(sess, names, owner, g.Token, tr, mode); ops[0].Status == history.OK && !ops[0].Succeeded {
			c.w.counters.add("stale releases refused", 1)
		}
		return
	}
	if c.rng.IntN(2) == 0 && mode == mutexClaim {
		c.inspect(ctx, sess, names[0], owner)
	}
	t := time.NewTimer(holdFor(c.rng, c.w.cfg.Hold, c.w.cfg.TTL, &c.w.counters))
	select {
	case <-t.C:
	case <-g.Lost():
		c.w.counters.add("grants lost", 1)
	case <-ctx.Done():
	}
	t.Stop()
	c.release(sess, names, owner, g.Token, tr, mode)
}

// holdFor draws how long a client keeps a grant: up to hold, or, one time
// in 40, a long hold of 1.5 TTL, during which the client works until the
// SDK tells it the lock is lost. Faults that cut the session's keep-alives
// then end the grant while it is held, by the SDK's session deadline, which
// the loss-notice checker (checker.CheckLossNotice) holds against the
// grants the lock went to next; short holds end before the faults do.
func holdFor(rng *rand.Rand, hold, ttl time.Duration, counters *counters) time.Duration {
	// One in ten took two thirds of the semaphore workload's operations
	// (1,449-1,861 checked per seed of the long campaign instead of
	// 4,000-8,000): its clients queued behind the long holds.
	if rng.IntN(40) == 0 {
		counters.add("long holds", 1)
		return ttl * 3 / 2
	}
	return time.Duration(rng.Int64N(int64(hold) + 1))
}

// release releases owner's grant of names under token in one call, even
// after ctx ended (a client stopping releases what it holds); tr follows
// the grant, mode says what it is. The call is recorded as one operation
// per lock.
func (c *lockClient) release(sess *client.Session, names []string, owner string, token uint64, tr *grantTracker, mode claimMode) []history.Op {
	tr.end()
	switch mode {
	case readClaim:
		c.w.reading.Add(-1)
	case semClaim:
		c.w.sharing.Add(-1)
	}
	ops := c.begin(checker.KindLockRelease, sess, names, owner)
	for i := range ops {
		ops[i].Token, ops[i].Shared = token, mode == readClaim
	}
	rctx, cancel := context.WithTimeout(context.Background(), c.w.cfg.OpTimeout)
	err := c.cl.ReleaseLocks(rctx, sess, owner, names, token)
	cancel()
	if err == nil {
		tr.released()
	}
	settleRelease(ops, err)
	return c.ss.recordAll(ops)
}

// settleAcquire sets the outcome of the operations of one acquire call
// that returned g and err; limit says whether a refusal over the lock
// limit is an answer (the lock-limit workload) rather than a failure.
func settleAcquire(ops []history.Op, g *client.Grant, err error, wait, limit bool) {
	for i := range ops {
		switch {
		case err == nil:
			ops[i].Status, ops[i].Succeeded, ops[i].Token = history.OK, true, g.Token
		case !wait && errors.Is(err, client.ErrLocked):
			ops[i].Status = history.OK
		case limit && overLimit(err):
			ops[i].Status, ops[i].Quota, ops[i].Err = history.OK, true, errText(err)
		case certainFailure(err):
			ops[i].Status, ops[i].Err = history.Fail, errText(err)
		default:
			// A wait that timed out may have been granted meanwhile
			// (the SDK releases it in the background), as may an
			// acquire whose session turned out gone. The client ends
			// the session, which bounds it.
			ops[i].Status, ops[i].Err = history.Unknown, errText(err)
		}
	}
}

// settleRelease sets the outcome of the operations of one release call
// that returned err.
func settleRelease(ops []history.Op, err error) {
	for i := range ops {
		switch {
		case err == nil:
			ops[i].Status, ops[i].Succeeded = history.OK, true
		case errors.Is(err, client.ErrNotHeld):
			ops[i].Status = history.OK
		case certainFailure(err):
			ops[i].Status, ops[i].Err = history.Fail, errText(err)
		default:
			ops[i].Status, ops[i].Err = history.Unknown, errText(err)
		}
	}
}

// inspect reads name linearizably; self is the owner of the grant the
// client holds, if any.
func (c *lockClient) inspect(ctx context.Context, sess *client.Session, name, self string) {
	op := c.ss.begin(checker.KindLockInspect, sess, name)
	op.Self = self
	ictx, cancel := context.WithTimeout(ctx, c.w.cfg.OpTimeout)
	info, _, err := c.inspector.InspectLock(ictx, name)
	cancel()
	if err != nil {
		op.Status, op.Err = history.Fail, errText(err)
	} else {
		op.Status = history.OK
		op.Holders = len(info.GetHolders())
		if op.Holders > 0 {
			op.Owner, op.Token = info.GetHolders()[0].GetOwner(), info.GetHolders()[0].GetToken()
		}
	}
	c.ss.record(op)
}

// finalLock acquires and releases mutex name from a fresh client after
// the heal (see finalGrant).
func finalLock(ctx context.Context, env *Env, workload, name string) error {
	return finalGrant(ctx, env, workload, &client.LockClaim{Name: name, Kind: client.KindMutex}, checker.KindLockAcquire, checker.KindLockRelease, 0)
}

// finalGrant takes claim from a fresh client after the heal and releases
// it, recording both as operations of kinds acquire and release (count is
// what the model counts the grant as): every session of the run has been
// revoked or is expiring, so it must be granted within 30s.
func finalGrant(ctx context.Context, env *Env, workload string, claim *client.LockClaim, acquire, release history.Kind, count int64) error {
	name := claim.GetName()
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
	op := history.Op{Process: proc, Workload: workload, Kind: acquire, Key: name, Owner: owner, Session: sess.ID(), Count: count, Call: rec.Now()}
	g, err := cl.AcquireLocks(ctx, sess, owner, []*client.LockClaim{claim}, client.AcquireOptions{Wait: true})
	op.Return = rec.Now()
	if err != nil {
		op.Status, op.Err = history.Unknown, errText(err)
		rec.Add(op)
		return fmt.Errorf("%s not granted within 30s of the heal, with every session of the run revoked or expired: %w", name, err)
	}
	op.Status, op.Succeeded, op.Token = history.OK, true, g.Token
	rec.Add(op)
	rel := history.Op{Process: proc, Workload: workload, Kind: release, Key: name, Owner: owner, Session: sess.ID(), Token: g.Token,
		Count: count, Call: rec.Now()}
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
