// Package config holds a member's configuration, its defaults and its
// validation. Zero values mean the documented defaults.
package config

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode"
)

// Defaults of a single embedded node.
const (
	DefaultName          = "default"
	DefaultDataDir       = "concord-data"
	DefaultClientAddr    = "127.0.0.1:7070"
	DefaultPeerAddr      = "127.0.0.1:7080"
	DefaultMaxKeyBytes   = 4 << 10
	DefaultMaxValue      = 1 << 20
	DefaultMaxTxnOps     = 128
	DefaultMaxRangeKeys  = 10_000
	DefaultRangeBytes    = 8 << 20
	DefaultQuotaBytes    = 2 << 30
	DefaultMaxSessions   = 1_000_000
	DefaultMaxLocks      = 1_000_000
	DefaultMaxIDObjects  = 100_000
	DefaultMaxWatches    = 10_000
	DefaultMaxStep       = 1_000_000_000
	DefaultMaxIDsPerCall = 10_000
	DefaultMinTTL        = time.Second
	DefaultMaxTTL        = 24 * time.Hour
	// DefaultMaxRequestBytes bounds one request on the wire.
	DefaultMaxRequestBytes = 3 << 20
	// DefaultMaxConcurrentStreams is the HTTP/2 streams one client
	// connection may have open at once: as many as --max-watches' default.
	DefaultMaxConcurrentStreams = 10_000
	// MaxMaxConcurrentStreams bounds --max-concurrent-streams.
	MaxMaxConcurrentStreams = 1_000_000
	// DefaultHTTP2PingInterval and DefaultHTTP2PingTimeout are the
	// client port's HTTP/2 pings: a connection on which no frame arrived
	// for the interval gets a PING, and is closed if the client does not
	// answer it within the timeout.
	DefaultHTTP2PingInterval = 30 * time.Second
	DefaultHTTP2PingTimeout  = 15 * time.Second
	// MinHTTP2PingInterval and MinHTTP2PingTimeout bound
	// --http2-ping-interval and --http2-ping-timeout from below: grpc-go's
	// server pings no more often than once a second either, and a timeout
	// shorter than a round trip closes every connection it pings.
	MinHTTP2PingInterval = time.Second
	MinHTTP2PingTimeout  = time.Second
	// DefaultLockHoldCheckpoint is how often the leader checkpoints what it
	// has counted of each lock grant's hold time (--lock-hold-checkpoint),
	// and MinLockHoldCheckpoint the shortest interval accepted: each
	// checkpoint is a log entry per 256 grants.
	DefaultLockHoldCheckpoint = 5 * time.Second
	MinLockHoldCheckpoint     = 50 * time.Millisecond

	// DefaultLockQueueDefer is how long the leader may hold back the write
	// of an acquire that will queue (--lock-queue-defer), and
	// MaxLockQueueDefer the longest accepted: the wait delays the acquire's
	// QUEUED answer when nothing else is written.
	DefaultLockQueueDefer = 2 * time.Millisecond
	MaxLockQueueDefer     = 100 * time.Millisecond
	// DefaultShutdownTimeout bounds a graceful stop's handover and drain.
	DefaultShutdownTimeout = 10 * time.Second
)

// Peer is one member of the initial cluster.
type Peer struct {
	Name string
	Addr string
}

// Limits bound what a request may ask and what the state may hold. They are
// checked before a command is proposed.
type Limits struct {
	MaxKeyBytes     int
	MaxValueBytes   int
	MaxTxnOps       int
	MaxRangeKeys    int
	MaxRangeBytes   int
	MaxRequestBytes int
	// QuotaBytes bounds the accounted size of keys and values; writes that
	// would grow the state past it fail with QUOTA_EXCEEDED.
	QuotaBytes int64
	// MaxKeys bounds the number of keys; 0 means no bound beyond the quota.
	MaxKeys     int
	MaxSessions int
	// MaxLocks bounds lock objects, grants and queued waiters.
	MaxLocks int
	// MaxIDObjects bounds worker pools, segment tags and sequences.
	MaxIDObjects int
	// MaxWatches bounds the watch streams one member serves at once.
	MaxWatches int
	// MaxSegmentStep bounds one segment allocation.
	MaxSegmentStep int64
	// MaxIDsPerCall bounds the IDs one NextIDs, NextSnowflakes or
	// NextSequence call returns.
	MaxIDsPerCall int64
	MinSessionTTL time.Duration
	MaxSessionTTL time.Duration
}

