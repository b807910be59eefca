package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/concord-dev/concord/bench/internal/cputime"
	"github.com/concord-dev/concord/bench/internal/load"
	"github.com/concord-dev/concord/bench/internal/profile"
)

// Workloads.
const (
	Distinct = "distinct" // each worker locks its own key
	Hot      = "hot"      // every worker contends for one key
)

// runWorkloads runs the workloads of -workloads, in order, against b;
// concord's endpoints (nil for other systems) are profiled under -pprof.
func runWorkloads(ctx context.Context, sys string, nodes int, b backend, srv cputime.Source, concord []string, o options) ([]Result, error) {
	var results []Result
	for _, wl := range o.workloads {
		clients := o.clients
		if wl == Hot {
			clients = o.hotClients
		}
		fmt.Fprintf(os.Stderr, "%s, %d nodes: %s, %d clients, %s + %s\n", sys, nodes, wl, clients, o.warmup, o.duration)
		r, err := runWorkload(ctx, sys, nodes, wl, clients, b, srv, concord, o)
		if err != nil {
			return results, err
		}
		results = append(results, r)
	}
	return results, ctx.Err()
}

// keyState is what the workers know about one lock, to check it.
type keyState struct {
	name       string
	inside     atomic.Int32  // holders between acquiring and releasing
	lastUnlock atomic.Int64  // UnixNano when the last holder began to unlock; 0: none this phase
	lastWorker atomic.Int64  // the worker that unlocked last
	lastToken  atomic.Uint64 // fencing token of the last acquisition
}

// checks counts the safety violations of a workload, warmup included.
type checks struct {
	overlaps, tokens atomic.Int64
}

// enter records an acquisition with token tok (0: no token) by worker w.
func (k *keyState) enter(c *checks, w int, tok uint64) {
	if n := k.inside.Add(1); n > 1 {
		c.overlaps.Add(1)
		fmt.Fprintf(os.Stderr, "  VIOLATION: %q: worker %d acquired it while %d other holder(s) were inside\n", k.name, w, n-1)
	}
	if tok != 0 {
		if old := k.lastToken.Swap(tok); tok <= old {
			c.tokens.Add(1)
			fmt.Fprintf(os.Stderr, "  VIOLATION: %q: worker %d got fencing token %d after token %d\n", k.name, w, tok, old)
		}
	}
}

// leave records that holder w is about to unlock.
func (k *keyState) leave(w int) {
	k.inside.Add(-1)
	k.lastWorker.Store(int64(w))
	k.lastUnlock.Store(time.Now().UnixNano())
}

// workerStats is one worker's measurements of a phase.
type workerStats struct {
	// lat is of a lock+unlock cycle (distinct) or of the wait for the lock
	// (hot), and holds the failed cycles.
	lat load.Sample
	// handoffs (hot) is from the previous holder's unlock start to this
	// acquisition, when the previous holder was another worker.
	handoffs load.Sample
	// self (hot) counts acquisitions by the worker that released last: an
	// unfair lock (redsync polls) lets the releasing worker take it back
	// before the waiters; those are not handoffs.
	self int
}

