package idgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/concord-dev/concord/client"
)

// ErrClockRollback is returned when the wall clock went back and the
// generator's strategy does not let it issue an ID.
var ErrClockRollback = errors.New("idgen: clock moved backwards")

// Strategy is what a snowflake generator does when the wall clock goes
// back behind the last timestamp it issued.
type Strategy int

const (
	// Wait sleeps until the clock catches up, up to MaxWait; beyond that it
	// fails with ErrClockRollback.
	Wait Strategy = iota
	// Refuse fails at once with ErrClockRollback.
	Refuse
	// SpareWorker switches to a spare worker ID leased in advance, whose
	// high-water mark is below the current time; without one, it waits.
	// It gives up per-generator order for not waiting: the IDs issued after
	// the switch carry the rolled-back time and sort below earlier ones.
	SpareWorker
	// LogicalClock keeps issuing from a logical clock ahead of the wall
	// clock, up to MaxAhead; beyond that it fails with ErrClockRollback.
	LogicalClock
)

func (s Strategy) String() string {
	switch s {
	case Refuse:
		return "refuse"
	case SpareWorker:
		return "spare-worker"
	case LogicalClock:
		return "logical-clock"
	default:
		return "wait"
	}
}

// WorkerSource leases worker IDs and keeps their high-water marks. The
// SDK's implementation is SessionWorkers; concord members use their own.
type WorkerSource interface {
	// Lease leases a worker ID of pool and returns it with its high-water
	// mark in Unix milliseconds.
	Lease(ctx context.Context, pool string, bits int, guard time.Duration) (id, highWaterMs int64, err error)
	// Reserve raises the mark of a held worker ID and returns it.
	Reserve(ctx context.Context, pool string, id, untilMs int64) (int64, error)
	// Release frees a worker ID.
	Release(ctx context.Context, pool string, id int64) error
	// Done is closed when the leases end (the session was lost).
	Done() <-chan struct{}
}

// SnowflakeConfig configures a generator. Zero fields take the defaults;
// negative durations, and a Reserve under a millisecond, are refused with
// ErrInvalidArgument.
type SnowflakeConfig struct {
	// Layout defaults to DefaultLayout.
	Layout Layout
	// Pool names the set of worker IDs; default "default". Generators with
	// different layouts need different pools.
	Pool string
	// Guard is how long a freed worker ID waits before it is leased again;
	// default 10s.
	Guard time.Duration
	// Strategy on clock rollback; default Wait.
	Strategy Strategy
	// MaxWait bounds Wait; default 1s.
	MaxWait time.Duration
	// MaxAhead bounds LogicalClock; default 1s.
	MaxAhead time.Duration
	// Reserve is how far ahead the high-water mark is reserved; default
	// 3s. A generator that starts on a worker ID whose previous holder
	// reserved time ahead of this clock runs ahead of it, up to
	// 2*Reserve+1s, until the clock catches up; its reservations never
	// reach further than that, so quick restarts cannot ratchet ahead.
	Reserve time.Duration
	// Clock defaults to the system clock.
	Clock Clock
}

func (c *SnowflakeConfig) setDefaults() {
	if c.Layout == (Layout{}) {
		c.Layout = DefaultLayout
	}
	if c.Pool == "" {
		c.Pool = "default"
	}
	if c.Guard == 0 {
		c.Guard = 10 * time.Second
	}
	if c.MaxWait == 0 {
		c.MaxWait = time.Second
	}
	if c.MaxAhead == 0 {
		c.MaxAhead = time.Second
	}
	if c.Reserve == 0 {
		c.Reserve = 3 * time.Second
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
}

// check refuses durations the generator cannot work with: a negative
// Reserve (or one under a millisecond, the time field's unit) ends every
// reservation at or before the clock, and Next would wait for it forever;
// negative bounds make no sense either.
func (c *SnowflakeConfig) check() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Guard", c.Guard}, {"MaxWait", c.MaxWait}, {"MaxAhead", c.MaxAhead}, {"Reserve", c.Reserve}} {
		if d.v < 0 {
			return fmt.Errorf("%w: SnowflakeConfig.%s is negative (%s)", client.ErrInvalidArgument, d.name, d.v)
		}
	}
	if c.Reserve < time.Millisecond {
		return fmt.Errorf("%w: SnowflakeConfig.Reserve %s is under a millisecond", client.ErrInvalidArgument, c.Reserve)
	}
	return nil
}

