package workload

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/tests/robustness/checker"
	"github.com/concord-dev/concord/tests/robustness/history"
)

// KVConfig shapes the key-value register workload.
type KVConfig struct {
	// Keys is the size of the key space (default 200); the first HotKeys
	// of them (default 10) get half the traffic.
	Keys, HotKeys int
	// Clients is the number of concurrent read-write clients (default 6).
	Clients int
	// Watchers is the number of watch streams (default 3): the first
	// watches every key through all members, the others a narrower
	// prefix through one member each.
	Watchers int
	// OpTimeout is each operation's deadline (default 3s).
	OpTimeout time.Duration
	// Pace is the most a client waits between operations (default 20ms).
	Pace time.Duration
	// Writers, if set, restricts the read-write clients to these members.
	Writers []int
	// PinnedReaders adds read-only clients, one per listed member, that
	// talk to that member alone and read the ReadKeys hottest keys.
	PinnedReaders []int
	// ReadKeys bounds the keys pinned readers read (default HotKeys).
	ReadKeys int
}

// KV is the key-value register workload: get, put (unique values),
// compare-and-swap and delete on a few hundred keys, with watches that
// must see every write in order and without gaps. Its operations are
// checked for linearizability per key with checker.KVModel.
type KV struct {
	cfg KVConfig

	watchCtx    context.Context
	stopWatches context.CancelFunc
	watchWG     sync.WaitGroup
	watchers    []*watcher

	mu        sync.Mutex
	compacted []string
}

// NewKV returns the workload.
func NewKV(cfg KVConfig) *KV {
	if cfg.Keys <= 0 {
		cfg.Keys = 200
	}
	if cfg.HotKeys <= 0 {
		cfg.HotKeys = 10
	}
	cfg.HotKeys = min(cfg.HotKeys, cfg.Keys)
	if cfg.Clients < 0 {
		cfg.Clients = 0
	} else if cfg.Clients == 0 {
		cfg.Clients = 6
	}
	if cfg.Watchers < 0 {
		cfg.Watchers = 0
	} else if cfg.Watchers == 0 {
		cfg.Watchers = 3
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 3 * time.Second
	}
	if cfg.Pace <= 0 {
		cfg.Pace = 20 * time.Millisecond
	}
	if cfg.ReadKeys <= 0 {
		cfg.ReadKeys = cfg.HotKeys
	}
	return &KV{cfg: cfg}
}

// KVWorkload names the workload in histories.
const KVWorkload = "kv"

// Name implements Workload.
func (w *KV) Name() string { return KVWorkload }

// Model implements Workload.
func (w *KV) Model() *Model {
	return &Model{Porcupine: checker.KVModel, Operations: checker.KVOperations, PartitionName: checker.KVPartitionName}
}

func (w *KV) key(i int) string { return fmt.Sprintf("kv/k%03d", i) }

func (w *KV) pickKey(rng *rand.Rand, limit int) string {
	if limit > 0 {
		return w.key(rng.IntN(limit))
	}
	if rng.IntN(2) == 0 || w.cfg.Keys == w.cfg.HotKeys {
		return w.key(rng.IntN(w.cfg.HotKeys))
	}
	return w.key(w.cfg.HotKeys + rng.IntN(w.cfg.Keys-w.cfg.HotKeys))
}

func endpointsOf(env *Env, members []int) []string {
	all := env.Cluster.Endpoints()
	if len(members) == 0 {
		return all
	}
	var out []string
	for _, m := range members {
		out = append(out, all[m])
	}
	return out
}

