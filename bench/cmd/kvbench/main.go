// Command kvbench measures concord against etcd on this machine: for each
// cluster size it starts a fresh cluster of each system in turn, drives the
// same closed-loop put and linearizable get load against it, and prints
// throughput, latency and the concord/etcd ratios.
//
// Run it from the bench module:
//
//	go run ./cmd/kvbench [-nodes 1,3] [-systems concord,concord-wal,etcd] [-ops put,get] [-json FILE]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/concord-dev/concord/bench/internal/load"
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
	jsonFile string
	pprofDir string
	cpuProf  string
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = profileSelf(o.cpuProf, func() error { return run(ctx, o) })
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvbench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("kvbench", flag.ContinueOnError)
	var o options
	var nodes, systems, ops string
	fs.StringVar(&o.root, "root", "..", "root of the concord repository (the bench module is its bench/ directory)")
	fs.StringVar(&nodes, "nodes", "1,3", "cluster sizes to measure, in order")
	fs.StringVar(&systems, "systems", "concord,concord-wal,etcd", "systems to measure, in order: concord (raft-boltdb, its default), concord-wal (--raft-log-store wal), etcd")
	fs.StringVar(&ops, "ops", "put,get", "operations to measure, in order: put, get (linearizable)")
	fs.IntVar(&o.load.Workers, "clients", 64, "concurrent workers, each with one operation in flight")
	fs.IntVar(&o.conns, "conns", 8, "client objects, shared round-robin by the workers")
	fs.IntVar(&o.load.ValueSize, "value", 256, "value size in bytes")
	fs.IntVar(&o.load.Keys, "keys", 10000, "size of the key space")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "unmeasured load before each measured phase")
	fs.DurationVar(&o.duration, "duration", 15*time.Second, "measured phase per operation")
	fs.StringVar(&o.jsonFile, "json", "", "write the raw results to this file")
	fs.StringVar(&o.pprofDir, "pprof", "", "save a CPU profile of concord's leader during each measured phase into this directory (perturbs the figures)")
	fs.StringVar(&o.cpuProf, "cpuprofile", "", "save a CPU profile of kvbench itself (the clients) to this file")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.load.OpTimeout = 10 * time.Second
	var err error
	if o.nodes, err = parseSizes(nodes); err != nil {
		return o, err
	}
	if o.systems, err = parseSystems(systems); err != nil {
		return o, err
	}
	if o.ops, err = parseOps(ops); err != nil {
		return o, err
	}
	if o.load.Workers < 1 || o.conns < 1 || o.load.Keys < 1 || o.load.ValueSize < 0 || o.duration <= 0 {
		return o, fmt.Errorf("-clients, -conns, -keys and -duration must be positive")
	}
	return o, nil
}

func parseSizes(s string) ([]int, error) {
	var sizes []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-nodes: %q is not a cluster size", f)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}

func parseSystems(s string) ([]system, error) {
	var out []system
	for _, f := range strings.Split(s, ",") {
		i := slices.IndexFunc(systems, func(sys system) bool { return sys.name == strings.TrimSpace(f) })
		if i < 0 {
			return nil, fmt.Errorf("-systems: unknown system %q", f)
		}
		out = append(out, systems[i])
	}
	return out, nil
}

func parseOps(s string) ([]load.Op, error) {
	var out []load.Op
	for _, f := range strings.Split(s, ",") {
		op := load.Op(strings.TrimSpace(f))
		if op != load.Put && op != load.Get {
			return nil, fmt.Errorf("-ops: unknown operation %q", f)
		}
		out = append(out, op)
	}
	return out, nil
}

// profileSelf runs f, under the CPU profiler when path is set.
func profileSelf(path string, f func() error) error {
	if path == "" {
		return f()
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		out.Close()
		return err
	}
	err = f()
	pprof.StopCPUProfile()
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// run builds the binaries, measures every cluster size and system, and
// reports.
func run(ctx context.Context, o options) error {
	binDir, err := os.MkdirTemp("", "kvbench-bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(binDir)
	bins, err := buildAll(ctx, o.root, binDir, o.systems)
	if err != nil {
		return err
	}
	rep := newReport(o)
	for _, n := range o.nodes {
		for _, sys := range o.systems {
			results, err := benchCluster(ctx, sys, bins[sys.name], n, o)
			if err != nil {
				return fmt.Errorf("%s, %d nodes: %w", sys.name, n, err)
			}
			rep.Results = append(rep.Results, results...)
		}
		rep.printTable(os.Stdout, n)
	}
	if o.jsonFile != "" {
		return rep.writeJSON(o.jsonFile)
	}
	return nil
}