// Raft tunes the consensus engine.
type Raft struct {
	// LogStore is "seglog", "bolt" or "wal"; empty: what the data dir holds, seglog for a new one.
	LogStore          string
	HeartbeatTimeout  time.Duration
	ElectionTimeout   time.Duration
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
}

// Server is a member's configuration.
type Server struct {
	Name            string
	DataDir         string
	ListenClient    string
	AdvertiseClient string
	ListenPeer      string
	AdvertisePeer   string
	// InitialCluster lists the members of a new cluster; empty means a
	// single member made of this one.
	InitialCluster []Peer
	// Join lists client endpoints of an existing cluster this member was
	// added to with `concord cluster add`.
	Join []string

	Limits Limits
	Raft   Raft

	// HistoryEvents and HistoryBytes bound the watch history.
	HistoryEvents int
	HistoryBytes  int64

	// AuthToken, when set, must be presented as a bearer token on every
	// client request.
	AuthToken string
	// TLSCertFile and TLSKeyFile serve the client API over TLS.
	TLSCertFile string
	TLSKeyFile  string
	// JoinCACertFile is a PEM bundle of CAs that verifies the client API
	// certificates of the cluster at the Join endpoints (default: the
	// system's roots). With it, host:port Join endpoints are asked over
	// TLS.
	JoinCACertFile string
	// DisableFramedBatch refuses the framed batch protocol (api/batchwire)
	// on the client port; SDK clients then keep their batch streams on
	// Connect (gRPC over HTTP/2).
	DisableFramedBatch bool
	// MaxConcurrentStreams bounds the HTTP/2 streams one client
	// connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS);
	// default DefaultMaxConcurrentStreams, at most MaxMaxConcurrentStreams.
	MaxConcurrentStreams int
	// HTTP2PingInterval and HTTP2PingTimeout are the client port's HTTP/2
	// pings: a connection on which no frame arrived for HTTP2PingInterval
	// gets a PING, and is closed if the client does not answer it within
	// HTTP2PingTimeout. Defaults DefaultHTTP2PingInterval and
	// DefaultHTTP2PingTimeout; at least MinHTTP2PingInterval and
	// MinHTTP2PingTimeout.
	HTTP2PingInterval time.Duration
	HTTP2PingTimeout  time.Duration
	// DisableHTTP2Pings sends no pings: a quiet connection is kept until
	// the client or the network closes it. HTTP2PingInterval and
	// HTTP2PingTimeout are then unused.
	DisableHTTP2Pings bool

	// LockHoldCheckpoint is how often the leader records, in the log, how
	// much it has counted of each grant's hold time that has more than
	// that left, so that a new leader counts only the rest: a leader
	// change then lengthens a hold by about this much (and the time
	// without a leader), not by a whole hold time. Default
	// DefaultLockHoldCheckpoint, at least MinLockHoldCheckpoint.
	LockHoldCheckpoint time.Duration

	// LockQueueDefer is how long the leader may hold back the write of an
	// acquire that will queue behind other waiters or holders, so that it
	// shares one write of every member's log with the next write (the
	// release that hands the lock on, usually) instead of taking a write
	// of its own on the same disks. A queued acquire is on no one's
	// critical path: this delays its QUEUED answer, never a grant.
	// Default DefaultLockQueueDefer, at most MaxLockQueueDefer;
	// DisableLockQueueDefer writes every acquire at once.
	LockQueueDefer        time.Duration
	DisableLockQueueDefer bool

	// ShutdownTimeout bounds a graceful shutdown; default 10s.
	ShutdownTimeout time.Duration

	// ClockOffset and ClockRate skew this member's lease clock; for fault
	// injection only.
	ClockOffset time.Duration
	ClockRate   float64

	// MaxRulesVersion, for tests only (no flag sets it), makes the member
	// report and apply rules versions up to this one only, as a build of
	// an older release would; 0 means the build's fsm.MaxRulesVersion.
	MaxRulesVersion uint32

	// UnsafeStaleLinearizable serves linearizable reads from local state
	// without a read barrier. It breaks linearizability on purpose, so the
	// robustness checker can show that it catches such a bug. Never use it.
	UnsafeStaleLinearizable bool
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// SetDefaults fills zero fields with their defaults.
func (c *Server) SetDefaults() {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.ListenClient == "" {
		c.ListenClient = DefaultClientAddr
	}
	if c.ListenPeer == "" {
		c.ListenPeer = DefaultPeerAddr
	}
	if c.AdvertiseClient == "" {
		c.AdvertiseClient = c.ListenClient
	}
	if c.AdvertisePeer == "" {
		c.AdvertisePeer = c.ListenPeer
	}
	if len(c.InitialCluster) == 0 && len(c.Join) == 0 {
		c.InitialCluster = []Peer{{Name: c.Name, Addr: c.AdvertisePeer}}
	}
	l := &c.Limits
	setInt(&l.MaxKeyBytes, DefaultMaxKeyBytes)
	setInt(&l.MaxValueBytes, DefaultMaxValue)
	setInt(&l.MaxTxnOps, DefaultMaxTxnOps)
	setInt(&l.MaxRangeKeys, DefaultMaxRangeKeys)
	setInt(&l.MaxRangeBytes, DefaultRangeBytes)
	setInt(&l.MaxRequestBytes, DefaultMaxRequestBytes)
	setInt(&l.MaxSessions, DefaultMaxSessions)
	setInt(&l.MaxLocks, DefaultMaxLocks)
	setInt(&l.MaxIDObjects, DefaultMaxIDObjects)
	setInt(&l.MaxWatches, DefaultMaxWatches)
	if l.MaxSegmentStep == 0 {
		l.MaxSegmentStep = DefaultMaxStep
	}
	if l.MaxIDsPerCall == 0 {
		l.MaxIDsPerCall = DefaultMaxIDsPerCall
	}
	if l.QuotaBytes == 0 {
		l.QuotaBytes = DefaultQuotaBytes
	}
	if l.MinSessionTTL == 0 {
		l.MinSessionTTL = DefaultMinTTL
	}
	if l.MaxSessionTTL == 0 {
		l.MaxSessionTTL = DefaultMaxTTL
	}
	setInt(&c.MaxConcurrentStreams, DefaultMaxConcurrentStreams)
	if c.HTTP2PingInterval == 0 {
		c.HTTP2PingInterval = DefaultHTTP2PingInterval
	}
	if c.HTTP2PingTimeout == 0 {
		c.HTTP2PingTimeout = DefaultHTTP2PingTimeout
	}
	if c.LockHoldCheckpoint == 0 {
		c.LockHoldCheckpoint = DefaultLockHoldCheckpoint
	}
	if c.LockQueueDefer == 0 {
		c.LockQueueDefer = DefaultLockQueueDefer
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.ClockRate == 0 {
		c.ClockRate = 1
	}
}

func setInt(v *int, d int) {
	if *v == 0 {
		*v = d
	}
}

// Validate reports every problem with the configuration at once.
func (c *Server) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !nameRE.MatchString(c.Name) {
		bad("--name %q: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", c.Name)
	}
	for flag, addr := range map[string]string{
		"--listen-client": c.ListenClient, "--listen-peer": c.ListenPeer,
		"--advertise-client": c.AdvertiseClient, "--advertise-peer": c.AdvertisePeer,
	} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad("%s %q: want host:port: %v", flag, addr, err)
		}
	}
	// An advertised address is dialled by the other members. A wildcard
	// host (what --listen-* take to listen on every interface, and what
	// the advertised addresses default to) makes each of them dial
	// itself: refuse it here rather than after the data dir was written.
	// A single member dials no one, and `concord server --listen-client
	// 0.0.0.0:7070` (a container's usual command) ran before this check:
	// it applies to a member with others (several --initial-cluster
	// members, or --join).
	multi := len(c.InitialCluster) > 1 || len(c.Join) > 0
	if multi && unspecifiedHost(c.AdvertisePeer) {
		bad("--advertise-peer %q is not an address other members can reach: with --listen-peer on every interface, set --advertise-peer to this member's reachable host:port", c.AdvertisePeer)
	}
	if multi && unspecifiedHost(c.AdvertiseClient) {
		bad("--advertise-client %q is not an address other members can reach: with --listen-client on every interface, set --advertise-client to this member's reachable host:port", c.AdvertiseClient)
	}
	if len(c.InitialCluster) > 0 && len(c.Join) > 0 {
		bad("--initial-cluster and --join are exclusive: a new member either starts a cluster or joins one")
	}
	if len(c.InitialCluster) > 0 {
		seen := map[string]bool{}
		addrs := map[string]string{}
		self := false
		for _, p := range c.InitialCluster {
			if !nameRE.MatchString(p.Name) {
				bad("--initial-cluster: member name %q is invalid", p.Name)
			}
			if seen[p.Name] {
				bad("--initial-cluster: member %q appears twice", p.Name)
			}
			seen[p.Name] = true
			if _, _, err := net.SplitHostPort(p.Addr); err != nil {
				bad("--initial-cluster: member %q address %q: %v", p.Name, p.Addr, err)
			} else if multi && unspecifiedHost(p.Addr) {
				bad("--initial-cluster: member %q address %q is not an address other members can reach (give each member's --advertise-peer)", p.Name, p.Addr)
			}
			if other, dup := addrs[p.Addr]; dup {
				bad("--initial-cluster: members %q and %q have one address %q", other, p.Name, p.Addr)
			}
			addrs[p.Addr] = p.Name
			if p.Name == c.Name {
				self = true
				if p.Addr != c.AdvertisePeer {
					bad("--initial-cluster gives %s=%s but --advertise-peer is %s", p.Name, p.Addr, c.AdvertisePeer)
				}
			}
		}
		if !self {
			bad("--initial-cluster does not list this member (--name %s)", c.Name)
		}
	}
	l := c.Limits
	if l.MaxKeyBytes < 1 || l.MaxValueBytes < 0 || l.MaxTxnOps < 1 || l.MaxRangeKeys < 1 {
		bad("limits must be positive")
	}
	// 0 means the default (unbounded, for --max-keys); a negative bound
	// would refuse everything.
	for flag, v := range map[string]int64{
		"range bytes": int64(l.MaxRangeBytes), "--max-request-bytes": int64(l.MaxRequestBytes),
		"--quota-bytes": l.QuotaBytes, "--max-keys": int64(l.MaxKeys), "--max-sessions": int64(l.MaxSessions),
		"--max-locks": int64(l.MaxLocks), "--max-id-objects": int64(l.MaxIDObjects), "--max-watches": int64(l.MaxWatches),
		"--max-segment-step": l.MaxSegmentStep, "--max-ids-per-call": l.MaxIDsPerCall,
	} {
		if v < 0 {
			bad("%s %d is negative", flag, v)
		}
	}
	if l.MaxKeyBytes+l.MaxValueBytes > l.MaxRequestBytes {
		bad("--max-request-bytes (%d) must hold a key and a value (%d + %d)", l.MaxRequestBytes, l.MaxKeyBytes, l.MaxValueBytes)
	}
	if l.MinSessionTTL <= 0 || l.MaxSessionTTL < l.MinSessionTTL {
		bad("session TTL bounds [%s, %s] are invalid", l.MinSessionTTL, l.MaxSessionTTL)
	}
	// HTTP trims the whitespace around a header's value and carries no
	// control characters: no client could present such a token. The
	// error does not repeat it.
	if t := c.AuthToken; t != strings.TrimSpace(t) || strings.ContainsFunc(t, unicode.IsControl) {
		bad("--auth-token (or CONCORD_AUTH_TOKEN) has whitespace at an end or a control character: no client could send it in an Authorization header")
	}
	// 0 means the default, as for the limits.
	if n := c.MaxConcurrentStreams; n < 0 || n > MaxMaxConcurrentStreams {
		bad("--max-concurrent-streams %d: want 1 to %d", n, MaxMaxConcurrentStreams)
	}
	// 0 means the default here too; --disable-http2-pings turns them off.
	for _, p := range []struct {
		flag     string
		v, floor time.Duration
	}{
		{"--http2-ping-interval", c.HTTP2PingInterval, MinHTTP2PingInterval},
		{"--http2-ping-timeout", c.HTTP2PingTimeout, MinHTTP2PingTimeout},
	} {
		switch {
		case p.v < 0:
			bad("%s %s is negative (0 is the default; --disable-http2-pings turns the pings off)", p.flag, p.v)
		case p.v > 0 && p.v < p.floor && !c.DisableHTTP2Pings:
			bad("%s %s is below %s", p.flag, p.v, p.floor)
		}
	}
	if c.LockQueueDefer < 0 || c.LockQueueDefer > MaxLockQueueDefer {
		bad("--lock-queue-defer %s is outside (0, %s]; --disable-lock-queue-defer writes every acquire at once", c.LockQueueDefer, MaxLockQueueDefer)
	}
	if c.LockHoldCheckpoint != 0 && c.LockHoldCheckpoint < MinLockHoldCheckpoint {
		bad("--lock-hold-checkpoint %s is below %s", c.LockHoldCheckpoint, MinLockHoldCheckpoint)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		bad("--tls-cert and --tls-key go together")
	}
	if c.ClockRate <= 0 {
		bad("clock rate must be positive")
	}
	c.validateTimings(bad)
	if ls := c.Raft.LogStore; ls != "" && ls != "seglog" && ls != "bolt" && ls != "wal" {
		bad("--raft-log-store %q: want seglog, bolt or wal", ls)
	}
	return errors.Join(errs...)
}

