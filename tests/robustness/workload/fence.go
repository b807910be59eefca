package workload

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/client/concurrency"
	"github.com/concord-dev/concord/tests/robustness/checker"
	"github.com/concord-dev/concord/tests/robustness/history"
)

// FenceConfig shapes the fenced-resource workload: Clients append to the
// list (default 3); each stalls, or cuts itself off from the cluster,
// between reading the list and writing it back, so that its write comes
// from a stale holder and must be refused; Pace (default 200ms) bounds the
// list's length.
type FenceConfig struct {
	HolderConfig
	// ReadMembers, if set, sends the list reads through these members
	// alone (client i through ReadMembers[i mod len]).
	ReadMembers []int
}

func (c *FenceConfig) setDefaults() { c.HolderConfig.setDefaults(200 * time.Millisecond) }

// FenceWorkload names the fenced-resource workload in histories.
const FenceWorkload = "fence"

// The mutex that guards the list, and the list's key.
const (
	FenceLock = "fence/L"
	FenceList = "fence/list"
)

// Fence is the fenced-resource workload: clients append to a shared list
// kept in one key. Each round, a client takes the mutex FenceLock with the
// SDK's concurrency.Mutex, reads the list, and writes it back with its
// element (checker.FenceEntry, carrying the grant's token) through the
// mutex's fenced transaction (Mutex.Txn: it applies only while the mutex is
// held under the token), once or twice, then unlocks. Clients sometimes
// stall between the read and the write, past their session's TTL, with
// their session no longer kept alive, or cut themselves off from the
// cluster there until the SDK tells them the mutex is lost (see
// cutOff.whileHolding): their write comes from a stale holder and must be
// refused (after a cut-off, unless the server had not yet expired the
// session when the write arrived). Every grant is followed until it ends
// as its holder saw it, for the loss-notice checker (history.Grant). After
// the heal the list is read once more; checker.CheckFence checks it
// against every append, and the mutex's operations (the fenced writes
// included) are checked against checker.LockModel.
type Fence struct {
	cfg    FenceConfig
	env    *Env
	enders enders

	mu        sync.Mutex
	final     string
	finalRead bool
	counters  counters
}

// NewFence returns the workload.
func NewFence(cfg FenceConfig) *Fence {
	cfg.setDefaults()
	return &Fence{cfg: cfg}
}

// Name implements Workload.
func (w *Fence) Name() string { return FenceWorkload }

// Model implements Workload: the mutex's operations.
func (w *Fence) Model() *Model { return lockModel(w.env) }

// Counters returns what the clients did: appends acknowledged, stale
// writes refused, stalls, cut-offs.
func (w *Fence) Counters() map[string]int {
	return w.counters.snapshot(FenceWorkload)
}

// Run implements Workload.
func (w *Fence) Run(ctx context.Context, env *Env) error {
	w.env = env
	runClients(w.cfg.Clients, env.Seed, 4000, func(i int, rng *rand.Rand) {
		(&fenceClient{w: w, env: env, index: i, rng: rng}).run(ctx)
	})
	return nil
}

// Finish implements Workload: it reads the list linearizably, then, once
// every session of the run is seen gone, checks that the mutex is granted
// to a fresh client.
func (w *Fence) Finish(ctx context.Context, env *Env) error {
	w.enders.wait()
	rec := env.Recorder
	proc := rec.NewProcess()
	err := env.Cluster.Do(ctx, 30*time.Second, 5*time.Second, func(ctx context.Context, cl *client.Client) error {
		op := history.Op{Process: proc, Workload: FenceWorkload, Kind: checker.KindFenceRead, Key: FenceList, Call: rec.Now()}
		kv, err := cl.Get(ctx, FenceList)
		op.Return = rec.Now()
		switch {
		case errors.Is(err, client.ErrNotFound):
			op.Status = history.OK
		case err != nil:
			return err
		default:
			op.Status, op.Found, op.Value = history.OK, true, string(kv.GetValue())
		}
		rec.Add(op)
		w.mu.Lock()
		w.final, w.finalRead = op.Value, true
		w.mu.Unlock()
		return nil
	})
	if err != nil {
		err = fmt.Errorf("final read of the fenced list: %w", err)
	}
	return errors.Join(err, finalLock(ctx, env, FenceWorkload, FenceLock))
}

