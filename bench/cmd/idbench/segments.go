package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/concord-dev/concord/bench/internal/cluster"
	"github.com/concord-dev/concord/bench/internal/cputime"
	"github.com/concord-dev/concord/bench/internal/load"
	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/client/idgen"
)

// slowCall is the latency a segment call must not exceed because of a fetch.
const slowCall = time.Millisecond

// watchedSource is the client as the buffer's SegmentSource, recording
// every fetch. Segments runs one fetch at a time, so events is odd exactly
// while a fetch is in flight.
type watchedSource struct {
	c      *client.Client
	events atomic.Int64
	mu     sync.Mutex
	ends   []time.Time
	took   []time.Duration
}

func (w *watchedSource) AllocSegment(ctx context.Context, tag string, count int64) (int64, int64, error) {
	w.events.Add(1)
	start := time.Now()
	lo, hi, err := w.c.AllocSegment(ctx, tag, count)
	end := time.Now()
	w.events.Add(1)
	w.mu.Lock()
	w.ends, w.took = append(w.ends, end), append(w.took, end.Sub(start))
	w.mu.Unlock()
	return lo, hi, err
}

// fetchesSince returns how many fetches ended in [from, to) and the slowest.
func (w *watchedSource) fetchesSince(from, to time.Time) (n int64, slowest time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, e := range w.ends {
		if !e.Before(from) && e.Before(to) {
			n++
			slowest = max(slowest, w.took[i])
		}
	}
	return n, slowest
}

// segWorker is what one goroutine saw.
type segWorker struct {
	ids        []int64
	s          load.Sample
	disorder   int64
	overlapMax time.Duration
	slow       int64
	slowFetch  int64
}

// benchSegments runs o.goroutines goroutines on one idgen.Segments buffer
// of a fresh tag for o.warmup + o.duration.
func benchSegments(ctx context.Context, c *cluster.Cluster, sys string, o options) (Result, error) {
	n := len(c.Members())
	r := Result{Part: "segments", System: sys, Nodes: n, Workers: o.goroutines}
	cl, err := client.New(ctx, client.Config{Endpoints: c.ClientAddrs()})
	if err != nil {
		return r, err
	}
	defer cl.Close()
	const tag = "idbench-segments"
	if _, err := cl.CreateTag(ctx, tag, 1, 1000); err != nil {
		return r, fmt.Errorf("create tag: %w", err)
	}
	src := &watchedSource{c: cl}
	seg := idgen.NewSegments(src, tag, idgen.SegmentConfig{}) // step 1,000 first, then adaptive
	fmt.Fprintf(os.Stderr, "%s, %d nodes: segments, %d goroutines for %s + %s\n", sys, n, o.goroutines, o.warmup, o.duration)

	begin := time.Now()
	from := begin.Add(o.warmup)
	until := from.Add(o.duration)
	workers := make([]*segWorker, o.goroutines)
	var wg sync.WaitGroup
	for i := range workers {
		w := &segWorker{}
		workers[i] = w
		wg.Go(func() { w.run(ctx, seg, src, from, until) })
	}
	// Snapshot the buffer when the measured phase begins.
	select {
	case <-time.After(time.Until(from)):
	case <-ctx.Done():
	}
	warm := seg.Stats()
	cpu := cputime.Start(c)
	wg.Wait()
	r.setCores(cpu.Stop())
	end := seg.Stats()

	samples := make([]*load.Sample, len(workers))
	lists := make([][]int64, len(workers))
	for i, w := range workers {
		samples[i], lists[i] = &w.s, w.ids
		r.Disorder += w.disorder
		r.Slow += w.slow
		r.SlowOverlap += w.slowFetch
		r.OverlapMaxUs = max(r.OverlapMaxUs, us(w.overlapMax))
	}
	s := load.Merge(samples, o.duration)
	r.setLatency(s)
	r.Seconds = o.duration.Seconds()
	r.IDs, r.IDsPerSec = r.Calls, r.CallsPerS
	r.Checked, r.Duplicates = duplicates(lists)
	workers, lists, samples, s = nil, nil, nil, nil
	runtime.GC()

	var warmMax, fetchMax time.Duration
	r.WarmupFetches, warmMax = src.fetchesSince(begin, from)
	r.Fetches, fetchMax = src.fetchesSince(from, time.Now())
	r.WarmupFetchMax, r.FetchMaxUs = us(warmMax), us(fetchMax)
	r.WarmupWaits, r.Waits = warm.Waits, end.Waits-warm.Waits
	r.Step = end.Step
	if end.FetchErrors > 0 {
		r.Note = fmt.Sprintf("%d fetch errors", end.FetchErrors)
	}
	printSegments(r, warm.Step)
	return r, ctx.Err()
}

