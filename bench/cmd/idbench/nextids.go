package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/concord-dev/concord/bench/internal/cluster"
	"github.com/concord-dev/concord/bench/internal/cputime"
	"github.com/concord-dev/concord/bench/internal/load"
	"github.com/concord-dev/concord/client"
)

// callFunc asks for n IDs on behalf of caller w.
type callFunc func(ctx context.Context, w, n int) ([]int64, error)

// closedLoop runs o.clients callers, one call in flight each, for o.warmup
// (unmeasured) and o.duration (measured), keeping every ID. It counts IDs
// that are not above the previous ID the same caller got (within a call and
// across its calls) and calls that did not return n IDs. srv is the
// servers' CPU, nil for Redis.
func closedLoop(ctx context.Context, r *Result, n int, o options, srv cputime.Source, call callFunc) {
	from := time.Now().Add(o.warmup)
	until := from.Add(o.duration)
	samples := make([]*load.Sample, o.clients)
	lists := make([][]int64, o.clients)
	disorder := make([]int64, o.clients)
	var wg sync.WaitGroup
	for w := range o.clients {
		samples[w] = &load.Sample{}
		wg.Go(func() {
			prev := int64(-1 << 63)
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(until) {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				ids, err := call(cctx, w, n)
				cancel()
				d := time.Since(t0)
				if err == nil && len(ids) != n {
					err = fmt.Errorf("asked for %d IDs, got %d", n, len(ids))
				}
				for _, id := range ids {
					if id <= prev {
						disorder[w]++
					}
					prev = id
				}
				lists[w] = append(lists[w], ids...)
				if !t0.Before(from) {
					samples[w].Record(d, err)
				}
			}
		})
	}
	select {
	case <-time.After(time.Until(from)):
	case <-ctx.Done():
	}
	cpu := cputime.Start(srv)
	wg.Wait()
	r.setCores(cpu.Stop())
	r.setLatency(load.Merge(samples, o.duration))
	r.Seconds = o.duration.Seconds()
	r.IDs = r.Calls * int64(n)
	r.IDsPerSec = r.CallsPerS * float64(n)
	for _, d := range disorder {
		r.Disorder += d
	}
	r.Checked, r.Duplicates = duplicates(lists)
	lists = nil
	runtime.GC()
}

// benchNextIDs measures NextIDs for each batch size against c and prints
// the figures next to Redis's (redis may be empty).
func benchNextIDs(ctx context.Context, c *cluster.Cluster, sys string, o options, redisRes []Result) ([]Result, error) {
	nodes := len(c.Members())
	conns := make([]*client.Client, 0, o.conns)
	defer func() {
		for _, cl := range conns {
			cl.Close()
		}
	}()
	for range o.conns {
		cl, err := client.New(ctx, client.Config{Endpoints: c.ClientAddrs()})
		if err != nil {
			return nil, err
		}
		conns = append(conns, cl)
	}
	var out []Result
	for _, n := range o.batches {
		tag := fmt.Sprintf("idbench-nextids-%d", n)
		if _, err := conns[0].CreateTag(ctx, tag, 1, 1000); err != nil {
			return out, fmt.Errorf("create tag: %w", err)
		}
		fmt.Fprintf(os.Stderr, "%s, %d nodes: nextids n=%d, %d clients for %s + %s\n", sys, nodes, n, o.clients, o.warmup, o.duration)
		r := Result{Part: "nextids", System: sys, Nodes: nodes, Batch: n, Workers: o.clients}
		closedLoop(ctx, &r, n, o, c, func(ctx context.Context, w, n int) ([]int64, error) {
			return conns[w%len(conns)].NextIDs(ctx, tag, int64(n))
		})
		out = append(out, r)
		if err := ctx.Err(); err != nil {
			return out, err
		}
	}
	printNextIDs(out, redisRes, o)
	return out, nil
}

// benchRedis measures INCR (n=1) and INCRBY n against Redis with the same
// callers, or explains loudly why it cannot.
func benchRedis(ctx context.Context, o options) []Result {
	rc := redis.NewClient(&redis.Options{Addr: o.redis, PoolSize: o.clients, MaxRetries: -1})
	defer rc.Close()
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err := rc.Ping(pctx).Err()
	cancel()
	if err != nil {
		msg := fmt.Sprintf("!!! SKIPPING the Redis comparison: Redis at %s is unreachable (%v); set CONCORD_BENCH_REDIS or -redis, or start redis-server", o.redis, err)
		fmt.Fprintln(os.Stderr, msg)
		fmt.Println("\n" + msg)
		return nil
	}
	var out []Result
	for _, n := range o.batches {
		key := fmt.Sprintf("idbench:%d:%d", time.Now().UnixNano(), n)
		fmt.Fprintf(os.Stderr, "redis: INCRBY n=%d, %d clients for %s + %s\n", n, o.clients, o.warmup, o.duration)
		r := Result{Part: "nextids", System: "redis", Batch: n, Workers: o.clients}
		closedLoop(ctx, &r, n, o, nil, func(ctx context.Context, _, n int) ([]int64, error) {
			var last int64
			var err error
			if n == 1 {
				last, err = rc.Incr(ctx, key).Result()
			} else {
				last, err = rc.IncrBy(ctx, key, int64(n)).Result()
			}
			if err != nil {
				return nil, err
			}
			ids := make([]int64, n)
			for i := range ids {
				ids[i] = last - int64(n-1-i)
			}
			return ids, nil
		})
		rc.Del(context.Background(), key)
		out = append(out, r)
		if ctx.Err() != nil {
			break
		}
	}
	return out
}

func printNextIDs(rs, redisRes []Result, o options) {
	fmt.Printf("\n== nextids: %s, %d nodes: server-side NextIDs over the network, %d clients on %d client objects; Redis: one go-redis client, pool of %d\n",
		rs[0].System, rs[0].Nodes, o.clients, o.conns, o.clients)
	tw := table(os.Stdout)
	fmt.Fprintln(tw, "system\tn\tcalls/s\tIDs/s\tp50 ms\tp99 ms\tmax ms\terrors\tunique+per-client increasing\tserver cores\tbench cores\t")
	for _, r := range append(append([]Result(nil), rs...), redisRes...) {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%.2f\t%.2f\t\n", r.System, r.Batch, num(r.CallsPerS), num(r.IDsPerSec),
			ms(r.P50Us), ms(r.P99Us), ms(r.MaxUs), r.Errors, verdict(r), r.ServerCores, r.BenchCores)
	}
	tw.Flush()
	for _, r := range rs {
		if r.FirstErr != "" {
			fmt.Printf("  n=%d: first error: %s\n", r.Batch, r.FirstErr)
		}
		for _, x := range redisRes {
			if x.Batch == r.Batch && x.IDsPerSec > 0 {
				fmt.Printf("concord/redis n=%d: IDs/s %.2fx, p99 %.2fx\n", r.Batch, r.IDsPerSec/x.IDsPerSec, r.P99Us/x.P99Us)
			}
		}
		if r.Nodes == 3 {
			fmt.Printf("goal n=%d: > 50,000 IDs/s at 3 nodes (Meituan Leaf publishes ~50,000 IDs/s on 4 cores): %s (%s IDs/s)\n", r.Batch, met(r.IDsPerSec > 50000), num(r.IDsPerSec))
		}
	}
	if len(redisRes) == 0 {
		fmt.Println("concord/redis: no Redis figures (skipped, see above)")
	}
}
