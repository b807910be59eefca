package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/raftlog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"go.etcd.io/bbolt"
)

// EntryType tells the state machine what a log entry is.
type EntryType uint8

const (
	// EntryCommand is a command proposed through Propose.
	EntryCommand EntryType = iota + 1
	// EntryOther is a Raft-internal entry (a configuration change) that
	// advances the applied index but carries no command.
	EntryOther
)

// Entry is one committed log entry handed to the state machine.
type Entry struct {
	Index uint64
	Term  uint64
	Type  EntryType
	Data  []byte
}

// StateMachine is what Raft drives.
type StateMachine interface {
	// ApplyBatch applies committed entries in order and returns one result
	// per entry.
	ApplyBatch(entries []Entry) []any
	// Snapshot captures the state; it is called with applies stopped and
	// must be cheap. The capture is written out later, concurrently with
	// applies.
	Snapshot() (Snapshot, error)
	// Restore replaces the state with a snapshot's content.
	Restore(r io.Reader) error
}

// Snapshot is a captured state.
type Snapshot interface {
	// Persist writes the capture.
	Persist(w io.Writer) (int64, error)
}

// Streams carries Raft's connections; the peer mux provides it.
type Streams interface {
	net.Listener
	DialTimeout(addr string, timeout time.Duration) (net.Conn, error)
}

// Server is one member of the Raft configuration.
type Server struct {
	ID    string
	Addr  string
	Voter bool
}

// Config configures a node. Zero durations and counts take the documented
// defaults.
type Config struct {
	// ID is this member's Raft server ID.
	ID string
	// Dir holds the log, the stable store and the snapshots.
	Dir string
	// Advertise is the peer address other members dial.
	Advertise string
	// Streams carries Raft traffic.
	Streams Streams
	// Bootstrap, if set and the node has no state, is the initial
	// configuration.
	Bootstrap []Server
	// HeartbeatTimeout defaults to 1s; ElectionTimeout to 1s;
	// LeaderLeaseTimeout to half the heartbeat timeout; CommitTimeout to
	// 5ms.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// SnapshotThreshold is how many entries trigger a snapshot; default
	// 16384. SnapshotInterval is how often the threshold is checked;
	// default 20s. TrailingLogs is how many entries stay after a snapshot
	// for slow followers; default 10240.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// MaxAppendEntries bounds a replication batch; default 512.
	MaxAppendEntries int
	// LogStore is the Raft log's storage: "seglog" (concord's segmented
	// log, internal/raftlog: one fsync per append), "bolt" (raft-boltdb:
	// two fsyncs per append) or "wal" (raft-wal, labelled experimental by
	// its authors). A data dir keeps the store it was created with; empty
	// means that one, or seglog for a new data dir.
	LogStore string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Metrics, if set, receives the node's measurements.
	Metrics *Metrics
	// OnLogFailure, if set, is called once when the log store fails for
	// good (raftlog.ErrFailed: a failed fdatasync, or a deletion that
	// failed part way): the node can no longer take part in commits, and
	// a restart, which reads the disk again, is the way out.
	OnLogFailure func(error)
}

func (c *Config) setDefaults() {
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = time.Second
	}
	if c.ElectionTimeout <= 0 {
		c.ElectionTimeout = time.Second
	}
	if c.LeaderLeaseTimeout <= 0 {
		c.LeaderLeaseTimeout = c.HeartbeatTimeout / 2
	}
	if c.CommitTimeout <= 0 {
		c.CommitTimeout = 5 * time.Millisecond
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 16384
	}
	if c.SnapshotInterval <= 0 {
		c.SnapshotInterval = 20 * time.Second
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 10240
	}
	if c.MaxAppendEntries <= 0 {
		c.MaxAppendEntries = 512
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Node is one running Raft member.
type Node struct {
	cfg       Config
	raft      *raft.Raft
	store     *stores
	snaps     *raft.FileSnapshotStore
	transport *raft.NetworkTransport
	stream    *streamLayer
	observer  *raft.Observer
	obsCh     chan raft.Observation
	stopObs   chan struct{}
	closeOnce sync.Once
	configsMu sync.Mutex // guards configs
	configs   configCache
}

func (c *Config) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.ID)
	rc.HeartbeatTimeout = c.HeartbeatTimeout
	rc.ElectionTimeout = c.ElectionTimeout
	rc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	rc.CommitTimeout = c.CommitTimeout
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.SnapshotInterval = c.SnapshotInterval
	rc.TrailingLogs = c.TrailingLogs
	rc.MaxAppendEntries = c.MaxAppendEntries
	rc.BatchApplyCh = true
	rc.Logger = newHCLog(c.Logger, "raft")
	return rc
}