// run calls Next until until, keeping every ID, and the latency of the
// calls that start from from on.
func (w *segWorker) run(ctx context.Context, seg *idgen.Segments, src *watchedSource, from, until time.Time) {
	prev := int64(-1 << 63)
	for i := 0; ; i++ {
		if i%1024 == 0 && ctx.Err() != nil {
			return
		}
		e0 := src.events.Load()
		t0 := time.Now()
		if !t0.Before(until) {
			return
		}
		v, err := seg.Next(ctx)
		d := time.Since(t0)
		duringFetch := e0&1 == 1 || src.events.Load() != e0
		if err == nil {
			if v <= prev {
				w.disorder++
			}
			prev = v
			w.ids = append(w.ids, v)
		}
		if t0.Before(from) {
			continue
		}
		w.s.Record(d, err)
		if duringFetch {
			w.overlapMax = max(w.overlapMax, d)
		}
		if d > slowCall {
			w.slow++
			if duringFetch {
				w.slowFetch++
			}
		}
	}
}

// segGoal judges "no call slower than 1 ms caused by a fetch". Only a call
// that finds both segments empty waits for a fetch (the buffer's Waits); it
// waits at most as long as the fetch in flight takes. Calls can also be slow
// because their goroutine was descheduled, with or without a fetch.
func segGoal(r Result) string {
	switch {
	case r.Waits == 0:
		return fmt.Sprintf("goal met (no call waited for a fetch; %d calls > 1 ms, %d of them during a fetch, all from scheduling)", r.Slow, r.SlowOverlap)
	case r.FetchMaxUs < us(slowCall):
		return fmt.Sprintf("goal met (%d calls waited for a fetch, every fetch took < 1 ms, slowest %.3f ms)", r.Waits, r.FetchMaxUs/1000)
	}
	return fmt.Sprintf("goal NOT met (%d calls waited for a fetch; slowest fetch %.3f ms; slowest call during a fetch %.3f ms)", r.Waits, r.FetchMaxUs/1000, r.OverlapMaxUs/1000)
}

func printSegments(r Result, warmStep int64) {
	fmt.Printf("\n== segments: %s, %d nodes: %d goroutines on one idgen.Segments, %.1fs measured\n", r.System, r.Nodes, r.Workers, r.Seconds)
	tw := table(os.Stdout)
	fmt.Fprintln(tw, "IDs/s\tp50 ms\tp99 ms\tmax ms\tcalls > 1 ms\t(during a fetch)\tmax ms during a fetch\tfetches\twaits for a fetch\tslowest fetch ms\tstep\terrors\tunique+per-goroutine increasing\tserver cores\tbench cores\t")
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%d\t%d\t%s\t%s\t%d\t%s\t%.2f\t%.2f\t\n", num(r.IDsPerSec), ms(r.P50Us), ms(r.P99Us), ms(r.MaxUs),
		r.Slow, r.SlowOverlap, ms(r.OverlapMaxUs), r.Fetches, r.Waits, ms(r.FetchMaxUs), num(float64(r.Step)), r.Errors, verdict(r), r.ServerCores, r.BenchCores)
	tw.Flush()
	fmt.Printf("warmup (step adapting from 1,000 to %s): %d fetches, %d calls waited for a fetch, slowest fetch %s ms\n",
		num(float64(warmStep)), r.WarmupFetches, r.WarmupWaits, ms(r.WarmupFetchMax))
	fmt.Printf("checked %s IDs (warmup included)", num(float64(r.Checked)))
	if r.FirstErr != "" {
		fmt.Printf("; first error: %s", r.FirstErr)
	}
	if r.Note != "" {
		fmt.Printf("; %s", r.Note)
	}
	fmt.Println()
	fmt.Printf("goal: no call slower than 1 ms caused by a fetch: %s\n", segGoal(r))
}