// Raft's lower bounds: its leader lease is half the heartbeat timeout and
// raft refuses a lease, or a snapshot interval, below 5 ms.
const (
	MinHeartbeatTimeout = 10 * time.Millisecond
	MinSnapshotInterval = 5 * time.Millisecond
)

// validateTimings checks the Raft timings and the bounds given as
// durations or counts. Zero means the default everywhere; a negative value
// was taken for the default in silence, and an election timeout below the
// heartbeat timeout failed inside raft, after the data dir was written.
func (c *Server) validateTimings(bad func(format string, args ...any)) {
	r := c.Raft
	for flag, v := range map[string]time.Duration{
		"--heartbeat-timeout": r.HeartbeatTimeout, "--election-timeout": r.ElectionTimeout,
		"--snapshot-interval": r.SnapshotInterval, "--shutdown-timeout": c.ShutdownTimeout,
	} {
		if v < 0 {
			bad("%s %s is negative", flag, v)
		}
	}
	for flag, v := range map[string]int64{"--watch-history": int64(c.HistoryEvents), "watch history bytes": c.HistoryBytes} {
		if v < 0 {
			bad("%s %d is negative", flag, v)
		}
	}
	// The effective values: raftnode takes 1s for either when unset.
	hb, el := r.HeartbeatTimeout, r.ElectionTimeout
	if hb == 0 {
		hb = time.Second
	}
	if el == 0 {
		el = time.Second
	}
	if hb > 0 && hb < MinHeartbeatTimeout {
		bad("--heartbeat-timeout %s is below %s (Raft's leader lease, half of it, must be at least 5ms)", hb, MinHeartbeatTimeout)
	}
	if hb > 0 && el > 0 && el < hb {
		bad("--election-timeout %s is below --heartbeat-timeout %s", el, hb)
	}
	if si := r.SnapshotInterval; si > 0 && si < MinSnapshotInterval {
		bad("--snapshot-interval %s is below Raft's minimum of %s", si, MinSnapshotInterval)
	}
}

// unspecifiedHost reports whether addr's host is empty or a wildcard
// address (0.0.0.0, ::), which others cannot dial.
func unspecifiedHost(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false // reported as malformed
	}
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// ParseInitialCluster parses "n1=host:port,n2=host:port".
func ParseInitialCluster(s string) ([]Peer, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []Peer
	for _, part := range strings.Split(s, ",") {
		name, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("--initial-cluster: %q is not name=host:port", part)
		}
		addr = strings.TrimPrefix(strings.TrimPrefix(addr, "http://"), "tcp://")
		out = append(out, Peer{Name: name, Addr: addr})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
