package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/client/idgen"
	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/fsm"
	"github.com/concord-dev/concord/internal/ids"
)

// idServer serves NextIDs and NextSnowflakes from this member's own
// generators: a segment buffer per tag, and one snowflake generator whose
// worker ID is leased to a session the member keeps alive itself. They are
// the SDK's generators, fed by the member directly instead of over the
// network.
type idServer struct {
	s *Server

	mu       sync.Mutex
	segments map[string]*idgen.Segments
	snow     *idgen.Snowflake
	own      *ownSession
	// refused is the cluster's refusal of the last generator started
	// (its reservation, over an hour past the leader's clock), until
	// refusedUntil: calls meanwhile get it without starting another, each
	// of which costs Raft writes and a worker ID held for its guard.
	refused      error
	refusedUntil time.Time
}

// refusalMemory is how long a refused generator start is answered from
// memory.
const refusalMemory = time.Second

func newIDServer(s *Server) *idServer { return &idServer{s: s, segments: map[string]*idgen.Segments{}} }

// AllocSegment lets the member's buffers allocate through the server.
func (d *idServer) AllocSegment(ctx context.Context, tag string, count int64) (int64, int64, error) {
	r, err := d.s.AllocSegment(ctx, &concordv1.AllocSegmentRequest{Tag: tag, Count: count})
	if err != nil {
		return 0, 0, err
	}
	return r.GetStart(), r.GetEnd(), nil
}

func (d *idServer) buffer(ctx context.Context, tag string) (*idgen.Segments, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if b := d.segments[tag]; b != nil {
		return b, nil
	}
	var step int64
	var exists bool
	d.s.fsm.Read(func(st fsm.State) {
		var tg ids.Tag
		tg, exists = st.IDs.Tag(tag)
		step = tg.Step
	})
	if !exists {
		// The tag may have just been created through another member.
		if err := d.s.barrier(ctx, concordv1.Consistency_CONSISTENCY_LINEARIZABLE, 0); err != nil {
			return nil, err
		}
		d.s.fsm.Read(func(st fsm.State) {
			var tg ids.Tag
			tg, exists = st.IDs.Tag(tag)
			step = tg.Step
		})
		if !exists {
			return nil, errs.Wrapf(ids.ErrUnknownTag, "tag %q", tag)
		}
	}
	b := idgen.NewSegments(d, tag, idgen.SegmentConfig{Step: step, MaxStep: d.s.cfg.Limits.MaxSegmentStep})
	d.segments[tag] = b
	return b, nil
}

// NextIDs returns n numbers of a tag from this member's buffer.
func (s *Server) NextIDs(ctx context.Context, req *concordv1.NextIDsRequest) (*concordv1.NextIDsResponse, error) {
	if err := checkIDName("tag", req.GetTag()); err != nil {
		return nil, err
	}
	if err := s.checkCount(req.GetN()); err != nil {
		return nil, err
	}
	b, err := s.idsrv.buffer(ctx, req.GetTag())
	if err != nil {
		return nil, err
	}
	out := &concordv1.NextIDsResponse{Ids: make([]int64, req.GetN())}
	for i := range out.Ids {
		if out.Ids[i], err = b.Next(ctx); err != nil {
			return nil, err
		}
	}
	out.Header = s.header(s.fsm.AppliedIndex())
	return out, nil
}

// NextSnowflakes returns n snowflake IDs (default layout, pool "default")
// from this member's generator.
func (s *Server) NextSnowflakes(ctx context.Context, req *concordv1.NextSnowflakesRequest) (*concordv1.NextSnowflakesResponse, error) {
	if err := s.checkCount(req.GetN()); err != nil {
		return nil, err
	}
	out := &concordv1.NextSnowflakesResponse{Ids: make([]int64, req.GetN())}
	for attempt := 0; ; attempt++ {
		g, err := s.idsrv.snowflake(ctx)
		if err != nil {
			return nil, err
		}
		i := 0
		for ; i < len(out.Ids); i++ {
			if out.Ids[i], err = g.Next(); err != nil {
				break
			}
		}
		if err == nil {
			out.Header = s.header(s.fsm.AppliedIndex())
			return out, nil
		}
		if errors.Is(err, idgen.ErrClockRollback) {
			return nil, errs.Wrapf(ErrClockBehind, "%v", err)
		}
		if !errors.Is(err, client.ErrWorkerLost) {
			// A reservation the cluster refused (this member's clock an
			// hour ahead) or could not renew in time: the generator
			// stays, and its next call renews again. A fresh one would
			// be refused just the same, and each would lease another
			// worker ID and hold it for its guard: a member whose clock
			// stepped ahead used up the pool in seconds that way.
			return nil, snowflakeError(err)
		}
		// A lost worker ID: the next attempt starts a fresh generator.
		s.idsrv.drop(g)
		if attempt > 0 {
			return nil, snowflakeError(err)
		}
	}
}