// Check implements Workload.
func (w *Fence) Check(env *Env, h *history.History) (checker.Stats, []checker.Violation) {
	w.mu.Lock()
	final, ok := w.final, w.finalRead
	w.mu.Unlock()
	ops := h.Of(FenceWorkload)
	_, violations := checker.CheckLockTokens(ops)
	if !ok {
		return checker.Stats{}, violations // Finish reported the failed read
	}
	stats, vs := checker.CheckFence(ops, final)
	return stats, append(violations, vs...)
}

// fenceClient is one client of the fenced-resource workload.
type fenceClient struct {
	w     *Fence
	env   *Env
	index int
	rng   *rand.Rand

	cl        *client.Client
	reader    *client.Client // the client list reads go through
	ss        *lockSessions
	proc      int
	grants    int
	stalls    int
	unsettled int64 // session of an operation of unknown outcome in this round
	// cut is the client's way to the members, which it cuts while
	// holding now and then.
	cut *cutOff
}

func (c *fenceClient) run(ctx context.Context) {
	cut, endpoints, err := holderCutOff(c.env, c.w.cfg.HolderConfig, &c.w.counters)
	if err != nil {
		c.env.Logf("fence client %d: %v", c.index, err)
		return
	}
	defer cut.close()
	c.cut = cut
	cl, err := newClient(ctx, endpoints)
	if err != nil {
		return
	}
	c.cl, c.reader = cl, cl
	if ms := c.w.cfg.ReadMembers; len(ms) > 0 {
		if c.reader, err = newClient(ctx, endpointsOf(c.env, []int{ms[c.index%len(ms)]})); err != nil {
			cl.Close()
			return
		}
		defer c.reader.Close()
	}
	c.ss = &lockSessions{env: c.env, cl: cl, ttl: c.w.cfg.TTL, workload: FenceWorkload, enders: &c.w.enders}
	defer func() {
		c.ss.close()
		cl.Close()
	}()
	c.proc = c.env.Recorder.NewProcess()
	var (
		m     *concurrency.Mutex
		mSess *client.Session
	)
	for pause(ctx, time.Duration(c.rng.Int64N(int64(c.w.cfg.Pace)+1))) {
		sess := c.ss.ensure(ctx)
		if sess == nil {
			return
		}
		if sess != mSess {
			m, mSess = concurrency.NewMutex(sess, FenceLock), sess
		}
		c.grants++
		// The mutex's owner is the SDK's; the model tells grants apart
		// by a name of ours.
		owner := fmt.Sprintf("f%d.%d", c.index, c.grants)
		op := c.ss.begin(checker.KindLockAcquire, sess, FenceLock)
		op.Owner = owner
		lctx, cancel := context.WithTimeout(ctx, c.w.cfg.Wait)
		err := m.Lock(lctx)
		cancel()
		switch {
		case err == nil:
			op.Status, op.Succeeded, op.Token = history.OK, true, m.Token()
		case certainFailure(err):
			op.Status, op.Err = history.Fail, errText(err)
		default:
			op.Status, op.Err = history.Unknown, errText(err)
		}
		op = c.record(op)
		if err == nil {
			hctx := m.Context()
			tr := trackGrant(c.env, sess, history.Grant{Workload: FenceWorkload, Process: op.Process, Owner: owner, Locks: []string{FenceLock},
				Capacity: 1, Permits: 1, Token: op.Token, Call: op.Call, Granted: op.Return},
				hctx, func(f func()) { context.AfterFunc(hctx, f) })
			c.appendAll(ctx, sess, m, owner, op.Token, tr)
		}
		c.settle()
	}
}

// record completes op and adds it; after an unknown outcome the client
// continues as a new process, and ends the operation's session once the
// round is over (settle): ending it earlier would end the grant under
// operations of the round still to come, unknown to the model.
func (c *fenceClient) record(op history.Op) history.Op {
	op.Return = c.env.Recorder.Now()
	op.Workload = FenceWorkload
	op.Process = c.proc
	op = c.env.Recorder.Add(op)
	if op.Status == history.Unknown {
		c.unsettled = op.Session
		c.proc = c.env.Recorder.NewProcess()
	}
	return op
}