// SnowflakeStats counts what a generator did.
type SnowflakeStats struct {
	Issued       int64
	Rollbacks    map[Strategy]int64
	Leases       int64
	Reservations int64
	WorkerID     int64
	YearsLeft    float64
}

type worker struct {
	id    int64
	floor int64 // ms since epoch; only timestamps above it may be issued
}

// Snowflake generates snowflake IDs. It is safe for concurrent use.
type Snowflake struct {
	cfg SnowflakeConfig
	src WorkerSource

	mu       sync.Mutex
	cur      worker
	spare    *worker
	reserved int64 // ms since epoch; timestamps below it are reserved
	last     int64
	seq      int64
	started  bool // the wall clock has caught up with the lease's floor
	renewing bool
	renewed  *sync.Cond
	renewErr error // the last renewal's error; nil after a success
	// renewErrUntil is the reservation (in units) the failed renewal asked
	// for: a refusal for good holds only for a wait that needs as much.
	renewErrUntil int64
	// refused, refusedUntil and refusedAt keep the last refusal for good
	// for a while, even after a later renewal began or succeeded: another
	// waiter, woken first, may have asked again for a nearer timestamp,
	// and a waiter that needs the refused reservation must still get the
	// refusal (it used to wait out MaxWait instead, depending on which
	// waiter the broadcast woke first).
	refused      error
	refusedUntil int64
	refusedAt    time.Time
	lost         error

	renewTimeout time.Duration // bounds one renewal: renewTimeout, shorter in tests

	issued       atomic.Int64
	rollbacks    [4]atomic.Int64
	leases       atomic.Int64
	reservations atomic.Int64
}

// NewSnowflake leases a worker ID (and a spare with SpareWorker) and
// reserves the first stretch of time.
func NewSnowflake(ctx context.Context, src WorkerSource, cfg SnowflakeConfig) (*Snowflake, error) {
	cfg.setDefaults()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if err := cfg.Layout.Validate(cfg.Clock.Now()); err != nil {
		return nil, err
	}
	g := &Snowflake{cfg: cfg, src: src, renewTimeout: renewTimeout}
	g.renewed = sync.NewCond(&g.mu)
	w, err := g.lease(ctx)
	if err != nil {
		return nil, err
	}
	g.cur, g.last, g.seq = w, w.floor, cfg.Layout.maxSeq()
	if cfg.Strategy == SpareWorker {
		sp, err := g.lease(ctx)
		if err != nil {
			g.releaseAll(ctx)
			return nil, fmt.Errorf("leasing a spare worker ID: %w", err)
		}
		g.spare = &sp
	}
	until := g.reserveUntil(cfg.Layout.units(cfg.Clock.Now()))
	hw, err := src.Reserve(ctx, cfg.Pool, w.id, cfg.Layout.unixMs(until))
	if err != nil {
		g.releaseAll(ctx)
		return nil, err
	}
	g.reserved = hw - cfg.Layout.Epoch.UnixMilli()
	g.reservations.Add(1)
	return g, nil
}

// releaseAll frees, best effort, the worker IDs a failed NewSnowflake
// leased: held until the session ends, every failed attempt on a session
// would otherwise take more of the pool. It runs even when ctx has ended
// (a start that timed out must still let go), for at most 2 s.
func (g *Snowflake) releaseAll(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = g.src.Release(ctx, g.cfg.Pool, g.cur.id)
	if g.spare != nil {
		_ = g.src.Release(ctx, g.cfg.Pool, g.spare.id)
	}
}

func (g *Snowflake) lease(ctx context.Context) (worker, error) {
	id, hw, err := g.src.Lease(ctx, g.cfg.Pool, g.cfg.Layout.WorkerBits, g.cfg.Guard)
	if err != nil {
		return worker{}, err
	}
	g.leases.Add(1)
	return worker{id: id, floor: max(hw-g.cfg.Layout.Epoch.UnixMilli(), 0)}, nil
}

// WorkerID returns the worker ID in use.
func (g *Snowflake) WorkerID() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cur.id
}

// Layout returns the generator's layout.
func (g *Snowflake) Layout() Layout { return g.cfg.Layout }

