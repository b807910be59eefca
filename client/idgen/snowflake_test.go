package idgen

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
)

var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func newGen(t *testing.T, src WorkerSource, clk Clock, s Strategy) *Snowflake {
	g, err := NewSnowflake(context.Background(), src, SnowflakeConfig{Clock: clk, Strategy: s, Guard: time.Nanosecond})
	require.NoError(t, err)
	return g
}

func TestLayoutValidateAndDecode(t *testing.T) {
	require.NoError(t, DefaultLayout.Validate(t0))
	bad := []Layout{
		{Epoch: DefaultEpoch, TimeBits: 41, WorkerBits: 10, SeqBits: 11},
		{Epoch: t0.Add(time.Hour), TimeBits: 41, WorkerBits: 10, SeqBits: 12},
		{Epoch: DefaultEpoch, TimeBits: 20, WorkerBits: 10, SeqBits: 33},
	}
	for _, l := range bad {
		require.ErrorIs(t, l.Validate(t0), client.ErrLayoutMismatch, "%+v", l)
	}
	// 30 time bits from 2016 ran out long ago: the uid-generator failure.
	old := Layout{Epoch: time.Date(2016, 5, 20, 0, 0, 0, 0, time.UTC), TimeBits: 30, WorkerBits: 16, SeqBits: 17}
	require.ErrorIs(t, old.Validate(t0), client.ErrExhausted)
	require.InDelta(t, 68.3, DefaultLayout.YearsLeft(t0), 0.5)

	id := DefaultLayout.Compose(12345, 678, 9)
	d, err := DefaultLayout.Decode(id)
	require.NoError(t, err)
	require.Equal(t, DefaultEpoch.Add(12345*time.Millisecond), d.Time)
	require.EqualValues(t, 678, d.Worker)
	require.EqualValues(t, 9, d.Seq)
}

// TestLayoutWithManyTimeBitsDoesNotWrap: End, YearsLeft and Decode
// multiplied a millisecond count into a time.Duration, which wraps past 292
// years, so a layout of 44 or more time bits (valid per Validate) reported
// an End before its epoch and a negative YearsLeft, and decoded late IDs to
// times before the epoch. They now count in milliseconds.
func TestLayoutWithManyTimeBitsDoesNotWrap(t *testing.T) {
	l := Layout{Epoch: DefaultEpoch, TimeBits: 44, WorkerBits: 8, SeqBits: 11}
	require.NoError(t, l.Validate(t0))
	end := time.UnixMilli(DefaultEpoch.UnixMilli() + 1<<44 - 1).UTC()
	require.Equal(t, end, l.End(), "2^44-1 ms (557 years) after the epoch")
	require.InDelta(t, 556.1, l.YearsLeft(t0), 0.1)

	d, err := l.Decode(l.Compose(l.maxTime(), 200, 7))
	require.NoError(t, err)
	require.Equal(t, end, d.Time)
	require.EqualValues(t, 200, d.Worker)
	require.EqualValues(t, 7, d.Seq)
}

func TestSnowflakeIncreasesAndCarriesWorker(t *testing.T) {
	clk := newFakeClock(t0)
	g := newGen(t, newFakeWorkers(), clk, Wait)
	var last int64
	for i := 0; i < 20000; i++ {
		id, err := g.Next()
		require.NoError(t, err)
		require.Greater(t, id, last)
		last = id
		if i%100 == 0 {
			clk.Advance(time.Millisecond)
		}
	}
	d, _ := DefaultLayout.Decode(last)
	require.EqualValues(t, g.WorkerID(), d.Worker)
	require.EqualValues(t, 20000, g.Stats().Issued)
}

