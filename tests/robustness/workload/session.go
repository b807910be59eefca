package workload

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/tests/robustness/checker"
	"github.com/concord-dev/concord/tests/robustness/history"
)

// SessionConfig shapes the session workload.
type SessionConfig struct {
	// Holders keep their sessions alive themselves with KeepAliveOnce,
	// so every refresh is recorded (default 3). SDKHolders let the SDK's
	// keep-alive stream do it and record Session.Deadline() instead
	// (default 1). A negative count means none.
	Holders, SDKHolders int
	// TTL is the sessions' time to live (default 2s).
	TTL time.Duration
	// KeysPerSession is the number of keys bound to each session
	// (default 2).
	KeysPerSession int
}

// Sessions is the session workload: holders create sessions, bind keys to
// them, keep them alive for a while, then revoke them, abandon them, or
// stop refreshing them for longer than the TTL; meanwhile they read their
// keys. checker.CheckSessions then verifies that nothing was expired while
// it was kept alive on time, and nothing outlived its session.
type Sessions struct {
	cfg SessionConfig

	mu         sync.Mutex
	live       map[int64]bool // sessions not seen ended
	unresolved int            // sessions that stopped being refreshed and were never seen to end
	leftovers  []string       // bound keys found after every session was revoked
	finalScan  bool
}

// SessionWorkload names the workload in histories.
const SessionWorkload = "sessions"

// NewSessions returns the workload.
func NewSessions(cfg SessionConfig) *Sessions {
	if cfg.Holders == 0 {
		cfg.Holders = 3
	}
	if cfg.SDKHolders == 0 {
		cfg.SDKHolders = 1
	}
	cfg.Holders, cfg.SDKHolders = max(cfg.Holders, 0), max(cfg.SDKHolders, 0)
	if cfg.TTL <= 0 {
		cfg.TTL = 2 * time.Second
	}
	if cfg.KeysPerSession <= 0 {
		cfg.KeysPerSession = 2
	}
	return &Sessions{cfg: cfg, live: map[int64]bool{}}
}

// Name implements Workload.
func (w *Sessions) Name() string { return SessionWorkload }

// Model implements Workload: session guarantees are timing properties,
// checked by Check rather than by a sequential model.
func (w *Sessions) Model() *Model { return nil }

// Run implements Workload.
func (w *Sessions) Run(ctx context.Context, env *Env) error {
	var wg sync.WaitGroup
	for i := 0; i < w.cfg.Holders+w.cfg.SDKHolders; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := &holder{w: w, env: env, index: i, sdk: i >= w.cfg.Holders,
				rng: rand.New(rand.NewPCG(uint64(env.Seed), uint64(2000+i)))}
			h.run(ctx)
		}()
	}
	wg.Wait()
	return nil
}

func (w *Sessions) setLive(id int64, live bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if live {
		w.live[id] = true
	} else {
		delete(w.live, id)
	}
}

// holder is one session-holding client.
type holder struct {
	w     *Sessions
	env   *Env
	index int
	sdk   bool
	rng   *rand.Rand

	cl   *client.Client
	proc int
	sess *client.Session // sdk holders
	id   int64
	keys []string
	// acked are the keys whose bound put was acknowledged.
	acked map[string]bool
}

func (h *holder) ttl() time.Duration { return h.w.cfg.TTL }

// record completes op and adds it; after an unknown outcome the holder
// continues as a new process.
func (h *holder) record(op history.Op, err error, expiredIsAnswer bool) history.Op {
	op.Return = h.env.Recorder.Now()
	op.Workload = SessionWorkload
	op.Process = h.proc
	op.Session = h.id
	op.TTL = h.ttl().Milliseconds()
	switch {
	case err == nil:
		op.Status = history.OK
	case expiredIsAnswer && errors.Is(err, client.ErrSessionExpired):
		op.Status, op.Expired = history.OK, true
	case errors.Is(err, client.ErrNotFound) && op.Kind == checker.KindBoundGet:
		op.Status, op.Found = history.OK, false
	case op.Kind == checker.KindBoundGet || op.Kind == checker.KindSessionGet || certainFailure(err):
		op.Status, op.Err = history.Fail, errText(err)
	default:
		op.Status, op.Err = history.Unknown, errText(err)
	}
	op = h.env.Recorder.Add(op)
	if op.Status == history.Unknown {
		h.proc = h.env.Recorder.NewProcess()
	}
	return op
}

func (h *holder) begin(kind history.Kind) history.Op {
	op := history.Op{Kind: kind, Call: h.env.Recorder.Now()}
	if h.sess != nil {
		op.Deadline = h.env.Recorder.Clock().At(h.sess.Deadline())
	}
	return op
}