// Stats returns the generator's counters.
func (g *Snowflake) Stats() SnowflakeStats {
	st := SnowflakeStats{Issued: g.issued.Load(), Rollbacks: map[Strategy]int64{}, Leases: g.leases.Load(),
		Reservations: g.reservations.Load(), WorkerID: g.WorkerID(), YearsLeft: g.cfg.Layout.YearsLeft(g.cfg.Clock.Now())}
	for s := range g.rollbacks {
		if n := g.rollbacks[s].Load(); n > 0 {
			st.Rollbacks[Strategy(s)] = n
		}
	}
	return st
}

// Next returns a new ID: unique among every generator of the pool, and
// greater than every ID this generator issued before, except across a
// SpareWorker switch: after a rollback the spare worker ID issues at the
// rolled-back time, so its IDs sort below those issued before the rollback
// (unique still, as that worker ID never issued those timestamps).
//
// When the reservation must be renewed before an ID can be issued, Next
// waits for it. A renewal the cluster refuses fails Next with the refusal
// (ErrInvalidArgument when this clock runs over an hour ahead of the
// leader's); one that fails for a transient reason is retried for MaxWait,
// then Next fails with ErrUnavailable. Either way the generator stays
// usable: a later Next renews again.
func (g *Snowflake) Next() (int64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.check(); err != nil {
		return 0, err
	}
	l := g.cfg.Layout
	for {
		now := l.units(g.cfg.Clock.Now())
		ts := now
		if now < g.last {
			var err error
			if ts, err = g.behind(now); err != nil {
				return 0, err
			}
			if ts < 0 {
				continue // waited or switched workers: read the clock again
			}
		} else {
			g.started = true
		}
		// seq is committed together with ts below, never before: a wait
		// for a reservation must not leave a half-updated state behind.
		seq := int64(0)
		if ts == g.last {
			if g.seq < l.maxSeq() {
				seq = g.seq + 1
			} else if ts+1 <= now || g.logical(now) {
				ts++
			} else {
				// This millisecond is full: wait for the next one.
				g.mu.Unlock()
				g.cfg.Clock.Sleep(50 * time.Microsecond)
				g.mu.Lock()
				continue
			}
		}
		if ts > l.maxTime() {
			return 0, fmt.Errorf("%w: the time field ended on %s", client.ErrExhausted, l.End().Format(time.RFC3339))
		}
		if ts >= g.reserved {
			if err := g.waitReserved(ts); err != nil {
				return 0, err
			}
			continue
		}
		if ts+g.cfg.Reserve.Milliseconds()/3 >= g.reserved {
			g.renewAsync()
		}
		g.seq = seq
		g.last = ts
		g.issued.Add(1)
		return l.Compose(ts, g.cur.id, g.seq), nil
	}
}

// catchUp bounds how far ahead of the wall clock a generator runs while
// catching up with a worker ID's high-water mark, in ms. Reservations never
// reach past now+catchUp either, so the next holder of the worker ID finds
// the mark at most that far ahead and can start at once.
func (g *Snowflake) catchUp() int64 { return 2*g.cfg.Reserve.Milliseconds() + 1000 }

// reserveUntil is how far to reserve at wall-clock time now: Reserve past
// the last timestamp, but not beyond the catch-up bound.
func (g *Snowflake) reserveUntil(now int64) int64 {
	r := g.cfg.Reserve.Milliseconds()
	return max(now+r, min(g.last+r, now+g.catchUp()))
}

// logical reports whether the generator may run ahead of the wall clock
// now: while catching up with a new lease's floor, or with LogicalClock.
func (g *Snowflake) logical(now int64) bool {
	ahead := g.last + 1 - now
	if !g.started && ahead <= g.catchUp() {
		return true
	}
	return g.cfg.Strategy == LogicalClock && ahead <= g.cfg.MaxAhead.Milliseconds()
}