// TestRollback drives a 5 ms, 1 s and 1 h backward jump through every
// strategy: an ID is issued only if it is above every earlier one.
func TestRollback(t *testing.T) {
	cases := map[Strategy]map[time.Duration]bool{
		Wait:         {5 * time.Millisecond: true, time.Second: true, time.Hour: false},
		Refuse:       {5 * time.Millisecond: false, time.Second: false, time.Hour: false},
		SpareWorker:  {5 * time.Millisecond: true, time.Second: true, time.Hour: true},
		LogicalClock: {5 * time.Millisecond: true, time.Second: true, time.Hour: false},
	}
	for strategy, jumps := range cases {
		for jump, ok := range jumps {
			t.Run(fmt.Sprintf("%s/%s", strategy, jump), func(t *testing.T) {
				clk := newFakeClock(t0)
				g := newGen(t, newFakeWorkers(), clk, strategy)
				clk.Advance(10 * time.Second) // past the first reservation's catch-up
				var before []int64
				for i := 0; i < 50; i++ {
					id, err := g.Next()
					require.NoError(t, err)
					before = append(before, id)
				}
				clk.Advance(-jump)
				id, err := g.Next()
				if !ok {
					require.ErrorIs(t, err, ErrClockRollback)
					require.EqualValues(t, 1, g.Stats().Rollbacks[strategy])
					return
				}
				require.NoError(t, err)
				for _, b := range before {
					require.NotEqual(t, b, id)
				}
				if strategy != SpareWorker {
					require.Greater(t, id, before[len(before)-1], "per-generator order holds")
				} else {
					// What SpareWorker gives up (docs/ids.md): the spare issues
					// at the rolled-back time, below the IDs before the switch;
					// uniqueness holds by the worker ID.
					d, _ := DefaultLayout.Decode(id)
					require.NotEqual(t, int64(0), d.Worker, "switched to the spare worker ID")
					require.Less(t, id, before[len(before)-1], "the spare's IDs sort below those before the rollback")
				}
				for i := 0; i < 5000; i++ {
					next, err := g.Next()
					require.NoError(t, err)
					require.Greater(t, next, id)
					id = next
				}
			})
		}
	}
}

// TestRestartNeverReusesATimestamp restarts a generator on the same worker
// ID with its clock an hour behind: it must not issue at or below the
// predecessor's reservation.
func TestRestartNeverReusesATimestamp(t *testing.T) {
	src := newFakeWorkers()
	clk := newFakeClock(t0)
	g1 := newGen(t, src, clk, LogicalClock)
	var last int64
	for i := 0; i < 1000; i++ {
		id, err := g1.Next()
		require.NoError(t, err)
		last = id
	}
	require.NoError(t, g1.Close(context.Background()))
	lastD, _ := DefaultLayout.Decode(last)

	// Restart right away: it starts above the reservation, ahead of the
	// clock, without an error.
	g2 := newGen(t, src, clk, Wait)
	require.EqualValues(t, g1.WorkerID(), g2.WorkerID())
	id, err := g2.Next()
	require.NoError(t, err)
	require.Greater(t, id, last)
	require.NoError(t, g2.Close(context.Background()))

	// Restart with the clock an hour behind: the high-water mark refuses.
	clk.Advance(-time.Hour)
	g3 := newGen(t, src, clk, Wait)
	_, err = g3.Next()
	require.ErrorIs(t, err, ErrClockRollback)
	d, _ := DefaultLayout.Decode(id)
	require.True(t, d.Time.After(lastD.Time) || d.Time.Equal(lastD.Time))
}

func TestWorkerLostStopsTheGenerator(t *testing.T) {
	src := newFakeWorkers()
	g := newGen(t, src, newFakeClock(t0), Wait)
	_, err := g.Next()
	require.NoError(t, err)
	close(src.done)
	_, err = g.Next()
	require.ErrorIs(t, err, client.ErrWorkerLost)
}

func TestSnowflakeConcurrentUnique(t *testing.T) {
	g, err := NewSnowflake(context.Background(), newFakeWorkers(), SnowflakeConfig{})
	require.NoError(t, err)
	const goroutines, each = 8, 50000
	ids := make([][]int64, goroutines)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < each; j++ {
				id, err := g.Next()
				if err != nil {
					t.Error(err)
					return
				}
				if j > 0 && id <= ids[i][j-1] {
					t.Errorf("not increasing within a goroutine")
				}
				ids[i] = append(ids[i], id)
			}
		}()
	}
	wg.Wait()
	seen := make(map[int64]bool, goroutines*each)
	for _, list := range ids {
		for _, id := range list {
			require.False(t, seen[id], "duplicate %d", id)
			seen[id] = true
		}
	}
}