// Log stores.
const (
	LogStoreSeglog = "seglog"
	LogStoreBolt   = "bolt"
	LogStoreWAL    = "wal"
)

// LogStores lists the log stores, the default first.
var LogStores = []string{LogStoreSeglog, LogStoreBolt, LogStoreWAL}

// stores is the log and stable store of one data dir.
type stores struct {
	logs   raft.LogStore
	stable raft.StableStore
	close  func() error
}

func (s *stores) Close() error { return s.close() }

// detectLogStore returns the log store a Raft dir already holds, or "".
func detectLogStore(dir string) string {
	if _, err := os.Stat(filepath.Join(dir, "raft.db")); err == nil {
		return LogStoreBolt
	}
	if _, err := os.Stat(filepath.Join(dir, "wal")); err == nil {
		return LogStoreWAL
	}
	if _, err := os.Stat(filepath.Join(dir, "seglog")); err == nil {
		return LogStoreSeglog
	}
	return ""
}

func openStores(dir, kind string, logger *slog.Logger) (*stores, *raft.FileSnapshotStore, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, nil, fmt.Errorf("raft dir: %w", err)
	}
	have := detectLogStore(dir)
	if kind == "" {
		kind = have
		if kind == "" {
			kind = LogStoreSeglog
		}
	}
	if have != "" && have != kind {
		return nil, nil, fmt.Errorf("%s holds a %q Raft log, not %q: a data dir keeps the log store it was created with (use --raft-log-store %s)", dir, have, kind, have)
	}
	var st *stores
	switch kind {
	case LogStoreSeglog:
		// The log in segments of its own; term and vote, written on
		// elections only, in a small bbolt file.
		stable, err := raftboltdb.New(raftboltdb.Options{
			Path:        filepath.Join(dir, "stable.db"),
			BoltOptions: &bbolt.Options{Timeout: time.Second},
		})
		if err != nil {
			return nil, nil, fmt.Errorf("open raft stable store %s: %w (is another concord using this data dir?)", dir, err)
		}
		logs, err := raftlog.Open(filepath.Join(dir, "seglog"), raftlog.Options{Logger: logger})
		if err != nil {
			stable.Close()
			return nil, nil, fmt.Errorf("open raft log %s: %w", dir, err)
		}
		st = &stores{logs: logs, stable: stable, close: func() error { return errors.Join(logs.Close(), stable.Close()) }}
	case LogStoreBolt:
		store, err := raftboltdb.New(raftboltdb.Options{
			Path: filepath.Join(dir, "raft.db"),
			BoltOptions: &bbolt.Options{
				Timeout:        time.Second,
				NoFreelistSync: true,
				FreelistType:   bbolt.FreelistMapType,
			},
		})
		if err != nil {
			return nil, nil, fmt.Errorf("open raft log %s: %w (is another concord using this data dir?)", dir, err)
		}
		st = &stores{logs: store, stable: store, close: store.Close}
	case LogStoreWAL:
		logger.Warn("the raft-wal log store is experimental: raft-wal v0.4.0 can leave a member unable to start after a log suffix is truncated (hashicorp/raft-wal#31); prefer --raft-log-store seglog or bolt in production")
		if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o750); err != nil {
			return nil, nil, fmt.Errorf("raft wal dir: %w", err)
		}
		// raft-wal's Close leaves its metadata DB (and the file lock on it)
		// open; own it to close it.
		meta := &metadb.BoltMetaDB{}
		w, err := wal.Open(filepath.Join(dir, "wal"), wal.WithMetaStore(meta))
		if err != nil {
			return nil, nil, fmt.Errorf("open raft wal %s: %w", dir, err)
		}
		st = &stores{logs: w, stable: w, close: func() error { return errors.Join(w.Close(), meta.Close()) }}
	default:
		return nil, nil, fmt.Errorf("raftnode: unknown log store %q (want one of %v)", kind, LogStores)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, newHCLog(logger, "snapshot"))
	if err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("open snapshot store: %w", err)
	}
	return st, snaps, nil
}

