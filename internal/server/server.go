package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/vtcodec"
	"github.com/concord-dev/concord/internal/clock"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/fsm"
	"github.com/concord-dev/concord/internal/gen/internalv1/internalv1connect"
	"github.com/concord-dev/concord/internal/lock"
	"github.com/concord-dev/concord/internal/peer"
	"github.com/concord-dev/concord/internal/raftnode"
	"github.com/concord-dev/concord/internal/session"
)

// Options are a Server's dependencies.
type Options struct {
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the member's metrics; nil uses a private registry.
	Registerer prometheus.Registerer
	// Clock measures session TTLs; defaults to the real clock.
	Clock clock.Clock
	// Version is reported by Status.
	Version string
	// OnFatal, if set, is called when the member can no longer serve: its
	// Raft log failed for good and it must be restarted, it was removed
	// (ErrRemoved, ErrAddedBack), it was restored unlike another voter
	// (ErrSeedMismatch) and must be restored again, or the cluster applies
	// a rules version its build does not (fsm.ErrRulesTooNew) and its
	// binary must be upgraded.
	OnFatal func(error)
}

// Server is one running member.
type Server struct {
	cfg     config.Server
	log     *slog.Logger
	clock   clock.Clock
	version string
	onFatal func(error)

	id identity
	// storedClusterID is id.ClusterID, for the peer mux, which serves
	// before id is resolved.
	storedClusterID atomic.Pointer[string]
	fsm             *fsm.FSM
	node            *raftnode.Node
	mux             *peer.Mux
	peers           *peer.Clients
	peerSrv         *http.Server
	tracker         *session.Tracker
	holds           *lock.HoldTracker
	locks           *lockHub
	idsrv           *idServer
	reads           *batcher
	metrics         *metrics

	raftMetrics *raftnode.Metrics

	leader leaderState
	// membership serialises membership changes on the leader (add,
	// remove, promotion): each reads the configuration, checks it and
	// changes it, and two at once both passed the check.
	membership sync.Mutex

	dirLock  *dataDirLock
	stopping atomic.Bool
	// watches counts the watch streams being served (--max-watches).
	watches  atomic.Int64
	stopCh   chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
	// raftOpen is set once Start has set node: the peer port is served
	// before, and a handler that reads node checks it first.
	raftOpen atomic.Bool

	// beforeGrantJudged, set only by tests (export_test.go), runs when an
	// acquire answered GRANTED is about to be checked against the applied
	// state (judgeGrant, on the member that answers the client, and on the
	// leader for a follower's forwarded acquire), so that a test can apply
	// the grant's end first.
	beforeGrantJudged atomic.Pointer[func(*concordv1.AcquireRequest)]
}

// New checks the configuration and prepares a member; Start runs it.
func New(cfg config.Server, opts Options) (*Server, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
		if cfg.ClockOffset != 0 || cfg.ClockRate != 1 {
			opts.Clock = clock.NewSkewed(cfg.ClockOffset, cfg.ClockRate)
		}
	}
	s := &Server{
		cfg:     cfg,
		log:     opts.Logger.With("member", cfg.Name),
		clock:   opts.Clock,
		version: opts.Version,
		onFatal: opts.OnFatal,
		tracker: session.NewTracker(opts.Clock),
		stopCh:  make(chan struct{}),
		metrics: newMetrics(opts.Registerer),
	}
	s.fsm = fsm.New(fsm.Config{
		HistoryEvents: cfg.HistoryEvents,
		HistoryBytes:  cfg.HistoryBytes,
		Logger:        s.log,
		Metrics:       fsm.NewMetrics(opts.Registerer),
		// A test runs a member as a build of an older release.
		MaxRulesVersion: cfg.MaxRulesVersion,
		// The state machine logged it; the member must stop.
		OnHalt: func(err error) {
			if s.onFatal != nil {
				s.onFatal(err)
			}
		},
	})
	s.fsm.SetSessionObserver(s.tracker)
	s.holds = lock.NewHoldTracker(opts.Clock)
	if every := cfg.LockHoldCheckpoint; every != 0 {
		s.holds.SetCheckpointEvery(every)
	} else {
		s.holds.SetCheckpointEvery(config.DefaultLockHoldCheckpoint)
	}
	s.locks = newLockHub(s.holds, newLockMetrics(opts.Registerer))
	s.fsm.SetLockObserver(s.locks)
	opts.Registerer.MustRegister(lockCollector{s: s})
	s.idsrv = newIDServer(s)
	opts.Registerer.MustRegister(idCollector{s: s})
	s.reads = newBatcher(s.fetchReadIndex)
	s.reads.onRound = func(n int) { s.metrics.readBatch.Observe(float64(n)) }
	s.raftMetrics = raftnode.NewMetrics(opts.Registerer)
	return s, nil
}