// snowflakeError gives a generator's error a reason for the wire. The
// cluster's own refusals (INVALID_ID_REQUEST for a reservation over an hour
// past the leader's clock, NO_LEADER, ...) keep theirs.
func snowflakeError(err error) error {
	var e *errs.Error
	switch {
	case errors.As(err, &e):
		return err
	case errors.Is(err, client.ErrExhausted):
		return errs.Wrapf(ids.ErrExhausted, "%v", err)
	}
	return err
}

func (d *idServer) snowflake(ctx context.Context) (*idgen.Snowflake, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.snow != nil {
		return d.snow, nil
	}
	if d.refused != nil && time.Now().Before(d.refusedUntil) {
		return nil, d.refused
	}
	own, err := d.s.newOwnSession(ctx)
	if err != nil {
		return nil, err
	}
	g, err := idgen.NewSnowflake(ctx, &memberWorkers{s: d.s, own: own}, idgen.SnowflakeConfig{Clock: serverClock{d.s}})
	if err != nil {
		d.s.endOwnSession(own)
		if errors.Is(err, ids.ErrInvalid) {
			d.refused, d.refusedUntil = err, time.Now().Add(refusalMemory)
		}
		return nil, err
	}
	d.refused = nil
	d.snow, d.own = g, own
	return g, nil
}

// drop forgets a generator whose worker ID was lost, so that the next call
// starts another. Its session is revoked, which frees its worker IDs at
// once rather than when the session expires.
func (d *idServer) drop(g *idgen.Snowflake) {
	d.mu.Lock()
	if d.snow != g {
		d.mu.Unlock()
		return
	}
	own := d.own
	d.snow, d.own = nil, nil
	d.mu.Unlock()
	d.s.endOwnSession(own)
}

func (d *idServer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.snow != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = d.snow.Close(ctx)
		cancel()
		d.own.close()
		d.snow, d.own = nil, nil
	}
}

// serverClock gives the generator the member's clock (skewed in fault
// runs).
type serverClock struct{ s *Server }

func (c serverClock) Now() time.Time        { return c.s.clock.Now() }
func (c serverClock) Sleep(d time.Duration) { time.Sleep(d) }

// memberWorkers leases worker IDs to the member's own session.
type memberWorkers struct {
	s   *Server
	own *ownSession
}

func (m *memberWorkers) owner() string { return "member/" + m.s.cfg.Name }

func (m *memberWorkers) Lease(ctx context.Context, pool string, bits int, guard time.Duration) (int64, int64, error) {
	r, err := m.s.LeaseWorker(ctx, &concordv1.LeaseWorkerRequest{Pool: pool, WorkerBits: int32(bits), Session: m.own.id,
		Owner: m.owner(), GuardMs: guard.Milliseconds()})
	if err != nil {
		return 0, 0, err
	}
	return r.GetWorkerId(), r.GetHighWaterMs(), nil
}

func (m *memberWorkers) Reserve(ctx context.Context, pool string, id, untilMs int64) (int64, error) {
	r, err := m.s.ReserveWorker(ctx, &concordv1.ReserveWorkerRequest{Pool: pool, WorkerId: id, Session: m.own.id, Owner: m.owner(), UntilMs: untilMs})
	if err != nil {
		if errors.Is(err, ids.ErrWorkerNotHeld) {
			return 0, client.ErrWorkerLost
		}
		if unavailable(err) {
			// The generator retries these for a while; any other refusal
			// fails its Next at once.
			return 0, fmt.Errorf("%w: %w", client.ErrUnavailable, err)
		}
		return 0, err
	}
	return r.GetHighWaterMs(), nil
}

func (m *memberWorkers) Release(ctx context.Context, pool string, id int64) error {
	_, err := m.s.ReleaseWorker(ctx, &concordv1.ReleaseWorkerRequest{Pool: pool, WorkerId: id, Session: m.own.id, Owner: m.owner()})
	return err
}

func (m *memberWorkers) Done() <-chan struct{} { return m.own.done }

// ownSession is a session the member keeps alive for itself.
type ownSession struct {
	id     int64
	done   chan struct{}
	cancel context.CancelFunc
	once   sync.Once
}

const ownSessionTTL = 10 * time.Second

func (s *Server) newOwnSession(ctx context.Context) (*ownSession, error) {
	r, err := s.CreateSession(ctx, &concordv1.CreateSessionRequest{TtlMs: ownSessionTTL.Milliseconds(), Name: "member " + s.cfg.Name + " ID generator"})
	if err != nil {
		return nil, err
	}
	kctx, cancel := context.WithCancel(context.Background())
	o := &ownSession{id: r.GetId(), done: make(chan struct{}), cancel: cancel}
	go func() {
		last := time.Now()
		tick := time.NewTicker(ownSessionTTL / 4)
		defer tick.Stop()
		for {
			select {
			case <-kctx.Done():
				return
			case <-s.stopCh:
				o.close()
				return
			case <-tick.C:
			}
			sent := time.Now()
			cctx, c := context.WithTimeout(kctx, ownSessionTTL/4)
			ttls, err := s.KeepAlive(cctx, []int64{o.id})
			c()
			switch {
			case err == nil && ttls[0] < 0:
				o.close()
				return
			case err == nil:
				last = sent
			case time.Since(last) > ownSessionTTL:
				o.close()
				return
			}
		}
	}()
	return o, nil
}