// Open starts a node. If the node has no state and cfg.Bootstrap is set, it
// bootstraps the cluster with that configuration.
func Open(cfg Config, sm StateMachine) (*Node, error) {
	cfg.setDefaults()
	if cfg.ID == "" || cfg.Advertise == "" || cfg.Streams == nil {
		return nil, fmt.Errorf("raftnode: ID, Advertise and Streams are required")
	}
	store, snaps, err := openStores(cfg.Dir, cfg.LogStore, cfg.Logger)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, store: store, snaps: snaps}
	logs, err := raft.NewLogCache(1024, measureLogs(watchLogs(store.logs, cfg.OnLogFailure), cfg.Metrics))
	if err != nil {
		store.Close()
		return nil, err
	}
	n.stream = &streamLayer{s: cfg.Streams, advertise: cfg.Advertise, conns: map[*trackedConn]struct{}{}}
	n.transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  n.stream,
		MaxPool: 4,
		Timeout: 10 * time.Second,
		Logger:  newHCLog(cfg.Logger, "raft-net"),
	})
	// The transport's accept loop runs from here on: every failure below
	// closes it with the stores, or it outlives the failed start, retrying
	// Accept on a closed listener and logging so once a second.
	fail := func(err error) (*Node, error) {
		return nil, errors.Join(err, n.transport.Close(), n.closeStores())
	}
	rc := cfg.raftConfig()
	has, err := raft.HasExistingState(logs, store.stable, snaps)
	if err != nil {
		return fail(err)
	}
	if !has && len(cfg.Bootstrap) > 0 {
		if err := raft.BootstrapCluster(rc, logs, store.stable, snaps, n.transport, configuration(cfg.Bootstrap)); err != nil {
			return fail(fmt.Errorf("bootstrap: %w", err))
		}
		cfg.Logger.Info("bootstrapped new cluster", "members", len(cfg.Bootstrap))
	}
	r, err := raft.NewRaft(rc, &fsmAdapter{sm: sm, metrics: cfg.Metrics}, logs, store.stable, snaps, n.transport)
	if err != nil {
		return fail(fmt.Errorf("start raft: %w", err))
	}
	n.raft = r
	n.obsCh = make(chan raft.Observation, 64)
	n.stopObs = make(chan struct{})
	n.observer = raft.NewObserver(n.obsCh, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r.RegisterObserver(n.observer)
	go n.watchLeaders()
	if cfg.Metrics != nil {
		cfg.Metrics.attach(n)
	}
	return n, nil
}

func (n *Node) watchLeaders() {
	for {
		select {
		case o := <-n.obsCh:
			lo := o.Data.(raft.LeaderObservation)
			n.cfg.Logger.Info("leader changed", "leader", string(lo.LeaderID), "term", n.raft.CurrentTerm())
			// A leader lost ("" until the next is known) is half of one
			// change: counted, a failover counted twice.
			if m := n.cfg.Metrics; m != nil && lo.LeaderID != "" {
				m.leaderChanges.Inc()
			}
		case <-n.stopObs:
			return
		}
	}
}

