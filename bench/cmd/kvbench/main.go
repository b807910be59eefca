// Command kvbench measures concord against etcd on this machine: for each
// cluster size it starts a fresh cluster of each system in turn, drives the
// same closed-loop put and linearizable get load against it, and prints
// throughput, latency and the concord/etcd ratios.
//
// Run it from the bench module:
//
//	go run ./cmd/kvbench [-nodes 1,3] [-systems concord,concord-bolt,etcd] [-ops put,get] [-json FILE]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/concord-dev/concord/bench/internal/cli"
	"github.com/concord-dev/concord/bench/internal/cluster"
	"github.com/concord-dev/concord/bench/internal/load"
	"github.com/concord-dev/concord/bench/internal/profile"
)

// options are the command line flags.
type options struct {
	root     string
	nodes    []int
	systems  []system
	ops      []load.Op
	load     load.Config
	warmup   time.Duration
	duration time.Duration
	conns    int
	rounds   int
	jsonFile string
	pprofDir string
	cpuProf  string
}

func main() {
	cli.Main("kvbench", parseFlags, func(ctx context.Context, o options) error {
		return profile.Self(o.cpuProf, func() error { return run(ctx, o) })
	})
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("kvbench", flag.ContinueOnError)
	var o options
	var nodes, systems, ops string
	fs.StringVar(&o.root, "root", "..", "root of the concord repository (the bench module is its bench/ directory)")
	fs.StringVar(&nodes, "nodes", "1,3", "cluster sizes to measure, in order")
	fs.StringVar(&systems, "systems", "concord,concord-bolt,etcd", "systems to measure, in order: concord (its default seglog log store), concord-bolt (--raft-log-store bolt), concord-wal (--raft-log-store wal), etcd")
	fs.StringVar(&ops, "ops", "put,get", "operations to measure, in order: put, get (linearizable)")
	fs.IntVar(&o.load.Workers, "clients", 64, "concurrent workers, each with one operation in flight")
	fs.IntVar(&o.rounds, "rounds", 1, "measure every system this many times per cluster size, interleaved (concord, etcd, concord, etcd, ...); the ratios are the median of the rounds' ratios")
	fs.IntVar(&o.conns, "conns", 8, "client objects, shared round-robin by the workers")
	fs.IntVar(&o.load.ValueSize, "value", 256, "value size in bytes")
	fs.IntVar(&o.load.Keys, "keys", 10000, "size of the key space")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "unmeasured load before each measured phase")
	fs.DurationVar(&o.duration, "duration", 15*time.Second, "measured phase per operation")
	fs.StringVar(&o.jsonFile, "json", "", "write the raw results to this file")
	fs.StringVar(&o.pprofDir, "pprof", "", "save CPU profiles of concord's leader and of one follower during each measured phase, and the leader's metrics and heap profile after it, into this directory (perturbs the figures)")
	fs.StringVar(&o.cpuProf, "cpuprofile", "", "save a CPU profile of kvbench itself (the clients) to this file")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.load.OpTimeout = 10 * time.Second
	var err error
	if o.nodes, err = cli.Ints("-nodes", "a cluster size", nodes); err != nil {
		return o, err
	}
	if o.systems, err = cli.Select("-systems", "system", systems, allSystems, func(s system) string { return s.name }); err != nil {
		return o, err
	}
	if o.ops, err = cli.Select("-ops", "operation", ops, []load.Op{load.Put, load.Get}, func(op load.Op) string { return string(op) }); err != nil {
		return o, err
	}
	if o.rounds < 1 || o.load.Workers < 1 || o.conns < 1 || o.load.Keys < 1 || o.load.ValueSize < 0 || o.duration <= 0 {
		return o, fmt.Errorf("-rounds, -clients, -conns, -keys and -duration must be positive")
	}
	return o, nil
}

// run builds the binaries, measures every cluster size and system, and
// reports.
func run(ctx context.Context, o options) error {
	targets := make([]cluster.Target, len(o.systems))
	for i, sys := range o.systems {
		targets[i] = sys.target()
	}
	bins, remove, err := cluster.BuildAll(ctx, o.root, targets)
	if err != nil {
		return err
	}
	defer remove()
	rep := newReport(o)
	for _, n := range o.nodes {
		for round := 1; round <= o.rounds; round++ {
			for _, sys := range o.systems {
				if o.rounds > 1 {
					fmt.Fprintf(os.Stderr, "round %d of %d\n", round, o.rounds)
				}
				results, err := benchCluster(ctx, sys, bins[sys.name], n, o)
				if err != nil {
					return fmt.Errorf("%s, %d nodes: %w", sys.name, n, err)
				}
				for i := range results {
					results[i].Round = round
				}
				rep.Results = append(rep.Results, results...)
			}
		}
		rep.printTable(os.Stdout, n)
	}
	if o.jsonFile != "" {
		return cli.WriteJSON(o.jsonFile, rep)
	}
	return nil
}