// endOwnSession stops keeping a session alive and revokes it, best effort:
// revoking frees its worker IDs now rather than when it expires.
func (s *Server) endOwnSession(o *ownSession) {
	o.close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = s.RevokeSession(ctx, &concordv1.RevokeSessionRequest{Id: o.id})
}

// unavailable reports whether an error of this member's request is one the
// cluster may not give again: no leader, a timeout, a shutdown.
func unavailable(err error) bool {
	var e *errs.Error
	if !errors.As(err, &e) {
		return false
	}
	c := errs.Codes[e.Reason()]
	return c == connect.CodeUnavailable || c == connect.CodeDeadlineExceeded
}

func (o *ownSession) close() {
	o.once.Do(func() {
		o.cancel()
		close(o.done)
	})
}

// idCollector exports the member's generators and the cluster's tags as
// Prometheus metrics, concord_ids_*.
type idCollector struct{ s *Server }

var (
	descIssued     = prometheus.NewDesc("concord_ids_issued_total", "IDs issued by this member's generators, by kind and tag.", []string{"kind", "tag"}, nil)
	descFetches    = prometheus.NewDesc("concord_ids_segment_fetches_total", "Segments this member's buffers fetched, by tag.", []string{"tag"}, nil)
	descSlowest    = prometheus.NewDesc("concord_ids_segment_fetch_max_seconds", "Slowest segment fetch of this member's buffers, by tag.", []string{"tag"}, nil)
	descBuffered   = prometheus.NewDesc("concord_ids_segment_buffered", "Numbers ready in this member's buffer, by tag.", []string{"tag"}, nil)
	descStep       = prometheus.NewDesc("concord_ids_segment_step", "Current adaptive step of this member's buffer, by tag.", []string{"tag"}, nil)
	descStepChange = prometheus.NewDesc("concord_ids_segment_step_changes_total", "Step changes of this member's buffer, by tag.", []string{"tag"}, nil)
	descRollbacks  = prometheus.NewDesc("concord_ids_clock_rollbacks_total", "Clock rollbacks this member's snowflake generator met, by strategy.", []string{"strategy"}, nil)
	descLeases     = prometheus.NewDesc("concord_ids_worker_leases_total", "Worker IDs leased by this member's snowflake generator.", nil, nil)
	descYears      = prometheus.NewDesc("concord_ids_snowflake_years_left", "Years before the default layout's time field runs out.", nil, nil)
	descTagNext    = prometheus.NewDesc("concord_ids_tag_next", "Next unallocated number of each tag (cluster state).", []string{"tag"}, nil)
)

func (c idCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descIssued, descFetches, descSlowest, descBuffered, descStep, descStepChange, descRollbacks, descLeases, descYears, descTagNext} {
		ch <- d
	}
}

func (c idCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.s.idsrv
	d.mu.Lock()
	for tag, b := range d.segments {
		st := b.Stats()
		ch <- prometheus.MustNewConstMetric(descIssued, prometheus.CounterValue, float64(st.Issued), "segment", tag)
		ch <- prometheus.MustNewConstMetric(descFetches, prometheus.CounterValue, float64(st.Fetches), tag)
		ch <- prometheus.MustNewConstMetric(descSlowest, prometheus.GaugeValue, st.MaxFetch.Seconds(), tag)
		ch <- prometheus.MustNewConstMetric(descBuffered, prometheus.GaugeValue, float64(st.Buffered), tag)
		ch <- prometheus.MustNewConstMetric(descStep, prometheus.GaugeValue, float64(st.Step), tag)
		ch <- prometheus.MustNewConstMetric(descStepChange, prometheus.CounterValue, float64(st.StepChanges), tag)
	}
	snow := d.snow
	d.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descYears, prometheus.GaugeValue, idgen.DefaultLayout.YearsLeft(c.s.clock.Now()))
	if snow != nil {
		st := snow.Stats()
		ch <- prometheus.MustNewConstMetric(descIssued, prometheus.CounterValue, float64(st.Issued), "snowflake", "")
		ch <- prometheus.MustNewConstMetric(descLeases, prometheus.CounterValue, float64(st.Leases))
		for _, s := range []idgen.Strategy{idgen.Wait, idgen.Refuse, idgen.SpareWorker, idgen.LogicalClock} {
			ch <- prometheus.MustNewConstMetric(descRollbacks, prometheus.CounterValue, float64(st.Rollbacks[s]), s.String())
		}
	}
	c.s.fsm.Read(func(st fsm.State) {
		for _, tg := range st.IDs.Tags() {
			ch <- prometheus.MustNewConstMetric(descTagNext, prometheus.GaugeValue, float64(tg.Next), tg.Name)
		}
	})
}