func (h *holder) run(ctx context.Context) {
	var err error
	if h.cl, err = newClient(ctx, h.env.Cluster.Endpoints()); err != nil {
		return
	}
	defer func() { h.cl.Close() }()
	h.proc = h.env.Recorder.NewProcess()
	for gen := 0; ctx.Err() == nil; gen++ {
		h.generation(ctx, gen)
		h.sess, h.id, h.keys, h.acked = nil, 0, nil, nil
	}
}

// expiryBound is how long a session nobody refreshes lives after its last
// refresh at most, with the slowest lease clock of the run, unless a leader
// change restarts its TTL: TTL / slowest rate.
func (h *holder) expiryBound() time.Duration {
	slow := h.env.SlowestClock
	if slow <= 0 || slow > 1 {
		slow = 1
	}
	return time.Duration(float64(h.ttl()) / slow)
}

func (h *holder) generation(ctx context.Context, gen int) {
	ttl := h.ttl()
	// Create.
	op := h.begin(checker.KindSessionCreate)
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	s, err := h.cl.NewSession(cctx, client.WithTTL(ttl), client.WithName(fmt.Sprintf("holder-%d-%d", h.index, gen)))
	cancel()
	if err != nil {
		h.record(op, err, false)
		h.reconnect(ctx)
		return
	}
	h.id = s.ID()
	if h.sdk {
		h.sess = s
	} else {
		// Refreshed by hand with KeepAliveOnce, so each refresh is
		// recorded.
		s.Orphan()
	}
	h.w.setLive(h.id, true)
	h.record(op, nil, false)

	// Bind keys.
	h.acked = map[string]bool{}
	for j := 0; j < h.w.cfg.KeysPerSession; j++ {
		key := fmt.Sprintf("sess/h%d/%d/k%d", h.index, h.id, j)
		h.keys = append(h.keys, key)
		op := h.begin(checker.KindBoundPut)
		op.Key, op.Value = key, fmt.Sprintf("h%d.g%d.k%d", h.index, gen, j)
		pctx, cancel := context.WithTimeout(ctx, ttl/2)
		_, err := h.cl.Put(pctx, key, []byte(op.Value), client.WithSessionID(h.id))
		cancel()
		op = h.record(op, err, true)
		if op.Status == history.OK && !op.Expired {
			h.acked[key] = true
		}
		if op.Expired {
			h.verifyEnded(ctx)
			return
		}
	}

	// Keep it alive for a while, reading the keys in between.
	for round := 0; ; round++ {
		hold := ttl*2 + time.Duration(h.rng.Int64N(int64(3*ttl)))
		if ended := h.hold(ctx, hold); ended || ctx.Err() != nil {
			if ended {
				h.verifyEnded(ctx)
			}
			return
		}
		r := h.rng.IntN(100)
		switch {
		case r < 30:
			h.revoke(ctx)
			h.verifyEnded(ctx)
			return
		case r < 80 && !h.sdk && round < 2:
			// Stop refreshing for longer than the session can live,
			// then try to refresh it: it must be refused, unless a
			// leader change restarted its TTL meanwhile.
			if !pause(ctx, h.expiryBound()*14/10+300*time.Millisecond) {
				return
			}
			op := h.begin(checker.KindKeepAlive)
			kctx, cancel := context.WithTimeout(ctx, ttl/2)
			_, err := h.cl.KeepAliveOnce(kctx, h.id)
			cancel()
			op = h.record(op, err, true)
			if op.Status == history.OK && !op.Expired {
				continue // survived: hold it again
			}
			h.verifyEnded(ctx)
			return
		default:
			// Abandon it.
			if h.sess != nil {
				h.sess.Orphan()
			}
			h.verifyEnded(ctx)
			return
		}
	}
}

func (h *holder) reconnect(ctx context.Context) {
	h.cl.Close()
	cl, err := newClient(ctx, h.env.Cluster.Endpoints())
	if err != nil {
		return // ctx ended; the closed client fails what follows
	}
	h.cl = cl
	h.proc = h.env.Recorder.NewProcess()
}

// hold keeps the session alive for d, refreshing it every TTL/5 (manual
// holders) and reading a bound key in between. It returns true when the
// session was observed ended.
func (h *holder) hold(ctx context.Context, d time.Duration) bool {
	ttl := h.ttl()
	end := time.Now().Add(d)
	lastKA := time.Now()
	for time.Now().Before(end) && ctx.Err() == nil {
		if !h.sdk && time.Since(lastKA) >= ttl/5 {
			lastKA = time.Now()
			op := h.begin(checker.KindKeepAlive)
			kctx, cancel := context.WithTimeout(ctx, ttl/3)
			_, err := h.cl.KeepAliveOnce(kctx, h.id)
			cancel()
			op = h.record(op, err, true)
			if op.Expired {
				return true
			}
			continue
		}
		if h.sdk {
			select {
			case <-h.sess.Done():
				// The SDK can no longer vouch for the session; the
				// server may still hold it. Revoke it and verify.
				h.revoke(ctx)
				return true
			default:
			}
		}
		key := h.keys[h.rng.IntN(len(h.keys))]
		op := h.begin(checker.KindBoundGet)
		op.Key = key
		gctx, cancel := context.WithTimeout(ctx, ttl/4)
		kv, err := h.cl.Get(gctx, key)
		cancel()
		if err == nil {
			op.Found, op.Value = true, string(kv.GetValue())
		}
		op = h.record(op, err, false)
		if op.Status == history.OK && !op.Found && h.acked[key] {
			return true
		}
		pause(ctx, time.Duration(20+h.rng.IntN(80))*time.Millisecond)
	}
	return false
}