// Run implements Workload.
func (w *KV) Run(ctx context.Context, env *Env) error {
	w.watchCtx, w.stopWatches = context.WithCancel(context.Background())
	started := make(chan struct{}, w.cfg.Watchers)
	for i := 0; i < w.cfg.Watchers; i++ {
		wt := &watcher{kv: w, env: env, index: i}
		switch i {
		case 0:
			wt.prefix = "kv/"
		default:
			prefixes := []string{"kv/k00", "kv/k1", "kv/k0", "kv/k2"}
			wt.prefix = prefixes[(i-1)%len(prefixes)]
			wt.endpoints = endpointsOf(env, []int{i % env.Cluster.Size()})
		}
		if len(wt.endpoints) == 0 {
			wt.endpoints = env.Cluster.Endpoints()
		}
		w.watchers = append(w.watchers, wt)
		w.watchWG.Add(1)
		go func() {
			defer w.watchWG.Done()
			wt.run(w.watchCtx, started)
		}()
	}
	// Let every watch start before traffic, so the first segments cover
	// the whole run.
	for range w.cfg.Watchers {
		select {
		case <-started:
		case <-ctx.Done():
		}
	}
	var wg sync.WaitGroup
	for i := 0; i < w.cfg.Clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.client(ctx, env, i, endpointsOf(env, w.cfg.Writers), false, "")
		}()
	}
	for j, m := range w.cfg.PinnedReaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ep := env.Cluster.Endpoints()[m]
			w.client(ctx, env, w.cfg.Clients+j, []string{ep}, true, ep)
		}()
	}
	wg.Wait()
	return nil
}

// client runs one client: one operation at a time until ctx ends. After an
// operation of unknown outcome it continues as a new process with a new
// connection, leaving the old operation open in the history.
func (w *KV) client(ctx context.Context, env *Env, idx int, endpoints []string, readOnly bool, pinned string) {
	rec := env.Recorder
	rng := rand.New(rand.NewPCG(uint64(env.Seed), uint64(1000+idx)))
	cl, err := newClient(ctx, endpoints)
	if err != nil {
		return
	}
	defer func() { cl.Close() }()
	proc := rec.NewProcess()
	known := map[string]string{} // last value this client saw per key
	seq := 0
	limit := 0
	if readOnly {
		limit = w.cfg.ReadKeys
	}
	for pause(ctx, time.Duration(rng.Int64N(int64(w.cfg.Pace)+1))) {
		key := w.pickKey(rng, limit)
		op := history.Op{Process: proc, Workload: KVWorkload, Key: key, Endpoint: pinned}
		r := rng.IntN(100)
		switch {
		case readOnly || r < 45:
			op.Kind = checker.KindGet
		case r < 75:
			op.Kind = checker.KindPut
		case r < 95:
			op.Kind = checker.KindCAS
			old, ok := known[key]
			if !ok {
				op.Kind = checker.KindGet
			}
			op.Old = old
		default:
			op.Kind = checker.KindDelete
		}
		if op.Kind == checker.KindPut || op.Kind == checker.KindCAS {
			seq++
			op.Value = fmt.Sprintf("c%d.%d", idx, seq)
		}
		octx, cancel := context.WithTimeout(ctx, w.cfg.OpTimeout)
		op.Call = rec.Now()
		err := w.do(octx, cl, &op)
		op.Return = rec.Now()
		cancel()
		switch {
		case err == nil:
			op.Status = history.OK
		case op.Kind == checker.KindGet || certainFailure(err):
			op.Status, op.Err = history.Fail, errText(err)
		default:
			op.Status, op.Err = history.Unknown, errText(err)
		}
		rec.Add(op)
		switch op.Status {
		case history.OK:
			switch {
			case op.Kind == checker.KindGet && op.Found, op.Kind == checker.KindPut, op.Kind == checker.KindCAS && op.Succeeded:
				known[key] = op.Value
			default:
				delete(known, key)
			}
		case history.Unknown:
			delete(known, key)
			proc = rec.NewProcess()
			if !readOnly {
				cl.Close()
				fresh, err := newClient(ctx, endpoints)
				if err != nil {
					return
				}
				cl = fresh
			}
		}
	}
}