func configuration(servers []Server) raft.Configuration {
	var c raft.Configuration
	for _, s := range servers {
		suffrage := raft.Voter
		if !s.Voter {
			suffrage = raft.Nonvoter
		}
		c.Servers = append(c.Servers, raft.Server{ID: raft.ServerID(s.ID), Address: raft.ServerAddress(s.Addr), Suffrage: suffrage})
	}
	return c
}

// Propose replicates data as a command and waits until the leader has
// applied it. It returns the entry's index and the state machine's result.
// If ctx ends first the outcome is unknown.
func (n *Node) Propose(ctx context.Context, data []byte) (uint64, any, error) {
	start := time.Now()
	f := n.raft.Apply(data, time.Second)
	err := applyErr(waitFuture(ctx, f))
	reason := ""
	if isCtxErr(ctx, err) {
		reason = "context"
	}
	n.observeProposal(start, err, reason)
	if err != nil {
		return 0, nil, err
	}
	return f.Index(), f.Response(), nil
}

// ProposeWithin is Propose for a proposal the leader may hold back up to
// within, as ProposeDeferred describes; within 0 is Propose.
func (n *Node) ProposeWithin(ctx context.Context, data []byte, within time.Duration) (uint64, any, error) {
	if within <= 0 {
		return n.Propose(ctx, data)
	}
	type outcome struct {
		index uint64
		resp  any
		err   error
	}
	ch := make(chan outcome, 1)
	if !n.ProposeDeferred(data, within, func(index uint64, resp any, err error) { ch <- outcome{index, resp, err} }) {
		return n.Propose(ctx, data)
	}
	select {
	case o := <-ch:
		return o.index, o.resp, o.err
	case <-ctx.Done():
		// An answer that is in already wins, as Propose's does; the
		// proposal's own outcome is observed when it settles.
		select {
		case o := <-ch:
			return o.index, o.resp, o.err
		default:
			return 0, nil, ctx.Err()
		}
	}
}

// ProposeAsync is Propose without a goroutine waiting: it reports whether
// the leader took data at once (false when this node does not run or its
// queue is full: use Propose then). If it did, done is called exactly once
// with the outcome, from Raft's own goroutines, so it must be quick and
// must not block. It is not bounded in time: on a node that shuts down it
// may never be called, and the caller bounds its wait.
func (n *Node) ProposeAsync(data []byte, done func(index uint64, resp any, err error)) bool {
	return n.proposeAsync(data, 0, done)
}

// ProposeDeferred is ProposeAsync for a proposal that nothing waits on
// urgently: the leader may hold it back up to within and write it with the
// next proposal, so that both share one write of every member's log
// (third_party/raft, concord_defer.go). within must be positive.
func (n *Node) ProposeDeferred(data []byte, within time.Duration, done func(index uint64, resp any, err error)) bool {
	return n.proposeAsync(data, within, done)
}

func (n *Node) proposeAsync(data []byte, within time.Duration, done func(index uint64, resp any, err error)) bool {
	start := time.Now()
	settle := func(f raft.ApplyFuture) {
		err := f.Error()
		if err != nil {
			err = applyErr(mapErr(err))
		}
		n.observeProposal(start, err, "")
		if err != nil {
			done(0, nil, err)
			return
		}
		done(f.Index(), f.Response(), nil)
	}
	if within > 0 {
		took := n.raft.ApplyNotifyDeferred(data, within, settle)
		if took && n.cfg.Metrics != nil {
			n.cfg.Metrics.deferred.Inc()
		}
		return took
	}
	return n.raft.ApplyNotify(data, settle)
}

// observeProposal records a proposal started at start: its time, or why
// it failed (reason, or the error's label when empty).
func (n *Node) observeProposal(start time.Time, err error, reason string) {
	m := n.cfg.Metrics
	if m == nil {
		return
	}
	if err == nil {
		m.proposeSeconds.Observe(time.Since(start).Seconds())
		return
	}
	if reason == "" {
		reason = reasonLabel(err)
	}
	m.proposalsFailed.WithLabelValues(reason).Inc()
}