// TestQuickRestartsDoNotRatchet restarts generators on one worker ID in
// quick succession while the clock barely moves, each issuing enough IDs to
// run ahead of it. Every restart must start at once: reservations stay
// within the catch-up bound, so a successor never mistakes its
// predecessor's reservation for a clock rollback. (Regression: the 100M-ID
// test saw "clock moved backwards by 3.4s" here.)
func TestQuickRestartsDoNotRatchet(t *testing.T) {
	src := newFakeWorkers()
	clk := newFakeClock(t0)
	var last int64
	for i := 0; i < 20; i++ {
		g := newGen(t, src, clk, Wait)
		for j := 0; j < 3*4096; j++ {
			id, err := g.Next()
			require.NoError(t, err, "restart %d", i)
			require.Greater(t, id, last)
			last = id
		}
		require.NoError(t, g.Close(context.Background()))
		clk.Advance(time.Millisecond)
	}
	d, _ := DefaultLayout.Decode(last)
	require.LessOrEqual(t, d.Time.Sub(clk.Now()), 7*time.Second, "never beyond the catch-up bound")
}

// A worker ID whose mark was reserved to the end of time (by a client the
// server trusted before it bounded reservations) makes Next fail at once,
// not sleep a wrapped, negative wait in a loop forever.
func TestAMarkAtTheEndOfTimeFailsRatherThanSpins(t *testing.T) {
	src := newFakeWorkers()
	src.hw[0] = math.MaxInt64
	for _, s := range []Strategy{Wait, LogicalClock, Refuse} {
		g := newGen(t, src, newFakeClock(t0), s)
		done := make(chan error, 1)
		go func() { _, err := g.Next(); done <- err }()
		select {
		case err := <-done:
			require.ErrorIs(t, err, ErrClockRollback, "strategy %v", s)
		case <-time.After(10 * time.Second):
			t.Fatalf("strategy %v: Next did not return", s)
		}
		require.NoError(t, g.Close(context.Background()))
	}
}

// TestNegativeDurationsAreRefused: NewSnowflake took a negative Reserve,
// whose reservations all end before the clock, and Next then waited for a
// reservation forever. Negative durations (and a Reserve under a
// millisecond) are now refused at start.
func TestNegativeDurationsAreRefused(t *testing.T) {
	for _, cfg := range []SnowflakeConfig{
		{Reserve: -time.Second}, {Reserve: time.Microsecond}, {MaxWait: -1}, {MaxAhead: -time.Millisecond}, {Guard: -time.Second},
	} {
		cfg.Clock = newFakeClock(t0)
		src := newFakeWorkers()
		_, err := NewSnowflake(context.Background(), src, cfg)
		require.ErrorIs(t, err, client.ErrInvalidArgument, "%+v", cfg)
		require.Zero(t, src.leases, "refused before leasing a worker ID")
	}
}

// failingReserve leases like the state machine but refuses every
// reservation (e.g. the client's clock is over an hour ahead of the
// leader's).
type failingReserve struct{ *fakeWorkers }

func (f *failingReserve) Reserve(context.Context, string, int64, int64) (int64, error) {
	return 0, fmt.Errorf("%w: a reservation until ... is outside [0, now+1h]", client.ErrInvalidArgument)
}

