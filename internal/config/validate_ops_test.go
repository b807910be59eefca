package config

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Raft timings and the shutdown bound were not validated: a negative
// duration or count was replaced by its default in silence, and an
// election timeout below the heartbeat timeout (or a heartbeat below the
// 10 ms raft's 5 ms lease needs) failed only inside raft, after the data
// dir and member.json were written. Validate now refuses each of them,
// naming the flag.
func TestValidateRefusesNonsenseTimings(t *testing.T) {
	for name, tc := range map[string]struct {
		mod  func(c *Server)
		want string
	}{
		"negative heartbeat":          {func(c *Server) { c.Raft.HeartbeatTimeout = -time.Second }, "--heartbeat-timeout -1s is negative"},
		"negative election":           {func(c *Server) { c.Raft.ElectionTimeout = -time.Second }, "--election-timeout -1s is negative"},
		"election below heartbeat":    {func(c *Server) { c.Raft.HeartbeatTimeout = 2 * time.Second; c.Raft.ElectionTimeout = time.Second }, "--election-timeout 1s is below --heartbeat-timeout 2s"},
		"election below the default":  {func(c *Server) { c.Raft.ElectionTimeout = 300 * time.Millisecond }, "--election-timeout 300ms is below --heartbeat-timeout 1s"},
		"heartbeat below raft's 10ms": {func(c *Server) { c.Raft.HeartbeatTimeout = 8 * time.Millisecond; c.Raft.ElectionTimeout = time.Second }, "--heartbeat-timeout 8ms is below 10ms"},
		"negative snapshot interval":  {func(c *Server) { c.Raft.SnapshotInterval = -time.Second }, "--snapshot-interval -1s is negative"},
		"snapshot interval below 5ms": {func(c *Server) { c.Raft.SnapshotInterval = time.Millisecond }, "--snapshot-interval 1ms is below"},
		"negative shutdown timeout":   {func(c *Server) { c.ShutdownTimeout = -time.Second }, "--shutdown-timeout -1s is negative"},
		"negative watch history":      {func(c *Server) { c.HistoryEvents = -1 }, "--watch-history -1 is negative"},
		"negative watch history size": {func(c *Server) { c.HistoryBytes = -1 }, "watch history bytes -1 is negative"},
	} {
		t.Run(name, func(t *testing.T) {
			var c Server
			c.SetDefaults()
			tc.mod(&c)
			require.ErrorContains(t, c.Validate(), tc.want)
		})
	}
	// The bounds themselves pass.
	c := Server{Raft: Raft{HeartbeatTimeout: 10 * time.Millisecond, ElectionTimeout: 10 * time.Millisecond, SnapshotInterval: 5 * time.Millisecond}}
	c.SetDefaults()
	require.NoError(t, c.Validate())
}

// --listen-peer 0.0.0.0:7080 (every interface) without --advertise-peer
// made the advertised peer address 0.0.0.0:7080, which Validate accepted:
// every other member that dialled it reached its own socket, and a --join
// member waited for an ID under an address `cluster add` refuses. The same
// held for the client address members use to reach the leader, and for
// --initial-cluster entries. Validate now refuses a wildcard or empty host
// in an advertised address of a member with others (--join, or several
// --initial-cluster members) and points at --advertise-peer/-client.
func TestValidateRefusesUnspecifiedAdvertiseAddresses(t *testing.T) {
	join := []string{"10.0.0.1:7070"}
	for name, tc := range map[string]struct {
		mod  func(c *Server)
		want string
	}{
		"peer":            {func(c *Server) { c.ListenPeer, c.Join = "0.0.0.0:7080", join }, "set --advertise-peer"},
		"peer, no host":   {func(c *Server) { c.ListenPeer, c.Join = ":7080", join }, "set --advertise-peer"},
		"client":          {func(c *Server) { c.ListenClient, c.Join = "[::]:7070", join }, "set --advertise-client"},
		"initial cluster": {func(c *Server) { c.InitialCluster = []Peer{{"n1", "127.0.0.1:7080"}, {"n2", "0.0.0.0:7080"}} }, `member "n2" address "0.0.0.0:7080" is not an address`},
	} {
		t.Run(name, func(t *testing.T) {
			c := Server{Name: "n1"}
			tc.mod(&c)
			c.SetDefaults()
			require.ErrorContains(t, c.Validate(), tc.want)
		})
	}
	// Listening on every interface is fine with an address to advertise.
	c := Server{Name: "n1", ListenPeer: "0.0.0.0:7080", AdvertisePeer: "10.0.0.1:7080", ListenClient: "[::]:7070", AdvertiseClient: "10.0.0.1:7070", Join: join}
	c.SetDefaults()
	require.NoError(t, c.Validate())
}

// The first version of the check above refused a single member listening
// on every interface, `concord server --listen-client 0.0.0.0:7070` (a
// container's usual command), which had run before: an upgraded member
// did not start on its own data dir. A single member dials no one.
func TestValidateLetsASingleMemberListenOnEveryInterface(t *testing.T) {
	for name, c := range map[string]Server{
		"0.0.0.0":     {ListenClient: "0.0.0.0:7070", ListenPeer: "0.0.0.0:7080"},
		"[::]":        {ListenClient: "[::]:7070", ListenPeer: "[::]:7080"},
		"no host":     {ListenClient: ":7070", ListenPeer: ":7080"},
		"client only": {ListenClient: "0.0.0.0:7070"},
	} {
		t.Run(name, func(t *testing.T) {
			c.SetDefaults() // a single member: InitialCluster is itself
			require.NoError(t, c.Validate())
		})
	}
}

