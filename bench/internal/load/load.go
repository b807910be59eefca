// Package load drives a closed-loop load against a key-value store: a fixed
// number of workers, each issuing one operation at a time, and measures
// throughput and the latency of every operation.
package load

import (
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/concord-dev/concord/bench/internal/kv"
)

// Op is an operation under test.
type Op string

// Operations.
const (
	Put Op = "put"
	Get Op = "get"
)

// Config shapes a load. Every system under test gets the same.
type Config struct {
	// Workers is the number of concurrent closed-loop workers; worker i
	// uses conns[i % len(conns)].
	Workers int
	// Keys is the size of the key space; keys are drawn uniformly.
	Keys int
	// ValueSize is the size of every written value in bytes.
	ValueSize int
	// OpTimeout bounds one operation.
	OpTimeout time.Duration
}

// Load runs phases of a Config against a set of Conns.
type Load struct {
	cfg   Config
	conns []kv.Conn
	keys  []string
	value []byte
}

// New prepares a load: its key names and its (random) value.
func New(cfg Config, conns []kv.Conn) *Load {
	keys := make([]string, cfg.Keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("kvbench/%08d", i)
	}
	value := make([]byte, cfg.ValueSize)
	_, _ = rand.Read(value)
	return &Load{cfg: cfg, conns: conns, keys: keys, value: value}
}

// Preload writes every key of the key space once, so that gets find them.
func (l *Load) Preload(ctx context.Context) error {
	next := make(chan string)
	errs := make(chan error, l.cfg.Workers)
	var wg sync.WaitGroup
	for w := range l.cfg.Workers {
		conn := l.conns[w%len(l.conns)]
		wg.Go(func() {
			for key := range next {
				if err := l.do(ctx, conn, Put, key); err != nil {
					errs <- fmt.Errorf("preload %s: %w", key, err)
					return
				}
			}
		})
	}
	err := l.feed(ctx, next, errs)
	close(next)
	wg.Wait()
	return err
}

// feed sends every key to next until done, a worker fails or ctx ends.
func (l *Load) feed(ctx context.Context, next chan<- string, errs <-chan error) error {
	for _, key := range l.keys {
		select {
		case next <- key:
		case err := <-errs:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Run runs op for d and measures every operation started meanwhile. Run
// it once unmeasured first to warm up.
func (l *Load) Run(ctx context.Context, op Op, d time.Duration) *Sample {
	start := time.Now()
	until := start.Add(d)
	samples := make([]*Sample, l.cfg.Workers)
	var wg sync.WaitGroup
	for w := range l.cfg.Workers {
		samples[w] = &Sample{}
		rng := mrand.New(mrand.NewPCG(uint64(start.UnixNano()), uint64(w)))
		conn := l.conns[w%len(l.conns)]
		wg.Go(func() { l.work(ctx, conn, op, rng, until, samples[w]) })
	}
	wg.Wait()
	return Merge(samples, d)
}

// work is one worker's loop: it issues op on random keys, one at a time,
// until until, and records each into s.
func (l *Load) work(ctx context.Context, conn kv.Conn, op Op, rng *mrand.Rand, until time.Time, s *Sample) {
	for ctx.Err() == nil {
		key := l.keys[rng.IntN(len(l.keys))]
		begin := time.Now()
		if !begin.Before(until) {
			return
		}
		err := l.do(ctx, conn, op, key)
		s.Record(time.Since(begin), err)
	}
}

// do runs one operation under the operation timeout.
func (l *Load) do(ctx context.Context, conn kv.Conn, op Op, key string) error {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.OpTimeout)
	defer cancel()
	switch op {
	case Put:
		return conn.Put(ctx, key, l.value)
	case Get:
		return conn.Get(ctx, key)
	default:
		return fmt.Errorf("unknown operation %q", op)
	}
}