// behind handles a wall clock behind the last issued timestamp. It returns
// the timestamp to use, or -1 to read the clock again.
func (g *Snowflake) behind(now int64) (int64, error) {
	if !g.started && g.last-now <= g.catchUp() {
		// A new lease starts above its predecessor's reservation: run ahead
		// until the clock catches up. This is not a rollback.
		return g.last, nil
	}
	back := msDuration(g.last - now)
	strategy := g.cfg.Strategy
	if strategy == SpareWorker {
		if g.spare != nil && g.spare.floor < now {
			g.rollbacks[SpareWorker].Add(1)
			return -1, g.switchWorker(now)
		}
		strategy = Wait
	}
	g.rollbacks[strategy].Add(1)
	switch strategy {
	case Refuse:
		return 0, fmt.Errorf("%w by %s (strategy refuse)", ErrClockRollback, back)
	case LogicalClock:
		if back > g.cfg.MaxAhead {
			return 0, fmt.Errorf("%w by %s, beyond the logical clock's bound of %s", ErrClockRollback, back, g.cfg.MaxAhead)
		}
		return g.last, nil
	default:
		if back > g.cfg.MaxWait {
			return 0, fmt.Errorf("%w by %s, beyond the wait bound of %s", ErrClockRollback, back, g.cfg.MaxWait)
		}
		g.mu.Unlock()
		g.cfg.Clock.Sleep(back + time.Millisecond)
		g.mu.Lock()
		return -1, g.check()
	}
}

// switchWorker moves to the spare worker ID, whose floor is below now; the
// worker in use becomes the spare, usable again once the clock passes what
// was reserved for it.
func (g *Snowflake) switchWorker(now int64) error {
	sp := *g.spare
	until := max(now, sp.floor) + g.cfg.Reserve.Milliseconds()
	hw, err := g.src.Reserve(context.Background(), g.cfg.Pool, sp.id, g.cfg.Layout.unixMs(until))
	if err != nil {
		return g.fail(err)
	}
	g.reservations.Add(1)
	old := worker{id: g.cur.id, floor: g.reserved}
	g.cur, g.spare = sp, &old
	g.reserved = hw - g.cfg.Layout.Epoch.UnixMilli()
	g.last, g.seq = sp.floor, g.cfg.Layout.maxSeq()
	g.started = false
	return nil
}

func (g *Snowflake) check() error {
	if g.lost != nil {
		return g.lost
	}
	select {
	case <-g.src.Done():
		g.lost = fmt.Errorf("%w: the session holding worker ID %d ended", client.ErrWorkerLost, g.cur.id)
		return g.lost
	default:
		return nil
	}
}

func (g *Snowflake) fail(err error) error {
	if errors.Is(err, client.ErrWorkerLost) || errors.Is(err, client.ErrSessionExpired) {
		g.lost = fmt.Errorf("%w: %v", client.ErrWorkerLost, err)
		return g.lost
	}
	return err
}

// refusalMemory is how long a refusal for good answers the waits that need
// as much: a refusal is of a reservation over an hour past the leader's
// clock, which stays refused far longer.
const refusalMemory = 2 * time.Second

// renewTimeout bounds one renewal of the reservation.
const renewTimeout = 10 * time.Second

// renewAsync raises the reservation in the background.
func (g *Snowflake) renewAsync() {
	if g.renewing {
		return
	}
	g.renewing = true
	id := g.cur.id
	until := g.reserveUntil(g.cfg.Layout.units(g.cfg.Clock.Now()))
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), g.renewTimeout)
		hw, err := g.src.Reserve(ctx, g.cfg.Pool, id, g.cfg.Layout.unixMs(until))
		cancel()
		g.mu.Lock()
		defer g.mu.Unlock()
		g.renewing = false
		g.renewErr = nil
		if err != nil {
			err = g.fail(err)
			if id == g.cur.id {
				g.renewErr = fmt.Errorf("idgen: renewing the reservation of worker ID %d: %w", id, err)
				g.renewErrUntil = until
				if !transient(err) {
					g.refused, g.refusedUntil, g.refusedAt = g.renewErr, until, time.Now()
				}
			}
		} else if id == g.cur.id {
			g.reserved = max(g.reserved, hw-g.cfg.Layout.Epoch.UnixMilli())
			g.reservations.Add(1)
		}
		g.renewed.Broadcast()
	}()
}

