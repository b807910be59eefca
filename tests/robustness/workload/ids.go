package workload

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/client/idgen"
	"github.com/concord-dev/concord/tests/robustness/checker"
	"github.com/concord-dev/concord/tests/robustness/history"
)

// IDsConfig shapes the ID workload. A negative count means none of that
// kind of client.
type IDsConfig struct {
	// AllocClients call AllocSegment on TagAlloc (default 1).
	AllocClients int
	// NextClients call NextIDs on TagBuffered, each pinned to one member
	// (client i to member i mod size; default 1).
	NextClients int
	// BufferClients take numbers of TagBuffered from an SDK segment
	// buffer (idgen.Segments; default 1).
	BufferClients int
	// SnowflakeClients run SDK snowflake generators (idgen.Snowflake on
	// a session of their own; default 1).
	SnowflakeClients int
	// MemberSnowflakeClients call NextSnowflakes, each pinned to one
	// member (default 1).
	MemberSnowflakeClients int
	// SequenceClients call NextSequence on SequenceName (default 1).
	SequenceClients int
	// TTL is the snowflake generators' session TTL (default 3s).
	TTL time.Duration
	// OpTimeout is each call's deadline (default 3s).
	OpTimeout time.Duration
	// Pace is the most a client waits between operations (default 40ms).
	Pace time.Duration
}

func (c *IDsConfig) setDefaults() {
	for _, n := range []*int{&c.AllocClients, &c.NextClients, &c.BufferClients, &c.SnowflakeClients, &c.MemberSnowflakeClients, &c.SequenceClients} {
		if *n == 0 {
			*n = 1
		}
		*n = max(*n, 0)
	}
	if c.TTL <= 0 {
		c.TTL = 3 * time.Second
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = 3 * time.Second
	}
	if c.Pace <= 0 {
		c.Pace = 40 * time.Millisecond
	}
}

// IDsWorkload names the ID workload in histories.
const IDsWorkload = "ids"

// The segment tags of the ID workload. Only the AllocSegment clients use
// TagAlloc, so their requests account for every number it hands out;
// TagBuffered feeds the members' buffers (NextIDs) and the SDK's.
const (
	TagAlloc    = "robustness/alloc"
	TagBuffered = "robustness/buffered"
)

// SequenceName is the strict sequence of the ID workload; only its
// NextSequence clients use it.
const SequenceName = "robustness/seq"

// IDs is the ID workload: clients allocate segments (AllocSegment), take
// numbers from the members' buffers (NextIDs, pinned to one member each)
// and from an SDK buffer, and snowflakes from the members' generators
// (NextSnowflakes, pinned) and from SDK generators, and values of a strict
// sequence (NextSequence), under faults. Every
// call records the IDs it returned and the stream they belong to: one SDK
// client (allocations), one member's buffer seen by one client, one SDK
// buffer, one SDK generator, one member's generators seen by one client
// per worker ID. checker.IDModel checks that each stream's IDs increase
// and that TagAlloc's allocations behave as a counter (an allocation
// invoked after another returned lies above it); checker.CheckIDs checks
// uniqueness across everything, that every number was handed out by its
// tag, and that no allocation was applied twice.
type IDs struct {
	cfg IDsConfig

	mu       sync.Mutex
	tags     map[string]checker.TagFinal // by namespace (checker.TagNamespace, SequenceNamespace)
	counters counters
}

// NewIDs returns the workload.
func NewIDs(cfg IDsConfig) *IDs {
	cfg.setDefaults()
	return &IDs{cfg: cfg}
}

// Name implements Workload.
func (w *IDs) Name() string { return IDsWorkload }

// Model implements Workload.
func (w *IDs) Model() *Model {
	return &Model{Porcupine: checker.IDModel, Operations: checker.IDOperations, PartitionName: checker.IDPartitionName}
}

// Counters returns how many IDs each kind of client received.
func (w *IDs) Counters() map[string]int {
	return w.counters.snapshot(IDsWorkload)
}