// settle ends the session of the round's operation of unknown outcome, if
// any.
func (c *fenceClient) settle() {
	if c.unsettled != 0 {
		c.ss.end(c.unsettled)
		c.unsettled = 0
	}
}

// appendAll appends once or twice under the grant, then unlocks. Before its
// first write it sometimes stalls, or is cut off until the SDK says the
// mutex is lost. A write of unknown outcome or a refused one ends the
// appends: a write of this holder still in flight could land after a later
// one of its own.
func (c *fenceClient) appendAll(ctx context.Context, sess *client.Session, m *concurrency.Mutex, owner string, token uint64, tr *grantTracker) {
	stall := c.stalls < c.w.cfg.Stalls && c.rng.IntN(8) == 0
	appends := 1 + c.rng.IntN(2)
	for k := 1; k <= appends && ctx.Err() == nil; k++ {
		read := c.ss.begin(checker.KindFenceRead, sess, FenceList)
		rctx, cancel := context.WithTimeout(ctx, c.w.cfg.OpTimeout)
		kv, err := c.reader.Get(rctx, FenceList)
		cancel()
		switch {
		case errors.Is(err, client.ErrNotFound):
			read.Status = history.OK
		case err != nil:
			read.Status, read.Err = history.Fail, errText(err)
		default:
			read.Status, read.Found, read.Value = history.OK, true, string(kv.GetValue())
		}
		c.record(read)
		if read.Status != history.OK {
			break
		}
		if stall && k == 1 {
			c.stalls++
			c.w.counters.add("stalls", 1)
			c.ss.orphan()
			if !pause(ctx, stallFor(c.env, c.w.cfg.TTL)) {
				break
			}
		}
		// Cut off, the client writes back what it read under a mutex its
		// SDK says is lost: unless its session outlived the cut on the
		// server, the token check refuses the write.
		cut := !stall && k == 1 && c.cut.whileHolding(ctx, c.rng, m.Lost())
		if cut && ctx.Err() != nil {
			break
		}
		entry := checker.FenceEntry(fmt.Sprintf("%s.%d", owner, k), token)
		op := c.ss.begin(checker.KindFencedWrite, sess, FenceLock)
		op.Owner, op.Token, op.Entry, op.Value = owner, token, entry, read.Value+entry
		tctx, cancel := context.WithTimeout(ctx, c.w.cfg.OpTimeout)
		res, err := m.Txn().Then(client.OpPut(FenceList, []byte(op.Value))).Commit(tctx)
		cancel()
		switch {
		case err == nil:
			op.Status, op.Succeeded, op.Rev = history.OK, res.Succeeded, res.Revision
		case certainFailure(err):
			op.Status, op.Err = history.Fail, errText(err)
		default:
			op.Status, op.Err = history.Unknown, errText(err)
		}
		c.record(op)
		switch {
		case op.Status == history.OK && op.Succeeded:
			c.w.counters.add("appends acknowledged", 1)
			if cut {
				// The session outlived the cut on the server: the
				// mutex was still held under the token.
				c.w.counters.add("writes acknowledged after a cut-off", 1)
			}
			continue
		case op.Status == history.OK && stall:
			c.w.counters.add("stale writes refused", 1)
		case op.Status == history.OK && cut:
			c.w.counters.add("writes refused after a cut-off", 1)
		case op.Status == history.OK:
			c.w.counters.add("writes refused", 1)
		}
		break
	}
	// Unlock even after ctx ended: a client stopping releases its grant.
	rel := c.ss.begin(checker.KindLockRelease, sess, FenceLock)
	rel.Owner, rel.Token = owner, token
	tr.end()
	uctx, cancel := context.WithTimeout(context.Background(), c.w.cfg.OpTimeout)
	err := m.Unlock(uctx)
	cancel()
	switch {
	case err == nil:
		rel.Status, rel.Succeeded = history.OK, true
		tr.released()
	case errors.Is(err, client.ErrNotHeld):
		rel.Status = history.OK
	case certainFailure(err):
		rel.Status, rel.Err = history.Fail, errText(err)
	default:
		// Includes ErrLockLost: the SDK had given the grant up, and the
		// server's answer is not told apart.
		rel.Status, rel.Err = history.Unknown, errText(err)
	}
	c.record(rel)
}