// applyErr is the error of a proposal whose Raft stopped (ErrStopped):
// Raft answers its entries in flight, appended or committed but not yet
// applied, with "shutdown", so the proposal may have been applied (by the
// next leader, say): an unknown outcome, which a request ID makes safe to
// retry, not "nothing applied". A member that stops refuses new proposals
// before they reach Raft.
func applyErr(err error) error {
	if errors.Is(err, ErrStopped) {
		return errs.Wrapf(ErrUnknownOutcome, "the member stopped with the proposal in flight: %v", err)
	}
	return err
}

// waitFuture waits for f and maps its error, or returns ctx's error once
// ctx is done (the outcome then unknown). Futures of concord's raft fork
// wait without a goroutine of their own.
func waitFuture(ctx context.Context, f raft.Future) error {
	var err error
	if w, ok := f.(interface {
		ErrorContext(context.Context) error
	}); ok {
		err = w.ErrorContext(ctx)
	} else {
		done := make(chan error, 1)
		go func() { done <- f.Error() }()
		select {
		case err = <-done:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err == nil || isCtxErr(ctx, err) {
		return err
	}
	return mapErr(err)
}

func isCtxErr(ctx context.Context, err error) bool {
	return ctx.Err() != nil && errors.Is(err, ctx.Err())
}

// VerifyLeader confirms with a quorum that this node is still the leader.
func (n *Node) VerifyLeader(ctx context.Context) error {
	return waitFuture(ctx, n.raft.VerifyLeader())
}

// IsLeader reports whether this node believes it is the leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// State returns the Raft state: Leader, Follower, Candidate or Shutdown.
func (n *Node) State() string { return n.raft.State().String() }

// Leader returns the leader's ID and peer address, empty when unknown.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// LeaderCh delivers true on gaining and false on losing leadership; signals
// may be coalesced, so a receiver re-checks IsLeader.
func (n *Node) LeaderCh() <-chan bool { return n.raft.LeaderCh() }

// Term returns the current term.
func (n *Node) Term() uint64 { return n.raft.CurrentTerm() }

// CommitIndex returns the commit index as this node knows it.
func (n *Node) CommitIndex() uint64 { return n.raft.CommitIndex() }

// LastIndex returns the last log index.
func (n *Node) LastIndex() uint64 { return n.raft.LastIndex() }

// LastContact returns when a follower last heard from the leader.
func (n *Node) LastContact() time.Time { return n.raft.LastContact() }

// LastSnapshotIndex returns the index of the newest snapshot.
func (n *Node) LastSnapshotIndex() uint64 {
	v, _ := strconv.ParseUint(n.raft.Stats()["last_snapshot_index"], 10, 64)
	return v
}

// Configuration returns the current membership.
func (n *Node) Configuration() ([]Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, mapErr(err)
	}
	var out []Server
	for _, s := range f.Configuration().Servers {
		out = append(out, Server{ID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// ConfigurationIndex returns the log index of the configuration in use
// (the latest, committed or not).
func (n *Node) ConfigurationIndex() (uint64, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return 0, mapErr(err)
	}
	return f.Index(), nil
}

// AddNonvoter adds a member that receives the log but does not vote.
func (n *Node) AddNonvoter(ctx context.Context, id, addr string) error {
	return waitFuture(ctx, n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 5*time.Second))
}

// AddVoter adds a voting member, or promotes a non-voter.
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	return waitFuture(ctx, n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 5*time.Second))
}

// RemoveServer removes a member.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	return waitFuture(ctx, n.raft.RemoveServer(raft.ServerID(id), 0, 5*time.Second))
}

