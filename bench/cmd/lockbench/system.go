package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-redsync/redsync/v4"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	goredislib "github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
	etcdconc "go.etcd.io/etcd/client/v3/concurrency"

	"github.com/concord-dev/concord/bench/internal/cluster"
	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/client/concurrency"
)

// sessionTTL is the session (lease) TTL of concord and etcd workers:
// concord's SDK default.
const sessionTTL = 10 * time.Second

// system is a system under test.
type system struct {
	name   string
	flavor cluster.Flavor // nil for redis, which is not started by lockbench
	// pkg is built with `go build` in dir, relative to the repository root.
	pkg, dir string
	dial     func(ctx context.Context, endpoints []string, conns int) (backend, error)
}

// allSystems are the systems -systems may name.
var allSystems = []system{
	{name: "concord", flavor: cluster.Concord, pkg: "./cmd/concord", dir: ".", dial: dialConcord},
	{name: "concord-bolt", flavor: cluster.ConcordBolt, pkg: "./cmd/concord", dir: ".", dial: dialConcord},
	{name: "concord-wal", flavor: cluster.ConcordWAL, pkg: "./cmd/concord", dir: ".", dial: dialConcord},
	{name: "concord-nodefer", flavor: cluster.ConcordNoDefer, pkg: "./cmd/concord", dir: ".", dial: dialConcord},
	{name: "etcd", flavor: cluster.Etcd, pkg: "go.etcd.io/etcd/server/v3", dir: "bench", dial: dialEtcd},
	{name: "redis"},
}

// backend hands out lock handles of one system.
type backend interface {
	// newLocker returns worker w's handle on the lock called name, with a
	// session of its own.
	newLocker(ctx context.Context, w int, name string) (locker, error)
	close()
}

// locker is one worker's handle on one lock.
type locker interface {
	Lock(ctx context.Context) error
	Unlock(ctx context.Context) error
	// Token is the fencing token of the current grant; 0 where the system
	// has none (then it is not checked).
	Token() uint64
	close()
}

// target is how to build sys's server binary; redis has none.
func (sys system) target() cluster.Target {
	return cluster.Target{Name: sys.name, Pkg: sys.pkg, Dir: sys.dir}
}

// benchCluster starts a fresh n-member cluster of sys, runs both workloads
// against it, and stops it, deleting its data.
func benchCluster(ctx context.Context, sys system, bin string, n int, o options) (results []Result, err error) {
	fmt.Fprintf(os.Stderr, "%s, %d nodes: starting\n", sys.name, n)
	err = cluster.Run(ctx, bin, sys.flavor, n, 60*time.Second, func(c *cluster.Cluster) error {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		b, err := sys.dial(dctx, c.ClientAddrs(), o.conns)
		cancel()
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		defer b.close()
		var endpoints []string
		if sys.flavor != cluster.Etcd {
			endpoints = c.ClientAddrs()
		}
		results, err = runWorkloads(ctx, sys.name, n, b, c, endpoints, o)
		return err
	})
	return results, err
}

// benchRedis measures redsync on the Redis at o.redisAddr, or skips it,
// loudly, when that Redis does not answer.
func benchRedis(ctx context.Context, o options) ([]Result, error) {
	b, err := dialRedis(ctx, o)
	if err != nil {
		msg := fmt.Sprintf("\n*** SKIPPING redis: no Redis answers at %s (%v); set CONCORD_BENCH_REDIS or -redis ***\n", o.redisAddr, err)
		fmt.Fprint(os.Stderr, msg)
		fmt.Print(msg)
		return nil, nil
	}
	defer b.close()
	fmt.Fprintf(os.Stderr, "redis at %s (single instance, redsync, retry delay %s)\n", o.redisAddr, o.redisRetry)
	return runWorkloads(ctx, "redis", 1, b, b, nil, o)
}

// concord

type concordBackend struct{ conns []*client.Client }

func dialConcord(ctx context.Context, endpoints []string, n int) (backend, error) {
	b := &concordBackend{}
	for range n {
		c, err := client.New(ctx, client.Config{Endpoints: endpoints})
		if err != nil {
			b.close()
			return nil, err
		}
		b.conns = append(b.conns, c)
	}
	return b, nil
}