// Run implements Workload: it creates the tags, then runs the clients.
func (w *IDs) Run(ctx context.Context, env *Env) error {
	err := env.Cluster.Do(ctx, time.Minute, 5*time.Second, func(ctx context.Context, cl *client.Client) error {
		if _, err := cl.CreateTag(ctx, TagAlloc, 1_000_000, 100); err != nil {
			return err
		}
		_, err := cl.CreateTag(ctx, TagBuffered, 1_000_000_000, 50)
		return err
	})
	if err != nil {
		return fmt.Errorf("creating the tags: %w", err)
	}
	var wg sync.WaitGroup
	seq := 0
	start := func(f func(ctx context.Context, c *idClient)) {
		c := &idClient{w: w, env: env, index: seq, rng: rand.New(rand.NewPCG(uint64(env.Seed), uint64(5000+seq)))}
		seq++
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(ctx, c)
		}()
	}
	size := env.Cluster.Size()
	for range w.cfg.AllocClients {
		start(func(ctx context.Context, c *idClient) { c.alloc(ctx) })
	}
	for i := range w.cfg.NextClients {
		start(func(ctx context.Context, c *idClient) { c.nextIDs(ctx, i%size) })
	}
	for range w.cfg.BufferClients {
		start(func(ctx context.Context, c *idClient) { c.buffer(ctx) })
	}
	for range w.cfg.SnowflakeClients {
		start(func(ctx context.Context, c *idClient) { c.snowflakes(ctx) })
	}
	for i := range w.cfg.MemberSnowflakeClients {
		start(func(ctx context.Context, c *idClient) { c.memberSnowflakes(ctx, (i+1)%size) })
	}
	for range w.cfg.SequenceClients {
		start(func(ctx context.Context, c *idClient) { c.sequence(ctx) })
	}
	wg.Wait()
	return nil
}

