// Command idbench measures concord's ID generators on this machine, in one
// run, next to the usual alternatives:
//
//   - snowflake: one generator, one goroutine, Next in a tight loop: concord's
//     idgen.Snowflake (worker ID leased from a 1-node cluster) and UUIDv7,
//     sony/sonyflake, bwmarrin/snowflake and google/uuid NewV7;
//   - segments: 64 goroutines on one idgen.Segments buffer (Leaf's double
//     buffer) against 1- and 3-node clusters;
//   - nextids: server-side NextIDs over the network, 64 clients, n=1 and 100,
//     against 1- and 3-node clusters and Redis INCR/INCRBY.
//
// Every ID produced is checked: unique, and increasing where the generator
// promises it.
//
// Run it from the bench module:
//
//	go run ./cmd/idbench [-parts snowflake,segments,nextids] [-nodes 1,3] [-json FILE]
package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/concord-dev/concord/bench/internal/cli"
	"github.com/concord-dev/concord/bench/internal/cluster"
)

// options are the command line flags.
type options struct {
	root       string
	parts      []string
	nodes      []int
	systems    []string
	batches    []int
	duration   time.Duration
	warmup     time.Duration
	goroutines int
	clients    int
	conns      int
	redis      string
	jsonFile   string
}

var flavors = map[string]cluster.Flavor{"concord": cluster.Concord, "concord-bolt": cluster.ConcordBolt, "concord-wal": cluster.ConcordWAL}

func main() { cli.Main("idbench", parseFlags, run) }

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("idbench", flag.ContinueOnError)
	var o options
	var parts, nodes, systems, batches string
	fs.StringVar(&o.root, "root", "..", "root of the concord repository (the bench module is its bench/ directory)")
	fs.StringVar(&parts, "parts", "snowflake,segments,nextids", "parts to run, in this order: snowflake, segments, nextids")
	fs.StringVar(&nodes, "nodes", "1,3", "cluster sizes for segments and nextids, in order")
	fs.StringVar(&systems, "systems", "concord", "concord flavors: concord (its default seglog log store), concord-bolt (--raft-log-store bolt), concord-wal (--raft-log-store wal)")
	fs.StringVar(&batches, "batches", "1,100", "IDs per NextIDs call (and INCRBY), in order")
	fs.DurationVar(&o.duration, "duration", 3*time.Second, "measured phase of each measurement")
	fs.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "unmeasured run before each measured phase")
	fs.IntVar(&o.goroutines, "goroutines", 64, "segments: goroutines sharing one idgen.Segments buffer")
	fs.IntVar(&o.clients, "clients", 64, "nextids: concurrent callers, one call in flight each (concord and Redis)")
	fs.IntVar(&o.conns, "conns", 1, "nextids: concord client objects, shared round-robin by the callers (1, as a service holds one, like the one go-redis client on the Redis side)")
	fs.StringVar(&o.redis, "redis", cli.RedisAddr(), "Redis address for the INCR/INCRBY comparison (default $CONCORD_BENCH_REDIS or 127.0.0.1:6379)")
	fs.StringVar(&o.jsonFile, "json", "", "write the raw results to this file")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	var err error
	if o.parts, err = cli.Select("-parts", "part", parts, []string{"snowflake", "segments", "nextids"}, id); err != nil {
		return o, err
	}
	if o.systems, err = cli.Select("-systems", "system", systems, slices.Collect(maps.Keys(flavors)), id); err != nil {
		return o, err
	}
	if o.nodes, err = cli.Ints("-nodes", "a positive number", nodes); err != nil {
		return o, err
	}
	if o.batches, err = cli.Ints("-batches", "a positive number", batches); err != nil {
		return o, err
	}
	if len(o.parts) == 0 || len(o.systems) == 0 || o.goroutines < 1 || o.clients < 1 || o.conns < 1 || o.duration <= 0 || o.warmup < 0 {
		return o, fmt.Errorf("-parts, -systems, -goroutines, -clients, -conns and -duration must not be empty or zero")
	}
	return o, nil
}

// id is a name's name, for cli.Select.
func id(s string) string { return s }

func (o options) has(part string) bool { return slices.Contains(o.parts, part) }

// run builds concord, runs every part and reports.
func run(ctx context.Context, o options) error {
	rep := newReport(o)
	defer func() {
		if o.jsonFile != "" {
			if err := cli.WriteJSON(o.jsonFile, rep); err != nil {
				fmt.Fprintln(os.Stderr, "idbench: -json:", err)
			}
		}
	}()
	bins, remove, err := cluster.BuildAll(ctx, o.root, []cluster.Target{{Name: "concord", Pkg: "./cmd/concord", Dir: "."}})
	if err != nil {
		return err
	}
	defer remove()
	bin := bins["concord"]

	if o.has("snowflake") {
		err := withCluster(ctx, bin, o.systems[0], 1, func(c *cluster.Cluster) error {
			rs, err := benchSnowflake(ctx, c, o)
			rep.add(rs...)
			return err
		})
		if err != nil {
			return fmt.Errorf("snowflake: %w", err)
		}
	}
	var redis []Result
	if o.has("nextids") {
		redis = benchRedis(ctx, o)
		rep.add(redis...)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if o.has("segments") || o.has("nextids") {
		for _, n := range o.nodes {
			for _, sys := range o.systems {
				err := withCluster(ctx, bin, sys, n, func(c *cluster.Cluster) error {
					if o.has("segments") {
						r, err := benchSegments(ctx, c, sys, o)
						rep.add(r)
						if err != nil {
							return fmt.Errorf("segments: %w", err)
						}
					}
					if o.has("nextids") {
						rs, err := benchNextIDs(ctx, c, sys, o, redis)
						rep.add(rs...)
						if err != nil {
							return fmt.Errorf("nextids: %w", err)
						}
					}
					return nil
				})
				if err != nil {
					return fmt.Errorf("%s, %d nodes: %w", sys, n, err)
				}
			}
		}
	}
	rep.summary(os.Stdout, o)
	return nil
}

// withCluster starts a fresh n-member cluster of system sys, runs f and
// stops the cluster, deleting its data, whatever happens.
func withCluster(ctx context.Context, bin, sys string, n int, f func(*cluster.Cluster) error) error {
	fmt.Fprintf(os.Stderr, "%s, %d nodes: starting\n", sys, n)
	return cluster.Run(ctx, bin, flavors[sys], n, 60*time.Second, f)
}
