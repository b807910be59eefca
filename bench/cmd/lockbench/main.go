// Command lockbench measures concord's distributed mutex against etcd's
// (clientv3/concurrency) and redsync on Redis, on this machine, in one run:
// for each cluster size it starts a fresh cluster of each system in turn and
// runs two closed-loop workloads against it:
//
//   - distinct: every client locks and unlocks its own key (no contention);
//   - hot: every client contends for one key (lock, no work, unlock).
//
// It checks mutual exclusion in both (and, for concord, that fencing tokens
// strictly increase), and prints throughput, latency, the ratios to etcd and
// Redis, and whether the goals are met.
//
// Run it from the bench module:
//
//	go run ./cmd/lockbench [-nodes 1,3] [-systems concord,concord-bolt,etcd,redis] [-json FILE]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/concord-dev/concord/bench/internal/cli"
	"github.com/concord-dev/concord/bench/internal/cluster"
	"github.com/concord-dev/concord/bench/internal/profile"
)

// options are the command line flags.
type options struct {
	root       string
	nodes      []int
	systems    []system
	workloads  []string
	rounds     int
	clients    int
	hotClients int
	conns      int
	warmup     time.Duration
	duration   time.Duration
	opTimeout  time.Duration
	hold       time.Duration
	redisAddr  string
	redisRetry time.Duration
	jsonFile   string
	pprofDir   string
	cpuProf    string
}

func main() {
	cli.Main("lockbench", parseFlags, func(ctx context.Context, o options) error {
		return profile.Self(o.cpuProf, func() error { return run(ctx, o) })
	})
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("lockbench", flag.ContinueOnError)
	var o options
	var nodes, systems, workloads string
	fs.StringVar(&o.root, "root", "..", "root of the concord repository (the bench module is its bench/ directory)")
	fs.StringVar(&nodes, "nodes", "1,3", "cluster sizes to measure, in order (redis is a single instance, measured once)")
	fs.StringVar(&systems, "systems", "concord,concord-bolt,etcd,redis", "systems to measure, in order: concord (its default seglog log store), concord-bolt (--raft-log-store bolt), concord-wal (--raft-log-store wal), concord-nodefer (--disable-lock-queue-defer), etcd, redis (redsync)")
	fs.StringVar(&workloads, "workloads", "distinct,hot", "workloads to measure, in order: distinct, hot")
	fs.IntVar(&o.rounds, "rounds", 1, "measure every system this many times per cluster size, interleaved (concord, etcd, concord, etcd, ...); ratios and goals use the median of the rounds' ratios")
	fs.IntVar(&o.clients, "clients", 64, "workers of the distinct workload, each locking its own key")
	fs.IntVar(&o.hotClients, "hot-clients", 16, "workers of the hot workload, all contending for one key")
	fs.IntVar(&o.conns, "conns", 8, "client objects of concord and etcd, shared round-robin by the workers (each worker has its own session)")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured load before each measured phase")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured phase per workload")
	fs.DurationVar(&o.opTimeout, "op-timeout", 30*time.Second, "bound on one lock+unlock cycle; a cycle that exceeds it is an error")
	fs.DurationVar(&o.hold, "hold", 0, "time each holder stays inside the lock before unlocking (0, as the goals are measured: the overlap check then has a window of nanoseconds; use e.g. 1ms for a safety run)")
	fs.StringVar(&o.redisAddr, "redis", cli.RedisAddr(), "Redis address for the redis system (default: $CONCORD_BENCH_REDIS or 127.0.0.1:6379)")
	fs.DurationVar(&o.redisRetry, "redis-retry", time.Millisecond, "redsync's delay between lock attempts (it polls; its own default is 50-250ms random)")
	fs.StringVar(&o.jsonFile, "json", "", "write the raw results to this file")
	fs.StringVar(&o.pprofDir, "pprof", "", "save CPU profiles of concord's leader and of one follower during each measured phase, and the leader's metrics and heap profile after it, into this directory (perturbs the figures)")
	fs.StringVar(&o.cpuProf, "cpuprofile", "", "save a CPU profile of lockbench itself (the clients) to this file")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	var err error
	if o.nodes, err = cli.Ints("-nodes", "a cluster size", nodes); err != nil {
		return o, err
	}
	if o.systems, err = cli.Select("-systems", "system", systems, allSystems, func(s system) string { return s.name }); err != nil {
		return o, err
	}
	if o.workloads, err = cli.Select("-workloads", "workload", workloads, []string{Distinct, Hot}, func(s string) string { return s }); err != nil {
		return o, err
	}
	if o.rounds < 1 || o.clients < 1 || o.hotClients < 1 || o.conns < 1 || o.duration <= 0 || o.opTimeout <= 0 || o.redisRetry <= 0 {
		return o, fmt.Errorf("-rounds, -clients, -hot-clients, -conns, -duration, -op-timeout and -redis-retry must be positive")
	}
	if o.hold < 0 || o.hold >= o.opTimeout {
		return o, fmt.Errorf("-hold must be at least 0 and below -op-timeout")
	}
	return o, nil
}

// run builds the binaries, measures every cluster size and system, and
// reports. Redis is measured once, the first time its turn comes.
func run(ctx context.Context, o options) error {
	var targets []cluster.Target
	for _, sys := range o.systems {
		if sys.pkg != "" {
			targets = append(targets, sys.target())
		}
	}
	bins, remove, err := cluster.BuildAll(ctx, o.root, targets)
	if err != nil {
		return err
	}
	defer remove()
	rep := newReport(o)
	redisDone := false
	for _, n := range o.nodes {
		for round := 1; round <= o.rounds; round++ {
			for _, sys := range o.systems {
				var results []Result
				if sys.flavor == nil {
					if redisDone {
						continue
					}
					redisDone = true
					results, err = benchRedis(ctx, o)
				} else {
					if o.rounds > 1 {
						fmt.Fprintf(os.Stderr, "round %d of %d\n", round, o.rounds)
					}
					results, err = benchCluster(ctx, sys, bins[sys.name], n, o)
					for i := range results {
						results[i].Round = round
					}
				}
				if err != nil {
					return fmt.Errorf("%s, %d nodes: %w", sys.name, n, err)
				}
				rep.Results = append(rep.Results, results...)
			}
		}
		rep.print(os.Stdout, n)
	}
	if o.jsonFile != "" {
		return cli.WriteJSON(o.jsonFile, rep)
	}
	return nil
}