// do runs op and fills in its outputs.
func (w *KV) do(ctx context.Context, cl *client.Client, op *history.Op) error {
	switch op.Kind {
	case checker.KindGet:
		kv, err := cl.Get(ctx, op.Key)
		if errors.Is(err, client.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		op.Found, op.Value, op.Rev = true, string(kv.GetValue()), kv.GetModRevision()
	case checker.KindPut:
		res, err := cl.Put(ctx, op.Key, []byte(op.Value))
		if err != nil {
			return err
		}
		op.Rev = res.Revision
	case checker.KindCAS:
		rev, err := cl.CompareAndSwap(ctx, op.Key, []byte(op.Old), []byte(op.Value))
		if errors.Is(err, client.ErrCompareFailed) {
			return nil
		}
		if err != nil {
			return err
		}
		op.Succeeded, op.Rev = true, rev
	case checker.KindDelete:
		res, err := cl.Delete(ctx, op.Key)
		if err != nil {
			return err
		}
		op.Rev, op.Deleted = res.Revision, res.Deleted
	}
	return nil
}

// Finish implements Workload: it writes a fence into every watched range and
// waits until each watcher delivered it, stops the watches, then reads every
// key once.
func (w *KV) Finish(ctx context.Context, env *Env) error {
	defer func() {
		w.stopWatches()
		w.watchWG.Wait()
	}()
	var errs []error
	rec := env.Recorder
	proc := rec.NewProcess()
	for _, wt := range w.watchers {
		if err := w.fence(ctx, env, wt, proc); err != nil {
			errs = append(errs, err)
		}
	}
	// The final read: every key at once, linearizably.
	err := env.Cluster.Do(ctx, 30*time.Second, 5*time.Second, func(ctx context.Context, cl *client.Client) error {
		call := rec.Now()
		res, err := cl.Range(ctx, "kv/", client.WithPrefix())
		ret := rec.Now()
		if err != nil {
			return err
		}
		if res.More {
			return fmt.Errorf("final read is paged: %d keys", res.Count)
		}
		found := map[string]*client.KeyValue{}
		for _, kv := range res.KVs {
			found[string(kv.GetKey())] = kv
		}
		keys := map[string]bool{}
		for i := 0; i < w.cfg.Keys; i++ {
			keys[w.key(i)] = true
		}
		for _, wt := range w.watchers {
			keys[wt.prefix+"~fence"] = true
		}
		for k := range found {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			op := history.Op{Process: proc, Workload: KVWorkload, Kind: checker.KindGet, Key: k, Call: call, Return: ret, Status: history.OK}
			if kv, ok := found[k]; ok {
				op.Found, op.Value, op.Rev = true, string(kv.GetValue()), kv.GetModRevision()
			}
			rec.Add(op)
		}
		return nil
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("final read: %w", err))
	}
	return errors.Join(errs...)
}

// fence writes a fence key into wt's range and waits (30 s) until wt
// delivered it. A watcher that restarted its watch after the fence (a new
// segment from a later revision) cannot deliver it: then it writes another.
func (w *KV) fence(ctx context.Context, env *Env, wt *watcher, proc int) error {
	rec := env.Recorder
	attempt := 0
	for round := 0; round < 3; round++ {
		var rev uint64
		err := env.Cluster.Do(ctx, 30*time.Second, 5*time.Second, func(ctx context.Context, cl *client.Client) error {
			attempt++
			op := history.Op{Process: proc, Workload: KVWorkload, Kind: checker.KindPut, Key: wt.prefix + "~fence",
				Value: fmt.Sprintf("fence.%d.%d", wt.index, attempt)}
			op.Call = rec.Now()
			res, err := cl.Put(ctx, op.Key, []byte(op.Value))
			op.Return = rec.Now()
			if err != nil {
				// The write stays open; the retry writes anew.
				op.Status, op.Err = history.Unknown, errText(err)
				op.Process = rec.NewProcess()
				rec.Add(op)
				return err
			}
			op.Status, op.Rev = history.OK, res.Revision
			rec.Add(op)
			rev = res.Revision
			return nil
		})
		if err != nil {
			return fmt.Errorf("fence for watcher %d: %w", wt.index, err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			delivered, segStart := wt.progress()
			if delivered >= rev {
				return nil
			}
			if segStart > rev {
				break // restarted past the fence: write another
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("watcher %d (prefix %q via %v) delivered through revision %d, not its fence at %d, 30s after the heal",
					wt.index, wt.prefix, wt.endpoints, delivered, rev)
			}
			if !pause(ctx, 50*time.Millisecond) {
				return ctx.Err()
			}
		}
	}
	return fmt.Errorf("watcher %d (prefix %q) restarted past three fences in a row", wt.index, wt.prefix)
}

// Check implements Workload: the watch streams against the history.
func (w *KV) Check(env *Env, h *history.History) (checker.Stats, []checker.Violation) {
	return checker.CheckWatches(h.Of(KVWorkload), h.Watches)
}

// Compacted describes the watch segments that ended with ErrCompacted:
// which watcher, through which endpoints, and the error.
func (w *KV) Compacted() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.compacted...)
}