// runWorkload creates a session and lock handle per worker, runs an
// unmeasured warmup and then the measured phase, and releases the sessions.
func runWorkload(ctx context.Context, sys string, nodes int, wl string, clients int, b backend, srv cputime.Source, concord []string, o options) (Result, error) {
	keys := make([]*keyState, clients)
	lockers := make([]locker, 0, clients)
	defer func() {
		var wg sync.WaitGroup
		for _, l := range lockers {
			wg.Go(l.close)
		}
		wg.Wait()
	}()
	hot := &keyState{name: "lockbench/hot"}
	for w := range clients {
		keys[w] = hot
		if wl == Distinct {
			keys[w] = &keyState{name: fmt.Sprintf("lockbench/distinct/%d", w)}
		}
		l, err := b.newLocker(ctx, w, keys[w].name)
		if err != nil {
			return Result{}, fmt.Errorf("session for worker %d: %w", w, err)
		}
		lockers = append(lockers, l)
	}
	var c checks
	runPhase(ctx, wl, keys, lockers, &c, o.warmup, o.opTimeout, o.hold)
	var prof *profile.Profile
	base := filepath.Join(o.pprofDir, fmt.Sprintf("%s-%dnodes-%s", sys, nodes, wl))
	if o.pprofDir != "" && concord != nil {
		prof = profile.Start(ctx, concord, o.duration, base+".pprof")
	}
	cpu := cputime.Start(srv)
	lat, handoffs, self := runPhase(ctx, wl, keys, lockers, &c, o.duration, o.opTimeout, o.hold)
	r := newResult(sys, nodes, wl, clients, lat, handoffs, self, &c)
	cores := cpu.Stop()
	r.setCores(cores)
	if prof != nil {
		if err := prof.Wait(); err != nil {
			fmt.Fprintf(os.Stderr, "  no profile: %v\n", err)
		}
		if err := profile.SaveAfter(ctx, concord, base); err != nil {
			fmt.Fprintf(os.Stderr, "  not all saved: %v\n", err)
		}
	}
	if sys == "redis" {
		r.Note = fmt.Sprintf("redsync, 1 instance, retry delay %s (polling, not fair)", o.redisRetry)
	}
	if lat.Errors > 0 {
		fmt.Fprintf(os.Stderr, "  %d errors, the first: %v\n", lat.Errors, lat.FirstErr)
	}
	cores.Warn(os.Stderr)
	return r, ctx.Err()
}

// runPhase runs the workers for d and returns the latencies (cycles for
// distinct, waits for hot) and, for hot, handoffs between workers, of the
// cycles (acquisitions) that ended within d, and how many acquisitions
// were by the worker that had released last. Each holder stays inside for hold.
func runPhase(ctx context.Context, wl string, keys []*keyState, lockers []locker, c *checks, d, opTimeout, hold time.Duration) (lat, handoffs *load.Sample, self int) {
	for _, k := range keys {
		k.lastUnlock.Store(0)
	}
	until := time.Now().Add(d)
	stats := make([]workerStats, len(lockers))
	var wg sync.WaitGroup
	for w := range lockers {
		wg.Go(func() { work(ctx, wl == Hot, w, keys[w], lockers[w], c, until, opTimeout, hold, &stats[w]) })
	}
	wg.Wait()
	lats, hands := make([]*load.Sample, len(stats)), make([]*load.Sample, len(stats))
	for i := range stats {
		lats[i], hands[i] = &stats[i].lat, &stats[i].handoffs
		self += stats[i].self
	}
	return load.Merge(lats, d), load.Merge(hands, d), self
}

// work is one worker's closed loop: lock, check, unlock, until until.
func work(ctx context.Context, hot bool, w int, k *keyState, l locker, c *checks, until time.Time, opTimeout, hold time.Duration, s *workerStats) {
	for ctx.Err() == nil {
		begin := time.Now()
		if !begin.Before(until) {
			return
		}
		octx, cancel := context.WithTimeout(ctx, opTimeout)
		err := l.Lock(octx)
		got := time.Now()
		if err != nil {
			cancel()
			if ctx.Err() == nil {
				s.lat.Record(0, fmt.Errorf("lock: %w", err))
				time.Sleep(10 * time.Millisecond) // do not spin on a failing system
			}
			continue
		}
		prev := k.lastUnlock.Swap(0)
		prevWorker := int(k.lastWorker.Load())
		k.enter(c, w, l.Token())
		if hold > 0 {
			// Inside for a while: with no hold, two holders would have to
			// be inside within nanoseconds of each other to be seen.
			time.Sleep(hold)
		}
		k.leave(w)
		err = l.Unlock(octx)
		end := time.Now()
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				s.lat.Record(0, fmt.Errorf("unlock: %w", err))
			}
			continue
		}
		// A cycle counts in the phase it ends in (for hot, the acquisition):
		// one begun before until and ended after it would add to the rate
		// a time the phase does not count.
		if !hot {
			if end.Before(until) {
				s.lat.Record(end.Sub(begin), nil)
			}
			continue
		}
		if !got.Before(until) {
			continue
		}
		s.lat.Record(got.Sub(begin), nil)
		switch {
		case prev == 0:
		case prevWorker == w:
			s.self++
		default:
			s.handoffs.Record(got.Sub(time.Unix(0, prev)), nil)
		}
	}
}