// Start opens the data directory, the peer port and Raft, and starts the
// member's background work. The client API is served by the caller.
func (s *Server) Start(ctx context.Context) error {
	lock, err := lockDataDir(s.cfg.DataDir)
	if err != nil {
		return err
	}
	s.dirLock = lock
	mux, err := peer.Listen(s.cfg.ListenPeer, s.log)
	if err != nil {
		lock.release()
		return err
	}
	mux.SetClusterID(s.clusterID, s.nameClusterOnRPC, func(stream peer.Stream) {
		if stream == peer.StreamRPC {
			s.metrics.foreignRPC.Inc()
		} else {
			s.metrics.foreignStreams.Inc()
		}
	})
	s.mux = mux
	s.peers = peer.NewClients(mux)
	id, boot, fresh, err := s.resolveIdentity(ctx)
	if err != nil {
		mux.Close()
		lock.release()
		return err
	}
	s.id = id
	s.storedClusterID.Store(&id.ClusterID)
	s.log = s.log.With("id", id.ID)

	path, handler := internalv1connect.NewPeerHandler(&peerService{s: s}, connect.WithCompressMinBytes(64<<10), vtcodec.Option())
	hm := http.NewServeMux()
	hm.Handle(path, handler)
	s.peerSrv = peer.NewServer(hm)
	go func() {
		if err := s.peerSrv.Serve(mux.RPC()); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("peer rpc server stopped", "err", err)
		}
	}()

	node, err := raftnode.Open(raftnode.Config{
		ID:                id.ID,
		Dir:               filepath.Join(s.cfg.DataDir, "raft"),
		Advertise:         s.cfg.AdvertisePeer,
		Streams:           mux.Raft(),
		Bootstrap:         boot,
		HeartbeatTimeout:  s.cfg.Raft.HeartbeatTimeout,
		ElectionTimeout:   s.cfg.Raft.ElectionTimeout,
		SnapshotThreshold: s.cfg.Raft.SnapshotThreshold,
		SnapshotInterval:  s.cfg.Raft.SnapshotInterval,
		TrailingLogs:      s.cfg.Raft.TrailingLogs,
		LogStore:          s.cfg.Raft.LogStore,
		Logger:            s.log,
		Metrics:           s.raftMetrics,
		OnLogFailure: func(err error) {
			s.log.Error("the Raft log failed: this member takes no part in commits until it restarts", "err", err)
			if s.onFatal != nil {
				s.onFatal(err)
			}
		},
	}, s.fsm)
	if err != nil && s.fsm.Halted() != nil {
		// Raft says only that no snapshot could be restored; the state
		// machine says why.
		err = fmt.Errorf("%w (%v)", s.fsm.Halted(), err)
	}
	if err == nil && fresh {
		if err = saveIdentity(s.cfg.DataDir, id); err != nil {
			err = errors.Join(fmt.Errorf("saving the member's identity: %w", err), node.Shutdown())
		}
	}
	if err != nil {
		_ = s.peerSrv.Close()
		mux.Close()
		lock.release()
		return err
	}
	s.node = node
	s.raftOpen.Store(true)
	s.goLoop(s.watchLeadership)
	s.goLoop(s.publishSelf)
	s.goLoop(s.checkSeed)
	s.goLoop(s.checkRemoved)
	s.goLoop(s.keepClusterID)
	return nil
}

