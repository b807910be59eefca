// Package testcluster runs an in-process concord cluster for tests. Member i
// listens on 127.0.0.(i+1); its peer address is a faultnet proxy, so a test
// can isolate members or cut single directed links.
package testcluster

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
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/clock"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/daemon"
	"github.com/concord-dev/concord/internal/faultnet"
	"github.com/concord-dev/concord/internal/fsm"
)

// Options shape a test cluster.
type Options struct {
	// Size is the number of members; default 3.
	Size int
	// Configure adjusts each member's configuration before it starts.
	Configure func(i int, c *config.Server)
	// Clock, if set, gives member i its lease clock.
	Clock func(i int) clock.Clock
	// Verbose sends member logs to stderr.
	Verbose bool
}

// Member is one member of the cluster.
type Member struct {
	Index int
	Name  string
	IP    string
	Cfg   config.Server
	Proxy *faultnet.Proxy

	mu sync.Mutex
	d  *daemon.Daemon
}

// Daemon returns the running daemon, nil when stopped.
func (m *Member) Daemon() *daemon.Daemon {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.d
}

// Cluster is a running test cluster.
type Cluster struct {
	t       testing.TB
	opts    Options
	Members []*Member
}

// FreePort returns a TCP port free on ip at the time of the call.
func FreePort(t testing.TB, ip string) int {
	port, err := freePort(ip)
	require.NoError(t, err)
	return port
}