// TransferLeadership hands leadership to the member id, or to the most
// up-to-date voter when id is empty.
//
// raft reports a transfer that failed (a TimeoutNow RPC the target did not
// answer, or a target that did not take over within the election timeout)
// with untyped errors, which reached clients as INTERNAL, "a bug": they are
// ErrTransferFailed.
func (n *Node) TransferLeadership(ctx context.Context, id, addr string) error {
	var f raft.Future
	if id == "" {
		f = n.raft.LeadershipTransfer()
	} else {
		f = n.raft.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(addr))
	}
	err := waitFuture(ctx, f)
	if err == nil || isCtxErr(ctx, err) || errs.ReasonOf(err, "") != "" {
		return err
	}
	return errs.Wrapf(ErrTransferFailed, "%v", err)
}

// Snapshot takes a snapshot now and compacts the log.
func (n *Node) Snapshot(ctx context.Context) error {
	err := waitFuture(ctx, n.raft.Snapshot())
	if err != nil && err.Error() == raft.ErrNothingNewToSnapshot.Error() {
		return nil
	}
	return err
}

// Shutdown stops Raft and closes the stores. It is safe to call twice.
func (n *Node) Shutdown() error {
	var err error
	n.closeOnce.Do(func() {
		f := n.raft.Shutdown()
		// Raft waits for its goroutines, and a replication goroutine
		// waits on a peer that went silent (paused, cut off) for the
		// transport's timeout: the connections close first, so that a
		// graceful stop of a cut-off leader does not take 10 s more.
		n.stream.closeConns()
		err = f.Error()
		n.raft.DeregisterObserver(n.observer)
		close(n.stopObs)
		if cerr := n.transport.Close(); err == nil {
			err = cerr
		}
		if cerr := n.closeStores(); err == nil {
			err = cerr
		}
	})
	return err
}

func (n *Node) closeStores() error { return n.store.Close() }

// streamLayer is the transport's network. It keeps the connections it
// dialed and accepted, for closeConns.
type streamLayer struct {
	s         Streams
	advertise string

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

func (l *streamLayer) Accept() (net.Conn, error) {
	c, err := l.s.Accept()
	if err != nil {
		return nil, err
	}
	return l.track(c), nil
}

func (l *streamLayer) Close() error   { return l.s.Close() }
func (l *streamLayer) Addr() net.Addr { return advertiseAddr(l.advertise) }
func (l *streamLayer) Dial(a raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := l.s.DialTimeout(string(a), timeout)
	if err != nil {
		return nil, err
	}
	return l.track(c), nil
}

// track keeps c until it closes; after closeConns it closes c at once.
func (l *streamLayer) track(c net.Conn) net.Conn {
	t := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		_ = c.Close()
		return t
	}
	l.conns[t] = struct{}{}
	l.mu.Unlock()
	return t
}

// closeConns closes every connection of the transport, and those it
// makes from now on.
func (l *streamLayer) closeConns() {
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	for c := range conns {
		_ = c.Conn.Close()
	}
}

type trackedConn struct {
	net.Conn
	l *streamLayer
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }

// fsmAdapter turns a StateMachine into a raft.BatchingFSM.
type fsmAdapter struct {
	sm      StateMachine
	metrics *Metrics
}

func (a *fsmAdapter) ApplyBatch(logs []*raft.Log) []any {
	entries := make([]Entry, len(logs))
	for i, l := range logs {
		t := EntryOther
		if l.Type == raft.LogCommand {
			t = EntryCommand
		}
		entries[i] = Entry{Index: l.Index, Term: l.Term, Type: t, Data: l.Data}
	}
	return a.sm.ApplyBatch(entries)
}

func (a *fsmAdapter) Apply(l *raft.Log) any { return a.ApplyBatch([]*raft.Log{l})[0] }

func (a *fsmAdapter) Snapshot() (raft.FSMSnapshot, error) {
	s, err := a.sm.Snapshot()
	if err != nil {
		return nil, err
	}
	return &snapshotAdapter{s: s}, nil
}

func (a *fsmAdapter) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return a.sm.Restore(rc)
}

type snapshotAdapter struct{ s Snapshot }

func (s *snapshotAdapter) Persist(sink raft.SnapshotSink) error {
	if _, err := s.s.Persist(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *snapshotAdapter) Release() {}