func (b *concordBackend) newLocker(ctx context.Context, w int, name string) (locker, error) {
	s, err := b.conns[w%len(b.conns)].NewSession(ctx, client.WithTTL(sessionTTL), client.WithName(fmt.Sprintf("lockbench-%d", w)))
	if err != nil {
		return nil, err
	}
	return &concordLocker{s: s, Mutex: concurrency.NewMutex(s, name)}, nil
}

func (b *concordBackend) close() {
	for _, c := range b.conns {
		_ = c.Close()
	}
}

type concordLocker struct {
	s *client.Session
	*concurrency.Mutex
}

func (l *concordLocker) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = l.s.Close(ctx)
}

// etcd

type etcdBackend struct{ conns []*clientv3.Client }

func dialEtcd(ctx context.Context, endpoints []string, n int) (backend, error) {
	urls := make([]string, len(endpoints))
	for i, ep := range endpoints {
		urls[i] = "http://" + ep
	}
	b := &etcdBackend{}
	for range n {
		c, err := clientv3.New(clientv3.Config{Endpoints: urls, DialTimeout: 5 * time.Second})
		if err != nil {
			b.close()
			return nil, err
		}
		b.conns = append(b.conns, c)
		if _, err := c.Get(ctx, "lockbench/dial"); err != nil {
			b.close()
			return nil, err
		}
	}
	return b, nil
}

func (b *etcdBackend) newLocker(ctx context.Context, w int, name string) (locker, error) {
	s, err := etcdconc.NewSession(b.conns[w%len(b.conns)], etcdconc.WithTTL(int(sessionTTL.Seconds())), etcdconc.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	return &etcdLocker{s: s, Mutex: etcdconc.NewMutex(s, name)}, nil
}

func (b *etcdBackend) close() {
	for _, c := range b.conns {
		_ = c.Close()
	}
}

type etcdLocker struct {
	s *etcdconc.Session
	*etcdconc.Mutex
}

func (l *etcdLocker) Token() uint64 { return 0 }
func (l *etcdLocker) close()        { _ = l.s.Close() }

// redis

// redisBackend locks with redsync on one Redis: the Redlock algorithm with
// a single instance (quorum 1), the common deployment.
type redisBackend struct {
	cli    *goredislib.Client
	rs     *redsync.Redsync
	opts   []redsync.Option
	prefix string
}

func dialRedis(ctx context.Context, o options) (*redisBackend, error) {
	cli := goredislib.NewClient(&goredislib.Options{Addr: o.redisAddr, PoolSize: max(o.clients, o.hotClients) + 4})
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := cli.Ping(pctx).Err(); err != nil {
		_ = cli.Close()
		return nil, err
	}
	return &redisBackend{
		cli: cli,
		rs:  redsync.New(goredis.NewPool(cli)),
		// Defaults (8s expiry) but for retrying: redsync polls, and its
		// default of 32 tries 50-250ms apart fails under contention. Tries
		// are unbounded here; the op timeout bounds a wait instead.
		opts: []redsync.Option{redsync.WithTries(math.MaxInt32), redsync.WithRetryDelay(o.redisRetry)},
		// Keys of this run only: the Redis is shared and outlives the run.
		prefix: fmt.Sprintf("lockbench-%d/", time.Now().UnixNano()),
	}, nil
}

func (b *redisBackend) newLocker(_ context.Context, _ int, name string) (locker, error) {
	return &redisLocker{b.rs.NewMutex(b.prefix+name, b.opts...)}, nil
}

func (b *redisBackend) close() { _ = b.cli.Close() }

// CPUTime is the Redis server's CPU time from INFO cpu.
func (b *redisBackend) CPUTime() (time.Duration, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	info, err := b.cli.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, false
	}
	var total float64
	found := 0
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, false
			}
			total += f
			found++
		}
	}
	return time.Duration(total * float64(time.Second)), found == 2
}

type redisLocker struct{ m *redsync.Mutex }

func (l *redisLocker) Lock(ctx context.Context) error { return l.m.LockContext(ctx) }

func (l *redisLocker) Unlock(ctx context.Context) error {
	ok, err := l.m.UnlockContext(ctx)
	if err == nil && !ok {
		err = errors.New("redsync: unlock: the lock was no longer held (expired)")
	}
	return err
}

func (l *redisLocker) Token() uint64 { return 0 }
func (l *redisLocker) close()        {}