// Finish implements Workload: it reads the tags linearizably.
func (w *IDs) Finish(ctx context.Context, env *Env) error {
	err := env.Cluster.Do(ctx, 30*time.Second, 5*time.Second, func(ctx context.Context, cl *client.Client) error {
		tags, err := cl.ListTags(ctx)
		if err != nil {
			return err
		}
		out := map[string]checker.TagFinal{}
		for _, t := range tags {
			if t.GetTag() == TagAlloc || t.GetTag() == TagBuffered {
				out[checker.TagNamespace(t.GetTag())] = checker.TagFinal{Start: t.GetStart(), Next: t.GetNext(), Exclusive: t.GetTag() == TagAlloc}
			}
		}
		// A sequence has no read: one more value, taken after the heal,
		// is the next the sequence would hand out (its own number
		// belongs to no recorded call).
		if w.cfg.SequenceClients > 0 {
			first, _, err := cl.NextSequence(ctx, SequenceName, 1)
			if err != nil {
				return err
			}
			out[checker.SequenceNamespace(SequenceName)] = checker.TagFinal{Start: 1, Next: first, Exclusive: true}
		}
		w.mu.Lock()
		w.tags = out
		w.mu.Unlock()
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading the tags: %w", err)
	}
	return nil
}

// Check implements Workload.
func (w *IDs) Check(env *Env, h *history.History) (checker.Stats, []checker.Violation) {
	w.mu.Lock()
	tags := w.tags
	w.mu.Unlock()
	return checker.CheckIDs(h.Of(IDsWorkload), tags)
}

// idClient is one client of the ID workload.
type idClient struct {
	w      *IDs
	env    *Env
	index  int
	rng    *rand.Rand
	proc   int
	failed bool // the last call failed
}

// record completes op and adds it. An operation that returned IDs is ok
// (with the error that stopped it, if any). One that returned none failed,
// except an allocation, whose outcome is then unknown: it may have consumed
// its numbers, which the accounting check must allow for. After an unknown
// outcome the client continues as a new process.
func (c *idClient) record(op history.Op, err error) {
	op.Return = c.env.Recorder.Now()
	op.Workload = IDsWorkload
	op.Process = c.proc
	switch {
	case err == nil || len(op.IDs) > 0:
		op.Status, op.Err = history.OK, errText(err)
		n := len(op.IDs)
		if op.Kind == checker.KindIDAlloc || op.Kind == checker.KindIDSequence {
			n = int(op.Count)
		}
		c.w.counters.add(string(op.Kind), n)
	case (op.Kind == checker.KindIDAlloc || op.Kind == checker.KindIDSequence) && !certainFailure(err):
		op.Status, op.Err = history.Unknown, errText(err)
	default:
		op.Status, op.Err = history.Fail, errText(err)
	}
	c.env.Recorder.Add(op)
	if op.Status == history.Unknown {
		c.proc = c.env.Recorder.NewProcess()
	}
	if err != nil {
		c.failed = true
	}
}

// pace waits a little between calls, longer after a failure: a member
// that refuses for a while (its clock far behind a worker ID's high-water
// mark, say) is not flooded.
func (c *idClient) pace(ctx context.Context) bool {
	d := time.Duration(c.rng.Int64N(int64(c.w.cfg.Pace) + 1))
	if c.failed {
		c.failed = false
		d += 250 * time.Millisecond
	}
	return pause(ctx, d)
}

func (c *idClient) begin(kind history.Kind, key, stream string, count int64) history.Op {
	return history.Op{Kind: kind, Key: key, Stream: stream, Count: count, Call: c.env.Recorder.Now()}
}

// alloc allocates segments of TagAlloc.
func (c *idClient) alloc(ctx context.Context) {
	c.ranges(ctx, checker.KindIDAlloc, TagAlloc, "alloc", 20, func(ctx context.Context, cl *client.Client, n int64) (int64, int64, error) {
		return cl.AllocSegment(ctx, TagAlloc, n)
	})
}

// sequence takes values of SequenceName, a few at a time.
func (c *idClient) sequence(ctx context.Context) {
	c.ranges(ctx, checker.KindIDSequence, SequenceName, "sequence", 5, func(ctx context.Context, cl *client.Client, n int64) (int64, int64, error) {
		first, last, err := cl.NextSequence(ctx, SequenceName, n)
		return first, last + 1, err
	})
}

// ranges runs a client that takes ranges [start, end) of 1 to most numbers
// of key with take, recorded as kind on its own stream.
func (c *idClient) ranges(ctx context.Context, kind history.Kind, key, name string, most int64,
	take func(ctx context.Context, cl *client.Client, n int64) (start, end int64, err error)) {
	cl, err := newClient(ctx, c.env.Cluster.Endpoints())
	if err != nil {
		return
	}
	defer cl.Close()
	c.proc = c.env.Recorder.NewProcess()
	stream := fmt.Sprintf("%s/c%d", name, c.index)
	for c.pace(ctx) {
		op := c.begin(kind, key, stream, 1+c.rng.Int64N(most))
		octx, cancel := context.WithTimeout(ctx, c.w.cfg.OpTimeout)
		start, end, err := take(octx, cl, op.Count)
		cancel()
		if err == nil {
			op.IDs = []int64{start, end}
		}
		c.record(op, err)
	}
}

// nextIDs takes numbers of TagBuffered from member m's buffer.
func (c *idClient) nextIDs(ctx context.Context, m int) {
	ep := c.env.Cluster.Endpoints()[m]
	cl, err := newClient(ctx, []string{ep})
	if err != nil {
		return
	}
	defer cl.Close()
	c.proc = c.env.Recorder.NewProcess()
	stream := fmt.Sprintf("next/c%d@%s", c.index, c.env.Cluster.Member(m).Name)
	for c.pace(ctx) {
		op := c.begin(checker.KindIDNext, TagBuffered, stream, 1+c.rng.Int64N(10))
		op.Endpoint = ep
		octx, cancel := context.WithTimeout(ctx, c.w.cfg.OpTimeout)
		ids, err := cl.NextIDs(octx, TagBuffered, op.Count)
		cancel()
		op.IDs = ids
		c.record(op, err)
	}
}

// buffer takes numbers of TagBuffered from an SDK segment buffer with a
// small, adaptive step, so that it fetches often.
func (c *idClient) buffer(ctx context.Context) {
	cl, err := newClient(ctx, c.env.Cluster.Endpoints())
	if err != nil {
		return
	}
	defer cl.Close()
	c.proc = c.env.Recorder.NewProcess()
	buf := idgen.NewSegments(cl, TagBuffered, idgen.SegmentConfig{Step: 20, MinStep: 10, MaxStep: 1000, Target: 2 * time.Second, FetchTimeout: c.w.cfg.OpTimeout})
	stream := fmt.Sprintf("buffer/c%d", c.index)
	for c.pace(ctx) {
		op := c.begin(checker.KindIDBuffer, TagBuffered, stream, 1+c.rng.Int64N(10))
		octx, cancel := context.WithTimeout(ctx, c.w.cfg.OpTimeout)
		var err error
		for range op.Count {
			var id int64
			if id, err = buf.Next(octx); err != nil {
				break
			}
			op.IDs = append(op.IDs, id)
		}
		cancel()
		c.record(op, err)
	}
}

// snowflakes runs SDK snowflake generators, one after the other: a
// generator that lost its worker ID (its session) is replaced.
func (c *idClient) snowflakes(ctx context.Context) {
	cl, err := newClient(ctx, c.env.Cluster.Endpoints())
	if err != nil {
		return
	}
	defer cl.Close()
	c.proc = c.env.Recorder.NewProcess()
	for gen := 0; ctx.Err() == nil; gen++ {
		sess, g := c.generator(ctx, cl)
		if g == nil {
			return
		}
		stream := fmt.Sprintf("snowflake/c%d.g%d", c.index, gen)
		for c.pace(ctx) {
			op := c.begin(checker.KindSnowflake, "", stream, 1+c.rng.Int64N(10))
			var err error
			for range op.Count {
				var id int64
				if id, err = g.Next(); err != nil {
					break
				}
				op.IDs = append(op.IDs, id)
			}
			c.record(op, err)
			if err != nil {
				break // ErrWorkerLost, or a clock rollback: start another
			}
		}
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = g.Close(cctx)
		_ = sess.Close(cctx)
		cancel()
	}
}

// generator starts an SDK snowflake generator on a new session, retrying
// until ctx ends.
func (c *idClient) generator(ctx context.Context, cl *client.Client) (*client.Session, *idgen.Snowflake) {
	for ctx.Err() == nil {
		gctx, cancel := context.WithTimeout(ctx, c.w.cfg.OpTimeout)
		sess, err := cl.NewSession(gctx, client.WithTTL(c.w.cfg.TTL))
		if err == nil {
			var g *idgen.Snowflake
			if g, err = idgen.NewSnowflake(gctx, idgen.NewSessionWorkers(sess), idgen.SnowflakeConfig{}); err == nil {
				cancel()
				return sess, g
			}
			sess.Orphan()
		}
		cancel()
		pause(ctx, 200*time.Millisecond)
	}
	return nil, nil
}

// memberSnowflakes takes snowflakes from member m's generators. IDs of one
// worker ID must increase: a member's generator issues increasing IDs, and
// the next holder of a worker ID issues only above the time its
// predecessor reserved.
func (c *idClient) memberSnowflakes(ctx context.Context, m int) {
	ep := c.env.Cluster.Endpoints()[m]
	cl, err := newClient(ctx, []string{ep})
	if err != nil {
		return
	}
	defer cl.Close()
	c.proc = c.env.Recorder.NewProcess()
	for c.pace(ctx) {
		op := c.begin(checker.KindMemberSnowflake, "", "", 1+c.rng.Int64N(10))
		op.Endpoint = ep
		octx, cancel := context.WithTimeout(ctx, c.w.cfg.OpTimeout)
		ids, err := cl.NextSnowflakes(octx, op.Count)
		cancel()
		op.IDs = ids
		if len(ids) > 0 {
			d, _ := idgen.DefaultLayout.Decode(ids[0])
			op.Stream = fmt.Sprintf("member-snowflake/c%d@%s/w%d", c.index, c.env.Cluster.Member(m).Name, d.Worker)
		}
		c.record(op, err)
	}
}