// Two members of --initial-cluster at one address were refused only by
// raft's bootstrap, after the data dir was written.
func TestValidateRefusesOneAddressForTwoInitialMembers(t *testing.T) {
	c := Server{Name: "n1", InitialCluster: []Peer{{"n1", "127.0.0.1:7080"}, {"n2", "127.0.0.1:7080"}}}
	c.SetDefaults()
	require.ErrorContains(t, c.Validate(), `members "n1" and "n2" have one address`)
}

// --max-concurrent-streams (the HTTP/2 streams of one client connection)
// was a constant 10,000; as a flag it is 1 to 1,000,000, 0 the default.
func TestValidateMaxConcurrentStreams(t *testing.T) {
	for _, n := range []int{-1, MaxMaxConcurrentStreams + 1} {
		c := Server{MaxConcurrentStreams: n}
		c.SetDefaults()
		require.ErrorContains(t, c.Validate(), "--max-concurrent-streams", "%d", n)
	}
	for _, n := range []int{1, MaxMaxConcurrentStreams} {
		c := Server{MaxConcurrentStreams: n}
		c.SetDefaults()
		require.NoError(t, c.Validate(), "%d", n)
		require.Equal(t, n, c.MaxConcurrentStreams)
	}
	var c Server
	c.SetDefaults()
	require.Equal(t, DefaultMaxConcurrentStreams, c.MaxConcurrentStreams)
	require.Equal(t, 10_000, c.MaxConcurrentStreams)
}

// --http2-ping-interval and --http2-ping-timeout (the client port's HTTP/2
// pings, fixed at 30 s and 15 s before) refuse a negative value and one
// below a second, naming the flag; 0 is the default, and
// --disable-http2-pings turns the pings off (a negative value is refused
// all the same).
func TestValidateHTTP2Pings(t *testing.T) {
	for name, tc := range map[string]struct {
		mod  func(c *Server)
		want string
	}{
		"negative interval":          {func(c *Server) { c.HTTP2PingInterval = -time.Second }, "--http2-ping-interval -1s is negative"},
		"negative timeout":           {func(c *Server) { c.HTTP2PingTimeout = -time.Second }, "--http2-ping-timeout -1s is negative"},
		"interval below a second":    {func(c *Server) { c.HTTP2PingInterval = time.Millisecond }, "--http2-ping-interval 1ms is below 1s"},
		"timeout below a second":     {func(c *Server) { c.HTTP2PingTimeout = time.Nanosecond }, "--http2-ping-timeout 1ns is below 1s"},
		"negative, pings turned off": {func(c *Server) { c.HTTP2PingTimeout, c.DisableHTTP2Pings = -time.Second, true }, "--http2-ping-timeout -1s is negative"},
	} {
		t.Run(name, func(t *testing.T) {
			var c Server
			c.SetDefaults()
			tc.mod(&c)
			require.ErrorContains(t, c.Validate(), tc.want)
		})
	}
	var c Server
	c.SetDefaults()
	require.NoError(t, c.Validate())
	require.Equal(t, 30*time.Second, c.HTTP2PingInterval)
	require.Equal(t, 15*time.Second, c.HTTP2PingTimeout)
	for _, ok := range []Server{
		{HTTP2PingInterval: MinHTTP2PingInterval, HTTP2PingTimeout: MinHTTP2PingTimeout},
		{HTTP2PingInterval: time.Hour, HTTP2PingTimeout: time.Hour},
		{HTTP2PingInterval: time.Millisecond, DisableHTTP2Pings: true},
	} {
		want := ok
		ok.SetDefaults()
		require.NoError(t, ok.Validate(), "%+v", want)
		require.Equal(t, want.HTTP2PingInterval, ok.HTTP2PingInterval)
	}
}

// --lock-hold-checkpoint is at least 50ms (a negative value too); 0 is the
// default, 5 s.
func TestValidateLockHoldCheckpoint(t *testing.T) {
	for _, bad := range []time.Duration{-time.Second, time.Millisecond, MinLockHoldCheckpoint - 1} {
		var c Server
		c.SetDefaults()
		c.LockHoldCheckpoint = bad
		require.ErrorContains(t, c.Validate(), fmt.Sprintf("--lock-hold-checkpoint %s is below 50ms", bad))
	}
	var c Server
	c.SetDefaults()
	require.NoError(t, c.Validate())
	require.Equal(t, 5*time.Second, c.LockHoldCheckpoint)
	for _, ok := range []time.Duration{MinLockHoldCheckpoint, time.Hour} {
		c := Server{LockHoldCheckpoint: ok}
		c.SetDefaults()
		require.NoError(t, c.Validate())
		require.Equal(t, ok, c.LockHoldCheckpoint)
	}
}

// --lock-queue-defer is positive and at most 100ms; 0 is the default, 2ms.
func TestValidateLockQueueDefer(t *testing.T) {
	for _, bad := range []time.Duration{-time.Millisecond, MaxLockQueueDefer + 1, time.Second} {
		var c Server
		c.SetDefaults()
		c.LockQueueDefer = bad
		require.ErrorContains(t, c.Validate(), fmt.Sprintf("--lock-queue-defer %s is outside (0, 100ms]", bad))
	}
	var c Server
	c.SetDefaults()
	require.NoError(t, c.Validate())
	require.Equal(t, 2*time.Millisecond, c.LockQueueDefer)
	for _, ok := range []time.Duration{time.Microsecond, MaxLockQueueDefer} {
		c := Server{LockQueueDefer: ok}
		c.SetDefaults()
		require.NoError(t, c.Validate())
		require.Equal(t, ok, c.LockQueueDefer)
	}
}