func (h *holder) revoke(ctx context.Context) {
	if h.sess != nil {
		h.sess.Orphan()
	}
	op := h.begin(checker.KindSessionRevoke)
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err := h.cl.RevokeSession(rctx, h.id)
	cancel()
	if errors.Is(err, client.ErrSessionExpired) {
		// Already gone: that is an observation, not a revoke.
		op.Kind = checker.KindSessionGet
		h.record(op, err, true)
		return
	}
	h.record(op, err, false)
}

// verifyEnded waits (bounded) until a linearizable session read says the
// session is gone, then reads every bound key, which must be absent. The
// checker judges what was read; this only drives the reads.
func (h *holder) verifyEnded(ctx context.Context) {
	bound := 3*h.expiryBound() + 15*time.Second
	deadline := time.Now().Add(bound)
	gone := false
	for !gone && time.Now().Before(deadline) && ctx.Err() == nil {
		op := h.begin(checker.KindSessionGet)
		gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := h.cl.GetSession(gctx, h.id)
		cancel()
		op = h.record(op, err, true)
		if op.Status == history.OK && op.Expired {
			gone = true
			break
		}
		pause(ctx, 200*time.Millisecond)
	}
	if !gone {
		if ctx.Err() == nil {
			h.w.mu.Lock()
			h.w.unresolved++
			h.w.mu.Unlock()
		}
		return
	}
	h.w.setLive(h.id, false)
	for _, key := range h.keys {
		op := h.begin(checker.KindBoundGet)
		op.Key = key
		gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		kv, err := h.cl.Get(gctx, key)
		cancel()
		if err == nil {
			op.Found, op.Value = true, string(kv.GetValue())
		}
		h.record(op, err, false)
	}
}

// Finish implements Workload: it revokes every session not seen to end,
// then scans for bound keys, of which none may be left.
func (w *Sessions) Finish(ctx context.Context, env *Env) error {
	w.mu.Lock()
	var ids []int64
	for id := range w.live {
		ids = append(ids, id)
	}
	w.mu.Unlock()
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	rec := env.Recorder
	proc := rec.NewProcess()
	var errs []error
	for _, id := range ids {
		err := env.Cluster.Do(ctx, 30*time.Second, 5*time.Second, func(ctx context.Context, cl *client.Client) error {
			op := history.Op{Process: proc, Workload: SessionWorkload, Kind: checker.KindSessionRevoke, Session: id, Call: rec.Now()}
			_, err := cl.RevokeSession(ctx, id)
			op.Return = rec.Now()
			switch {
			case err == nil:
				op.Status = history.OK
			case errors.Is(err, client.ErrSessionExpired):
				op.Kind, op.Status, op.Expired = checker.KindSessionGet, history.OK, true
				err = nil
			default:
				op.Status, op.Err = history.Unknown, errText(err)
				op.Process = rec.NewProcess()
			}
			rec.Add(op)
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("revoking session %d: %w", id, err))
		}
	}
	err := env.Cluster.Do(ctx, 30*time.Second, 5*time.Second, func(ctx context.Context, cl *client.Client) error {
		res, err := cl.Range(ctx, "sess/", client.WithPrefix(), client.WithKeysOnly())
		if err != nil {
			return err
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.finalScan = true
		w.leftovers = nil
		for _, kv := range res.KVs {
			w.leftovers = append(w.leftovers, fmt.Sprintf("%s (session %d)", kv.GetKey(), kv.GetSession()))
		}
		return nil
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("final scan of bound keys: %w", err))
	}
	return errors.Join(errs...)
}

// Check implements Workload.
func (w *Sessions) Check(env *Env, h *history.History) (checker.Stats, []checker.Violation) {
	stats, violations := checker.CheckSessions(h.Of(SessionWorkload), checker.SessionOptions{MaxClockRate: env.FastestClock})
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.finalScan && len(w.leftovers) > 0 {
		violations = append(violations, checker.Violation{
			Checker: "session",
			Summary: fmt.Sprintf("%d bound keys outlived their sessions: every session was revoked or had ended", len(w.leftovers)),
			Details: fmt.Sprint(w.leftovers),
		})
	}
	return stats, violations
}

// Unresolved returns how many sessions stopped being refreshed and were
// never seen to end within the holder's patience.
func (w *Sessions) Unresolved() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.unresolved
}