// transient reports whether a failed renewal may succeed when retried: the
// cluster was unavailable or the call ran out of time. Any other refusal
// (INVALID_ID_REQUEST for a reservation over an hour past the leader's
// clock, because this clock runs ahead) would be refused again.
func transient(err error) bool {
	return errors.Is(err, client.ErrUnavailable) || errors.Is(err, client.ErrUnknownOutcome) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// waitReserved blocks until the reservation covers ts. A reservation is
// capped at the catch-up bound, so when ts sits at the cap the generator
// also waits for the clock to move.
//
// A renewal refused for good fails the wait at once with the refusal; one
// that failed for a transient reason is retried for up to MaxWait, so the
// wait (counted on the monotonic clock, not the generator's Clock, which
// may jump) ends within MaxWait plus one renewal's timeout. Before, both
// were retried forever and Next never returned.
func (g *Snowflake) waitReserved(ts int64) error {
	start := time.Now()
	for ts >= g.reserved {
		if err := g.check(); err != nil {
			return err
		}
		if time.Since(start) > g.cfg.MaxWait {
			return g.notReserved(ts, time.Since(start))
		}
		before := g.reserved
		g.renewAsync()
		g.renewed.Wait()
		if g.refused != nil && g.refusedUntil <= g.reserveUntil(ts) && time.Since(g.refusedAt) < refusalMemory {
			// Refused for a reservation this wait needs, even if another
			// waiter, woken first, has asked again since for less.
			return g.refused
		}
		if g.renewErr != nil && !transient(g.renewErr) {
			if g.renewErrUntil <= g.reserveUntil(ts) {
				return g.renewErr
			}
			// Refused for a reservation further out than this wait
			// needs (asked by an earlier caller while the clock ran
			// ahead, and it has come back): ask again for this one.
			continue
		}
		if g.reserved == before {
			pause := time.Millisecond
			if g.renewErr != nil {
				pause = 10 * time.Millisecond // do not hammer an unavailable cluster
			}
			g.mu.Unlock()
			g.cfg.Clock.Sleep(pause)
			g.mu.Lock()
		}
	}
	return nil
}

// notReserved is the error of a wait for a reservation that ran out of
// time: the renewals kept failing, or they succeeded but the clock stayed
// so far behind ts that no reservation within the catch-up bound covers
// it.
func (g *Snowflake) notReserved(ts int64, waited time.Duration) error {
	waited = waited.Round(time.Millisecond)
	if g.renewErr != nil {
		return fmt.Errorf("%w: waited %s for a reservation: %w", client.ErrUnavailable, waited, g.renewErr)
	}
	return fmt.Errorf("%w: waited %s for a reservation covering timestamp %s: the clock is too far behind it",
		ErrClockRollback, waited, g.cfg.Layout.at(ts).Format(time.RFC3339Nano))
}

// Close frees the worker IDs. The generator must not be used afterwards.
func (g *Snowflake) Close(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.lost == nil {
		g.lost = errors.New("idgen: generator closed")
	}
	err := g.src.Release(ctx, g.cfg.Pool, g.cur.id)
	if g.spare != nil {
		err = errors.Join(err, g.src.Release(ctx, g.cfg.Pool, g.spare.id))
	}
	return err
}

// SessionWorkers leases worker IDs through the SDK, bound to a session.
type SessionWorkers struct {
	Session *client.Session
	owner   string
}

// NewSessionWorkers returns a WorkerSource on sess.
func NewSessionWorkers(sess *client.Session) *SessionWorkers {
	return &SessionWorkers{Session: sess, owner: sess.Client().NewOwner()}
}

// Lease implements WorkerSource.
func (s *SessionWorkers) Lease(ctx context.Context, pool string, bits int, guard time.Duration) (int64, int64, error) {
	return s.Session.Client().LeaseWorker(ctx, s.Session, pool, bits, s.owner, guard)
}

// Reserve implements WorkerSource.
func (s *SessionWorkers) Reserve(ctx context.Context, pool string, id, untilMs int64) (int64, error) {
	return s.Session.Client().ReserveWorker(ctx, s.Session, pool, id, s.owner, untilMs)
}

// Release implements WorkerSource.
func (s *SessionWorkers) Release(ctx context.Context, pool string, id int64) error {
	return s.Session.Client().ReleaseWorker(ctx, s.Session, pool, id, s.owner)
}

// Done implements WorkerSource.
func (s *SessionWorkers) Done() <-chan struct{} { return s.Session.Done() }

// msDuration is ms milliseconds as a Duration, saturating where the
// product would wrap: a mark reserved far ahead (a worker ID another
// client reserved to the end of time) must read as far ahead, not as a
// negative wait that a loop would retry forever.
func msDuration(ms int64) time.Duration {
	if ms > math.MaxInt64/int64(time.Millisecond) {
		return math.MaxInt64
	}
	if ms < math.MinInt64/int64(time.Millisecond) {
		return math.MinInt64
	}
	return time.Duration(ms) * time.Millisecond
}