func freePort(ip string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Start starts a cluster and waits until it has a ready leader.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Size == 0 {
		opts.Size = 3
	}
	c := &Cluster{t: t, opts: opts}
	base := t.TempDir()
	var initial []config.Peer
	for i := 0; i < opts.Size; i++ {
		ip := "127.0.0." + strconv.Itoa(i+1)
		m := &Member{Index: i, Name: fmt.Sprintf("n%d", i+1), IP: ip}
		peerPort, clientPort := FreePort(t, ip), FreePort(t, ip)
		proxy, err := faultnet.Listen(net.JoinHostPort(ip, "0"), net.JoinHostPort(ip, strconv.Itoa(peerPort)))
		require.NoError(t, err)
		m.Proxy = proxy
		m.Cfg = config.Server{
			Name:          m.Name,
			DataDir:       filepath.Join(base, m.Name),
			ListenClient:  net.JoinHostPort(ip, strconv.Itoa(clientPort)),
			ListenPeer:    net.JoinHostPort(ip, strconv.Itoa(peerPort)),
			AdvertisePeer: proxy.Addr(),
			Raft: config.Raft{
				HeartbeatTimeout: 300 * time.Millisecond,
				ElectionTimeout:  300 * time.Millisecond,
			},
			Limits:          config.Limits{MinSessionTTL: 100 * time.Millisecond},
			ShutdownTimeout: 5 * time.Second,
		}
		initial = append(initial, config.Peer{Name: m.Name, Addr: proxy.Addr()})
		c.Members = append(c.Members, m)
	}
	for _, m := range c.Members {
		m.Cfg.InitialCluster = initial
		if opts.Configure != nil {
			opts.Configure(m.Index, &m.Cfg)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(c.Members))
	for i, m := range c.Members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.startOnFreePorts(m)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	t.Cleanup(c.Close)
	c.WaitLeader(10 * time.Second)
	c.WaitPublished(10 * time.Second)
	c.WaitRules(10 * time.Second)
	return c
}

// WaitRules waits until every running member applies entries by the rules
// version the leader raises the cluster to: the highest that every
// member's build (Config.MaxRulesVersion) applies, and, from
// fsm.RulesClusterID, until each has applied the cluster's ID. The leader raises it
// with a log entry shortly after it is ready; tests start after it, so
// that they run under the rules of the members' builds and that entry
// cannot land between their calls.
func (c *Cluster) WaitRules(timeout time.Duration) {
	c.t.Helper()
	want := uint32(fsm.MaxRulesVersion)
	for _, m := range c.Members {
		if v := m.Cfg.MaxRulesVersion; v != 0 && v < want {
			want = v
		}
	}
	// From RulesClusterID the leader names the cluster right after the
	// raise, with another entry: it is waited for too.
	named := want >= fsm.RulesClusterID
	require.Eventually(c.t, func() bool {
		for _, m := range c.Members {
			if d := m.Daemon(); d != nil && (d.Server().FSM().RulesVersion() != want || named && d.Server().FSM().ClusterID() == "") {
				return false
			}
		}
		return true
	}, timeout, 20*time.Millisecond, "members did not reach rules version %d (and a cluster ID) within %s", want, timeout)
}

// WaitPublished waits until every running member has applied its own
// published attributes (name and addresses). A member publishes them with a
// log entry shortly after it starts; tests that compare applied indexes
// start after it, so that entry cannot land between their calls.
func (c *Cluster) WaitPublished(timeout time.Duration) {
	c.t.Helper()
	require.Eventually(c.t, func() bool {
		for _, m := range c.Members {
			d := m.Daemon()
			if d == nil {
				continue
			}
			s := d.Server()
			cfg := s.Config()
			published := false
			s.FSM().Read(func(st fsm.State) {
				rec, ok := st.Members.Get(s.ID())
				published = ok && rec.Name == cfg.Name && rec.PeerAddr == cfg.AdvertisePeer && rec.ClientAddr == cfg.AdvertiseClient
			})
			if !published {
				return false
			}
		}
		return true
	}, timeout, 20*time.Millisecond, "members did not publish their addresses within %s", timeout)
}

func (c *Cluster) logger(m *Member) *slog.Logger {
	var w io.Writer = io.Discard
	if c.opts.Verbose || os.Getenv("CONCORD_TEST_VERBOSE") != "" {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test_member", m.Name)
}

func (c *Cluster) start(m *Member) error {
	var clk clock.Clock
	if c.opts.Clock != nil {
		clk = c.opts.Clock(m.Index)
	}
	d, err := daemon.Start(context.Background(), m.Cfg, daemon.Options{Logger: c.logger(m), Clock: clk})
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.d = d
	m.mu.Unlock()
	return nil
}

// Close stops every member.
func (c *Cluster) Close() {
	for _, m := range c.Members {
		if d := m.Daemon(); d != nil {
			d.Kill()
		}
		m.Proxy.Close()
	}
}

// Endpoints returns the client addresses of every member.
func (c *Cluster) Endpoints() []string {
	out := make([]string, len(c.Members))
	for i, m := range c.Members {
		out[i] = m.Cfg.ListenClient
	}
	return out
}

// Client returns a client of the given members (all when none is given),
// closed at the end of the test.
func (c *Cluster) Client(members ...int) *client.Client {
	c.t.Helper()
	eps := c.Endpoints()
	if len(members) > 0 {
		eps = nil
		for _, i := range members {
			eps = append(eps, c.Members[i].Cfg.ListenClient)
		}
	}
	cl, err := client.New(context.Background(), client.Config{Endpoints: eps, DialTimeout: 10 * time.Second})
	require.NoError(c.t, err)
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// Leader returns the index of the member that leads and is ready, or -1.
func (c *Cluster) Leader() int {
	for i, m := range c.Members {
		d := m.Daemon()
		if d == nil {
			continue
		}
		s := d.Server()
		if s.ID() != "" && s.Ready() && s.IsLeader() {
			return i
		}
	}
	return -1
}

// WaitLeader waits until one running member leads and is ready.
func (c *Cluster) WaitLeader(timeout time.Duration) int {
	c.t.Helper()
	leader := -1
	require.Eventually(c.t, func() bool {
		leader = c.Leader()
		return leader >= 0
	}, timeout, 20*time.Millisecond, "no ready leader within %s", timeout)
	return leader
}

// WaitNewLeader waits for a ready leader other than old.
func (c *Cluster) WaitNewLeader(old int, timeout time.Duration) int {
	c.t.Helper()
	leader := -1
	require.Eventually(c.t, func() bool {
		leader = c.Leader()
		return leader >= 0 && leader != old
	}, timeout, 20*time.Millisecond, "no new leader within %s", timeout)
	return leader
}

// Kill stops member i abruptly, as a crash would.
func (c *Cluster) Kill(i int) {
	m := c.Members[i]
	m.mu.Lock()
	d := m.d
	m.d = nil
	m.mu.Unlock()
	if d != nil {
		d.Kill()
	}
}

// Stop stops member i gracefully.
func (c *Cluster) Stop(i int) {
	m := c.Members[i]
	m.mu.Lock()
	d := m.d
	m.d = nil
	m.mu.Unlock()
	if d != nil {
		require.NoError(c.t, d.Stop(context.Background()))
	}
}

// Restart starts a stopped member again on its data dir.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	require.NoError(c.t, c.startOnFreePorts(c.Members[i]))
}

// startOnFreePorts starts m, on other ports if one of its own was taken:
// FreePort's port is free when it returns, but until the member listens
// on it any socket of this machine (the other test packages run at the
// same time) may take it. Peers reach m through its proxy, which follows
// the new peer port; clients read m.Cfg.ListenClient.
func (c *Cluster) startOnFreePorts(m *Member) error {
	for attempt := 1; ; attempt++ {
		err := c.start(m)
		if err == nil || attempt == 5 || !errors.Is(err, syscall.EADDRINUSE) {
			return err
		}
		clientPort, err := freePort(m.IP)
		if err != nil {
			return err
		}
		peerPort, err := freePort(m.IP)
		if err != nil {
			return err
		}
		m.Cfg.ListenClient = net.JoinHostPort(m.IP, strconv.Itoa(clientPort))
		m.Cfg.ListenPeer = net.JoinHostPort(m.IP, strconv.Itoa(peerPort))
		m.Proxy.Retarget(m.Cfg.ListenPeer)
	}
}

// Isolate blackholes every link to and from member i.
func (c *Cluster) Isolate(i int) {
	for j, m := range c.Members {
		if j == i {
			for k, o := range c.Members {
				if k != i {
					m.Proxy.Set(o.IP, faultnet.Link{Mode: faultnet.Blackhole})
				}
			}
			continue
		}
		m.Proxy.Set(c.Members[i].IP, faultnet.Link{Mode: faultnet.Blackhole})
	}
}

// Heal restores every link.
func (c *Cluster) Heal() {
	for _, m := range c.Members {
		m.Proxy.Heal()
	}
}

// WaitConverged waits until every running member has applied the same
// index with the same state hash, and returns the hash.
func (c *Cluster) WaitConverged(timeout time.Duration) string {
	c.t.Helper()
	var hash string
	var last []string
	ok := assertEventually(timeout, func() bool {
		var idx uint64
		hash, last = "", nil
		agree := true
		for _, m := range c.Members {
			d := m.Daemon()
			if d == nil {
				continue
			}
			i, h, err := d.Server().Hash(context.Background())
			last = append(last, fmt.Sprintf("%s: index %d hash %.12s err %v", m.Name, i, h, err))
			if err != nil {
				agree = false
				continue
			}
			if hash == "" {
				idx, hash = i, h
				continue
			}
			if i != idx || h != hash {
				agree = false
			}
		}
		return agree && hash != ""
	})
	require.True(c.t, ok, "members did not converge to one state: %v", last)
	return hash
}

func assertEventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}