func (s *Server) goLoop(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// Name returns the member's name.
func (s *Server) Name() string { return s.cfg.Name }

// ID returns the member's Raft ID.
func (s *Server) ID() string { return s.id.ID }

// Config returns the member's effective configuration.
func (s *Server) Config() config.Server { return s.cfg }

// FSM returns the state machine, for in-process tests and diagnostics.
func (s *Server) FSM() *fsm.FSM { return s.fsm }

// Ready reports whether the member can serve linearizable requests: it
// knows a leader and, if it is the leader, has committed an entry of its
// term.
func (s *Server) Ready() bool {
	if s.stopping.Load() || s.node == nil {
		return false
	}
	id, _ := s.node.Leader()
	if id == "" {
		return false
	}
	if id == s.id.ID {
		return s.leader.readyTerm() == s.node.Term()
	}
	return true
}

// Stopping reports whether shutdown has begun.
func (s *Server) Stopping() bool { return s.stopping.Load() }

// StreamEnd is the error of a stream whose context ended: SHUTTING_DOWN
// when the member's shutdown ended it, so that the client resumes on
// another member rather than take a clean end for the stream's last word;
// otherwise the context's own error. A client whose deadline passed
// (gRPC's grpc-timeout, Connect's timeout header) must not read a clean
// end: a lock wait ended by its deadline answered OK, and a grpc-go client
// whose own timer fired a moment later read io.EOF, the sign of a stream
// that ended normally, instead of DeadlineExceeded.
func (s *Server) StreamEnd(ctx context.Context) error {
	if s.stopping.Load() {
		return raftnode.ErrStopped
	}
	return ctx.Err()
}

// BeginShutdown makes the member refuse new requests and, if it leads,
// hands leadership to another voter so the cluster does not wait for an
// election. The handover takes at most half of the time ctx leaves.
func (s *Server) BeginShutdown(ctx context.Context) {
	if s.stopping.Swap(true) {
		return
	}
	if s.node == nil || !s.node.IsLeader() {
		return
	}
	servers, err := s.node.Configuration()
	if err != nil {
		return
	}
	voters := 0
	for _, sv := range servers {
		if sv.Voter {
			voters++
		}
	}
	if voters < 2 {
		return
	}
	// The handover takes at most half of what is left of the stop's
	// budget (--shutdown-timeout), and 5 s: one that no voter answers
	// (Raft gives up after its election timeout) must leave the drain
	// that follows its share.
	limit := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		limit = min(limit, time.Until(d)/2)
	}
	tctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if err := s.node.TransferLeadership(tctx, "", ""); err != nil {
		s.log.Warn("leadership transfer before shutdown failed", "err", err)
		return
	}
	s.log.Info("handed leadership over before shutdown")
}

// Stop stops the member's background work, Raft and the peer port.
func (s *Server) Stop(ctx context.Context) error {
	var err error
	s.stopOnce.Do(func() {
		s.stopping.Store(true)
		s.idsrv.close()
		close(s.stopCh)
		s.wg.Wait()
		if s.node != nil {
			err = s.node.Shutdown()
		}
		if s.peerSrv != nil {
			_ = s.peerSrv.Close()
		}
		if s.peers != nil {
			s.peers.Close()
		}
		if s.mux != nil {
			_ = s.mux.Close()
		}
		s.dirLock.release()
	})
	return err
}

// header builds a response header at revision rev.
func (s *Server) header(rev uint64) *concordv1.ResponseHeader {
	return &concordv1.ResponseHeader{Revision: rev, Member: s.cfg.Name, RaftTerm: s.node.Term()}
}

// newClientID returns a random client ID.
func newClientID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// IsLeader reports whether this member leads.
func (s *Server) IsLeader() bool { return s.node != nil && s.node.IsLeader() }
