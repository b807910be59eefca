package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/daemon"
	"github.com/concord-dev/concord/internal/fsm"
	"github.com/concord-dev/concord/internal/server"
)

// testConfigure, set by tests only, adjusts `concord server`'s
// configuration past the flags (config.Server.MaxRulesVersion has none).
var testConfigure func(*config.Server)

func newServerCmd(g *globals) *cobra.Command {
	var (
		cfg            config.Server
		initialCluster string
		logLevel       string
		logFormat      string
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a concord member (a single embedded node by default)",
		Long: `Run a concord member. With no flags it starts a single-node cluster with its
data in ./concord-data, the client API on 127.0.0.1:7070 and Raft on
127.0.0.1:7080.

A 3-member cluster, one command per member:

  concord server --name n1 --data-dir d1 --listen-client 127.0.0.1:7071 --listen-peer 127.0.0.1:7081 \
    --initial-cluster n1=127.0.0.1:7081,n2=127.0.0.1:7082,n3=127.0.0.1:7083

Add a member to a running cluster: run "concord cluster add n4 127.0.0.1:7084",
then start n4 with --join <client address of any member>.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			peers, err := config.ParseInitialCluster(initialCluster)
			if err != nil {
				return err
			}
			cfg.InitialCluster = peers
			if !cmd.Flags().Changed("auth-token") {
				cfg.AuthToken = os.Getenv("CONCORD_AUTH_TOKEN")
			}
			logger, err := newLogger(g.stderr, logLevel, logFormat)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if testConfigure != nil {
				testConfigure(&cfg)
			}
			d, err := daemon.Start(ctx, cfg, daemon.Options{Logger: logger, Version: Version, Banner: g.stdout})
			if err != nil {
				return err
			}
			stopMember := func() error { return stopWithin(d.Stop, stopBudget(cfg.ShutdownTimeout)) }
			select {
			case <-ctx.Done():
				logger.Info("shutting down", "reason", "signal")
			case err := <-d.Served():
				if err != nil {
					// A member without its client API is of no use, and a
					// zero exit would tell a supervisor (Restart=on-failure)
					// and scripts that it stopped cleanly.
					logger.Error("client API stopped; stopping", "err", err)
					stop()
					return errors.Join(fmt.Errorf("client API failed: %w", err), stopMember())
				}
			case err := <-d.Failed():
				if errors.Is(err, server.ErrRemoved) {
					// The stop the removal asked for: exit 0, so that a
					// supervisor (Restart=on-failure) leaves it stopped.
					logger.Warn("removed from the cluster; stopping", "err", err)
					stop()
					return stopMember()
				}
				if errors.Is(err, fsm.ErrRulesTooNew) {
					// A restart stops the same way: the binary must be
					// upgraded. Exit non-zero.
					logger.Error("the cluster applies rules this build does not know; stopping: upgrade this member's binary", "err", err)
					stop()
					return errors.Join(fmt.Errorf("member failed, upgrade its binary: %w", err), stopMember())
				}
				if errors.Is(err, server.ErrSeedMismatch) {
					// A restart fails the same way: the data dir must be
					// restored again. Exit non-zero all the same.
					logger.Error("seeded unlike another member; stopping", "err", err)
					stop()
					return errors.Join(fmt.Errorf("member failed: %w", err), stopMember())
				}
				// Fail-stop: exit non-zero so that a supervisor restarts
				// the member, which reads its log from the disk again.
				logger.Error("member failed; stopping", "err", err)
				stop()
				return errors.Join(fmt.Errorf("member failed, restart it: %w", err), stopMember())
			}
			stop()
			return stopMember()
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Name, "name", config.DefaultName, "this member's name, unique in the cluster")
	f.StringVar(&cfg.DataDir, "data-dir", config.DefaultDataDir, "directory of the Raft log, snapshots and member identity")
	f.StringVar(&cfg.ListenClient, "listen-client", config.DefaultClientAddr, "address of the client API (gRPC, gRPC-Web, HTTP/JSON, /metrics)")
	f.StringVar(&cfg.AdvertiseClient, "advertise-client", "", "client address other members and clients reach (default: --listen-client)")
	f.StringVar(&cfg.ListenPeer, "listen-peer", config.DefaultPeerAddr, "address of Raft and member-to-member traffic; outgoing peer connections use its IP")
	f.StringVar(&cfg.AdvertisePeer, "advertise-peer", "", "peer address other members dial (default: --listen-peer)")
	f.StringVar(&initialCluster, "initial-cluster", "", "members of a new cluster: name=peer-address,... (default: this member alone)")
	f.StringSliceVar(&cfg.Join, "join", nil, "client addresses of an existing cluster this member was added to")
	f.IntVar(&cfg.Limits.MaxKeyBytes, "max-key-bytes", config.DefaultMaxKeyBytes, "largest key accepted")
	f.IntVar(&cfg.Limits.MaxValueBytes, "max-value-bytes", config.DefaultMaxValue, "largest value accepted")
	f.IntVar(&cfg.Limits.MaxTxnOps, "max-txn-ops", config.DefaultMaxTxnOps, "most compares, and most operations per branch, in a transaction")
	f.IntVar(&cfg.Limits.MaxRequestBytes, "max-request-bytes", config.DefaultMaxRequestBytes, "largest request accepted")
	f.IntVar(&cfg.Limits.MaxRangeKeys, "max-range-keys", config.DefaultMaxRangeKeys, "most keys in one range response (more are paged)")
	f.Int64Var(&cfg.Limits.QuotaBytes, "quota-bytes", config.DefaultQuotaBytes, "bound on the bytes of keys and values held (the state lives in memory)")
	f.IntVar(&cfg.Limits.MaxKeys, "max-keys", 0, "bound on the number of keys (0: only --quota-bytes)")
	f.IntVar(&cfg.Limits.MaxSessions, "max-sessions", config.DefaultMaxSessions, "bound on live sessions")
	f.IntVar(&cfg.Limits.MaxLocks, "max-locks", config.DefaultMaxLocks, "bound on lock objects, grants and queued waiters")
	f.IntVar(&cfg.Limits.MaxIDObjects, "max-id-objects", config.DefaultMaxIDObjects, "bound on ID worker pools, segment tags and sequences")
	f.IntVar(&cfg.Limits.MaxWatches, "max-watches", config.DefaultMaxWatches, "bound on the watch streams this member serves at once")
	f.Int64Var(&cfg.Limits.MaxSegmentStep, "max-segment-step", config.DefaultMaxStep, "largest segment one allocation hands out")
	f.Int64Var(&cfg.Limits.MaxIDsPerCall, "max-ids-per-call", config.DefaultMaxIDsPerCall, "most IDs one call returns")
	f.DurationVar(&cfg.Limits.MinSessionTTL, "min-session-ttl", config.DefaultMinTTL, "shortest session TTL accepted")
	f.DurationVar(&cfg.Limits.MaxSessionTTL, "max-session-ttl", config.DefaultMaxTTL, "longest session TTL accepted")
	f.DurationVar(&cfg.Raft.HeartbeatTimeout, "heartbeat-timeout", time.Second, "Raft heartbeat timeout")
	f.DurationVar(&cfg.Raft.ElectionTimeout, "election-timeout", time.Second, "Raft election timeout")
	f.Uint64Var(&cfg.Raft.SnapshotThreshold, "snapshot-threshold", 16384, "log entries between snapshots")
	f.DurationVar(&cfg.Raft.SnapshotInterval, "snapshot-interval", 20*time.Second, "how often the snapshot threshold is checked")
	f.Uint64Var(&cfg.Raft.TrailingLogs, "trailing-logs", 10240, "log entries kept after a snapshot for slow followers")
	f.StringVar(&cfg.Raft.LogStore, "raft-log-store", "", "Raft log storage: seglog (concord's segmented log, one fsync per append), bolt (raft-boltdb, two fsyncs per append) or wal (raft-wal; EXPERIMENTAL: a known upstream bug can leave a member unable to start, see docs/architecture.md); default: what the data dir holds, seglog for a new one")
	f.IntVar(&cfg.HistoryEvents, "watch-history", 100_000, "events kept for watches that resume from an older revision")
	// Not os.Getenv as the default: --help prints defaults.
	f.StringVar(&cfg.AuthToken, "auth-token", "", "require this bearer token from clients (env CONCORD_AUTH_TOKEN)")
	f.StringVar(&cfg.TLSCertFile, "tls-cert", "", "serve the client API over TLS with this certificate")
	f.StringVar(&cfg.TLSKeyFile, "tls-key", "", "key of --tls-cert")
	f.StringVar(&cfg.JoinCACertFile, "join-cacert", "", "PEM bundle of the CAs that signed the cluster's client certificates, to verify --join endpoints (default: the system's roots; with it, host:port endpoints are asked over TLS)")
	f.IntVar(&cfg.MaxConcurrentStreams, "max-concurrent-streams", config.DefaultMaxConcurrentStreams, fmt.Sprintf("HTTP/2 streams one client connection may have open at once (watches, lock waits, keep-alives); 1 to %d", config.MaxMaxConcurrentStreams))
	f.DurationVar(&cfg.HTTP2PingInterval, "http2-ping-interval", config.DefaultHTTP2PingInterval, fmt.Sprintf("ping a client connection (HTTP/2 PING) on which nothing arrived for this long; at least %s", config.MinHTTP2PingInterval))
	f.DurationVar(&cfg.HTTP2PingTimeout, "http2-ping-timeout", config.DefaultHTTP2PingTimeout, fmt.Sprintf("close a pinged client connection that does not answer within this long; at least %s", config.MinHTTP2PingTimeout))
	f.BoolVar(&cfg.DisableHTTP2Pings, "disable-http2-pings", false, "ping no client connection: a quiet one stays open until the client or the network closes it")
	f.BoolVar(&cfg.DisableFramedBatch, "disable-framed-batch", false, "refuse the SDK's framed batch protocol (an HTTP/1.1 Upgrade on the client port); SDK clients then batch over gRPC streams")
	f.DurationVar(&cfg.LockQueueDefer, "lock-queue-defer", config.DefaultLockQueueDefer, fmt.Sprintf("how long the leader may hold back the write of a lock acquire that will queue behind others, to write it with the next write (the release that hands the lock on); delays only its QUEUED answer; at most %s", config.MaxLockQueueDefer))
	f.BoolVar(&cfg.DisableLockQueueDefer, "disable-lock-queue-defer", false, "write every lock acquire at once, even one that will queue")
	f.DurationVar(&cfg.LockHoldCheckpoint, "lock-hold-checkpoint", config.DefaultLockHoldCheckpoint, fmt.Sprintf("how often the leader records how much of each lock grant's hold time it has counted, so that a leader change lengthens a hold by about this, not a whole hold time; at least %s", config.MinLockHoldCheckpoint))
	f.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", config.DefaultShutdownTimeout, "bound on a graceful shutdown (the process exits with code 4 if the stop is still running 5 s past it)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "auto", "json, text, or auto (text on a terminal, JSON otherwise)")
	f.DurationVar(&cfg.ClockOffset, "fault-clock-offset", 0, "fault injection: run the lease clock this far ahead")
	f.Float64Var(&cfg.ClockRate, "fault-clock-rate", 1, "fault injection: run the lease clock at this rate")
	f.BoolVar(&cfg.UnsafeStaleLinearizable, "fault-stale-linearizable-reads", false, "fault injection: serve linearizable reads from local state (breaks linearizability on purpose)")
	_ = f.MarkHidden("fault-stale-linearizable-reads")
	_ = f.MarkHidden("fault-clock-offset")
	_ = f.MarkHidden("fault-clock-rate")
	f.SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		return pflag.NormalizedName(strings.ReplaceAll(name, "_", "-"))
	})
	return cmd
}

func newLogger(w interface{ Write([]byte) (int, error) }, level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "auto":
		if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return slog.New(slog.NewTextHandler(w, opts)), nil
		}
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want json, text or auto", format)
	}
}

// stopGrace is how long a graceful stop may run past --shutdown-timeout
// before the process gives up on it. The daemon bounds the handover and
// the drain by --shutdown-timeout; what follows (Raft's own stop, closing
// the stores) waits on Raft's goroutines, which a bug could keep forever.
// A member that does not exit cannot be restarted by its supervisor, so
// past the grace it exits as a crash would.
const stopGrace = 5 * time.Second

// ExitStopHung is the exit code of `concord server` when its graceful stop
// did not end within --shutdown-timeout plus stopGrace: the process exited
// without finishing the stop, which is as safe as kill -9 (every
// acknowledged entry is already synced) but is a bug worth reporting.
const ExitStopHung = 4

// stopBudget is how long `concord server` lets its graceful stop run:
// --shutdown-timeout (its default when unset) plus stopGrace.
func stopBudget(shutdownTimeout time.Duration) time.Duration {
	if shutdownTimeout <= 0 {
		shutdownTimeout = config.DefaultShutdownTimeout
	}
	return shutdownTimeout + stopGrace
}

// errStopHung says a graceful stop did not end in time.
var errStopHung = errors.New("graceful stop did not finish")

// stopWithin runs stop and returns its error, or, if it has not returned
// within bound, an *ExitError with ExitStopHung, leaving it running: the
// process is about to exit.
func stopWithin(stop func(context.Context) error, bound time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- stop(context.Background()) }()
	timer := time.NewTimer(bound)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		return &ExitError{Code: ExitStopHung, Err: fmt.Errorf("%w within %s (--shutdown-timeout plus %s); exiting as kill -9 would (nothing acknowledged is lost); please report it with this member's log", errStopHung, bound, stopGrace)}
	}
}