// watcher keeps one watch running, in segments.
type watcher struct {
	kv        *KV
	env       *Env
	index     int
	prefix    string
	endpoints []string

	mu        sync.Mutex
	delivered uint64 // highest response revision delivered
	segStart  uint64 // start revision of the current segment
}

func (wt *watcher) advance(rev uint64) {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	wt.delivered = max(wt.delivered, rev)
}

func (wt *watcher) startSegment(start uint64) {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	wt.segStart = start
}

// progress returns the highest revision delivered and the start of the
// current segment.
func (wt *watcher) progress() (delivered, segStart uint64) {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	return wt.delivered, wt.segStart
}

func (wt *watcher) run(ctx context.Context, started chan<- struct{}) {
	rec := wt.env.Recorder
	cl, err := newClient(ctx, wt.endpoints)
	if err != nil {
		started <- struct{}{}
		return
	}
	defer cl.Close()
	once := func() { started <- struct{}{} }
	var signalled bool
	for seg := 0; ctx.Err() == nil; seg++ {
		// Start each segment at the revision after a linearizable read.
		var start uint64
		for ctx.Err() == nil {
			rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			res, err := cl.Range(rctx, wt.prefix, client.WithPrefix(), client.WithCountOnly())
			cancel()
			if err == nil {
				start = res.Revision + 1
				break
			}
			pause(ctx, 200*time.Millisecond)
		}
		if ctx.Err() != nil {
			break
		}
		ep := ""
		if len(wt.endpoints) == 1 {
			ep = wt.endpoints[0]
		}
		s := &history.WatchSegment{Watcher: wt.index, Segment: seg, Endpoint: ep, Prefix: wt.prefix, StartRev: start, Started: rec.Now()}
		rec.AddSegment(s)
		wt.startSegment(start)
		if !signalled {
			once()
			signalled = true
		}
		for resp := range cl.Watch(ctx, wt.prefix, client.WithPrefix(), client.WithRevision(start)) {
			r := history.WatchResponse{At: rec.Now(), Revision: resp.Revision}
			for _, ev := range resp.Events {
				e := history.Event{Type: "put", Key: string(ev.GetKv().GetKey()), Value: string(ev.GetKv().GetValue()), Rev: ev.GetKv().GetModRevision()}
				if ev.GetType() == client.EventDelete {
					e.Type, e.Value = "delete", ""
				}
				r.Events = append(r.Events, e)
			}
			if resp.Err != nil {
				r.Err = errText(resp.Err)
				s.Err = r.Err
				if errors.Is(resp.Err, client.ErrCompacted) {
					wt.kv.mu.Lock()
					wt.kv.compacted = append(wt.kv.compacted, fmt.Sprintf("watcher %d (prefix %q via %d endpoint(s)) segment %d from revision %d: %s",
						wt.index, wt.prefix, len(wt.endpoints), seg, start, r.Err))
					wt.kv.mu.Unlock()
				}
			}
			s.Resps = append(s.Resps, r)
			if len(r.Events) > 0 || resp.Progress {
				wt.advance(resp.Revision)
			}
		}
		s.Ended = rec.Now()
	}
	if !signalled {
		once()
	}
}