// TestNewSnowflakeReleasesOnFailure: NewSnowflake leased a worker ID (and a
// spare), then failed on the first reservation without releasing them, so
// every attempt on a session took more of the pool until the session
// ended. A failed start now releases what it leased.
func TestNewSnowflakeReleasesOnFailure(t *testing.T) {
	src := &failingReserve{newFakeWorkers()}
	for i := 0; i < 5; i++ {
		_, err := NewSnowflake(context.Background(), src, SnowflakeConfig{Clock: newFakeClock(t0), Strategy: SpareWorker})
		require.ErrorIs(t, err, client.ErrInvalidArgument)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	require.Equal(t, 10, src.leases, "each attempt leased a worker ID and a spare")
	for id, held := range src.held {
		require.False(t, held, "worker ID %d still held after the failed starts", id)
	}
}

// invalidFarAhead refuses reservations more than an hour past a fixed
// "leader clock", as the state machine does (INVALID_ID_REQUEST). With a
// gate, each Reserve reports its until on entered and waits for the gate.
type invalidFarAhead struct {
	*fakeWorkers
	leaderMs int64
	gate     chan struct{} // nil: no gate
	entered  chan int64
}

func (f *invalidFarAhead) Reserve(ctx context.Context, pool string, id, until int64) (int64, error) {
	if f.gate != nil {
		f.entered <- until
		<-f.gate
	}
	if until > f.leaderMs+60*60*1000 {
		return 0, fmt.Errorf("%w: a reservation until %d ms is outside [0, now+1h]", client.ErrInvalidArgument, until)
	}
	return f.fakeWorkers.Reserve(ctx, pool, id, until)
}

// TestRefusedRenewalFailsNext steps the clock two hours ahead of the
// cluster's while the generator runs (an NTP step, a VM resume). Every
// renewal was refused with INVALID_ID_REQUEST, the refusal was discarded,
// and Next retried it forever. Next now returns the refusal, and issues
// again once the clock is back.
func TestRefusedRenewalFailsNext(t *testing.T) {
	clk := newFakeClock(t0)
	src := &invalidFarAhead{fakeWorkers: newFakeWorkers(), leaderMs: t0.UnixMilli()}
	g := newGen(t, src, clk, Wait)
	first, err := g.Next()
	require.NoError(t, err)
	clk.Advance(2 * time.Hour)
	done := make(chan error, 1)
	go func() { _, err := g.Next(); done <- err }()
	select {
	case err := <-done:
		require.ErrorIs(t, err, client.ErrInvalidArgument)
	case <-time.After(5 * time.Second):
		t.Fatal("Next did not return within 5s: the refused renewal is retried forever")
	}
	clk.Advance(-2 * time.Hour)
	id, err := g.Next()
	require.NoError(t, err, "a refusal is not sticky")
	require.Greater(t, id, first)
}

// unavailableReserve refuses every renewal as the cluster does without a
// leader, after the first reservation.
type unavailableReserve struct {
	*fakeWorkers
	down atomic.Bool
}

func (f *unavailableReserve) Reserve(ctx context.Context, pool string, id, until int64) (int64, error) {
	if f.down.Load() {
		return 0, fmt.Errorf("%w: no leader", client.ErrUnavailable)
	}
	return f.fakeWorkers.Reserve(ctx, pool, id, until)
}

// TestUnavailableRenewalWaitIsBounded: a reservation that could not be
// renewed (no leader) was waited for forever. Transient failures are now
// retried for MaxWait, and Next then fails with ErrUnavailable.
func TestUnavailableRenewalWaitIsBounded(t *testing.T) {
	clk := newFakeClock(t0)
	src := &unavailableReserve{fakeWorkers: newFakeWorkers()}
	g, err := NewSnowflake(context.Background(), src, SnowflakeConfig{Clock: clk, MaxWait: 100 * time.Millisecond})
	require.NoError(t, err)
	g.renewTimeout = 100 * time.Millisecond
	_, err = g.Next()
	require.NoError(t, err)
	src.down.Store(true)
	clk.Advance(time.Minute) // past the reservation
	start := time.Now()
	_, err = g.Next()
	require.ErrorIs(t, err, client.ErrUnavailable)
	require.Less(t, time.Since(start), 2*time.Second, "bounded by MaxWait plus one renewal's timeout")
	src.down.Store(false)
	_, err = g.Next()
	require.NoError(t, err, "issues again once the cluster is back")
}

// A renewal asked for while the clock ran two hours ahead is refused; a
// caller that came in after the clock was back waited for that renewal
// and failed with its refusal, although a renewal for its own timestamp
// would be granted. It now asks again.
func TestLaterNextDoesNotInheritAStaleRefusal(t *testing.T) {
	clk := newFakeClock(t0)
	src := &invalidFarAhead{fakeWorkers: newFakeWorkers(), leaderMs: t0.UnixMilli()}
	g := newGen(t, src, clk, Wait)
	_, err := g.Next()
	require.NoError(t, err)

	src.gate, src.entered = make(chan struct{}), make(chan int64, 4)
	clk.Advance(2 * time.Hour)
	a := make(chan error, 1)
	go func() { _, err := g.Next(); a <- err }()
	<-src.entered // A's renewal, for two hours ahead, is in flight

	clk.Advance(-2*time.Hour + 10*time.Second) // the clock is back, past the reservation
	b := make(chan error, 1)
	go func() { _, err := g.Next(); b <- err }()
	time.Sleep(100 * time.Millisecond) // B waits for the renewal in flight
	close(src.gate)                    // A's renewal is refused; later ones pass the gate
	go func() {
		for range src.entered {
		}
	}()
	require.ErrorIs(t, <-a, client.ErrInvalidArgument, "A's own timestamp is two hours ahead")
	require.NoError(t, <-b, "B's timestamp is 10 s past the leader's clock: a renewal for it is granted")
}
