package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/concord-dev/concord/bench/internal/cluster"
	"github.com/concord-dev/concord/bench/internal/cputime"
	"github.com/concord-dev/concord/bench/internal/kv"
	"github.com/concord-dev/concord/bench/internal/load"
	"github.com/concord-dev/concord/bench/internal/profile"
)

// system is a system under test: how to build it, run it and talk to it.
type system struct {
	name   string
	flavor cluster.Flavor
	dial   kv.DialFunc
	// pkg is built with `go build` in dir, relative to the repository root.
	pkg, dir string
	// pprof: members serve /debug/pprof on their client address.
	pprof bool
}

// allSystems are the systems -systems may name.
var allSystems = []system{
	{name: "concord", flavor: cluster.Concord, dial: kv.DialConcord, pkg: "./cmd/concord", dir: ".", pprof: true},
	{name: "concord-bolt", flavor: cluster.ConcordBolt, dial: kv.DialConcord, pkg: "./cmd/concord", dir: ".", pprof: true},
	{name: "concord-wal", flavor: cluster.ConcordWAL, dial: kv.DialConcord, pkg: "./cmd/concord", dir: ".", pprof: true},
	// The bench module pins the etcd server version.
	{name: "etcd", flavor: cluster.Etcd, dial: kv.DialEtcd, pkg: "go.etcd.io/etcd/server/v3", dir: "bench"},
}

// target is how to build sys's server binary.
func (sys system) target() cluster.Target {
	return cluster.Target{Name: sys.name, Pkg: sys.pkg, Dir: sys.dir}
}

// benchCluster starts a fresh n-member cluster of sys, runs every operation
// against it, and stops it, deleting its data.
func benchCluster(ctx context.Context, sys system, bin string, n int, o options) (results []Result, err error) {
	fmt.Fprintf(os.Stderr, "%s, %d nodes: starting\n", sys.name, n)
	err = cluster.Run(ctx, bin, sys.flavor, n, 60*time.Second, func(c *cluster.Cluster) error {
		conns, err := dialAll(ctx, sys.dial, c.ClientAddrs(), o.conns)
		defer closeAll(conns)
		if err != nil {
			return err
		}
		l := load.New(o.load, conns)
		for _, op := range o.ops {
			if op == load.Get {
				fmt.Fprintf(os.Stderr, "%s, %d nodes: preloading %d keys\n", sys.name, n, o.load.Keys)
				if err := l.Preload(ctx); err != nil {
					return err
				}
			}
			fmt.Fprintf(os.Stderr, "%s, %d nodes: %s for %s + %s\n", sys.name, n, op, o.warmup, o.duration)
			results = append(results, measure(ctx, sys, c, l, op, o))
		}
		return nil
	})
	return results, err
}

// measure warms up with op, then measures it, with the CPU the servers,
// this process and the rest of the machine used meanwhile.
func measure(ctx context.Context, sys system, c *cluster.Cluster, l *load.Load, op load.Op, o options) Result {
	l.Run(ctx, op, o.warmup)
	var prof *profile.Profile
	if o.pprofDir != "" && sys.pprof {
		path := filepath.Join(o.pprofDir, fmt.Sprintf("%s-%dnodes-%s.pprof", sys.name, len(c.Members()), op))
		prof = profile.Start(ctx, c.ClientAddrs(), o.duration, path)
	}
	cpu := cputime.Start(c)
	s := l.Run(ctx, op, o.duration)
	r := newResult(sys.name, len(c.Members()), op, s)
	cores := cpu.Stop()
	r.setCores(cores)
	if prof != nil {
		if err := prof.Wait(); err != nil {
			fmt.Fprintf(os.Stderr, "  no profile: %v\n", err)
		}
		base := filepath.Join(o.pprofDir, fmt.Sprintf("%s-%dnodes-%s", sys.name, len(c.Members()), op))
		if err := profile.SaveAfter(ctx, c.ClientAddrs(), base); err != nil {
			fmt.Fprintf(os.Stderr, "  not all saved: %v\n", err)
		}
	}
	if s.Errors > 0 {
		fmt.Fprintf(os.Stderr, "  %d errors, the first: %v\n", s.Errors, s.FirstErr)
	}
	cores.Warn(os.Stderr)
	return r
}

// dialAll opens n Conns to endpoints; on error it returns those it opened.
func dialAll(ctx context.Context, dial kv.DialFunc, endpoints []string, n int) ([]kv.Conn, error) {
	var conns []kv.Conn
	for range n {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err := dial(dctx, endpoints)
		cancel()
		if err != nil {
			return conns, fmt.Errorf("connect: %w", err)
		}
		conns = append(conns, conn)
	}
	return conns, nil
}

func closeAll(conns []kv.Conn) {
	for _, c := range conns {
		_ = c.Close()
	}
}
