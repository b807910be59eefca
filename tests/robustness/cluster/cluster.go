// Package cluster runs a concord cluster as real processes for the
// robustness harness. Member i (from 1) runs on loopback address 127.0.0.i
// with its own data dir; it listens for peers on a private port and
// advertises the address of a faultnet proxy in front of it. Members dial
// their peers from their own IP, so the proxy of member j sees member i's
// traffic coming from 127.0.0.i and can pass, blackhole, reset or delay the
// directed link i→j alone.
//
// The package controls processes (kill -9 and restart on the same data dir,
// SIGSTOP/SIGCONT, restart with a skewed lease clock), links, and
// membership (remove a member, re-add it under a new ID with an empty data
// dir; move a stopped member to a new proxy, keeping its ID and data), and
// answers questions about the cluster: who leads, what each member
// applied and its state hash.
package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/cli"
	"github.com/concord-dev/concord/internal/faultnet"
)

// Options shape a cluster.
type Options struct {
	// Binary is the concord binary (see Build).
	Binary string
	// Size is the number of members, 3 or 5.
	Size int
	// Dir receives the members' data dirs and logs.
	Dir string
	// ExtraFlags are added to every member's command line.
	ExtraFlags []string
	// HeartbeatTimeout and ElectionTimeout default to 300ms.
	HeartbeatTimeout, ElectionTimeout time.Duration
	// SnapshotThreshold, SnapshotInterval and TrailingLogs tune Raft
	// snapshots; zero keeps concord's defaults.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// MinSessionTTL is passed as --min-session-ttl when set.
	MinSessionTTL time.Duration
	// LockHoldCheckpoint is passed as --lock-hold-checkpoint when set (a
	// binary of a release before the flag needs it unset).
	LockHoldCheckpoint time.Duration
	// Clock is every member's lease clock at the start (default normal).
	Clock Clock
	// Logf receives progress messages; default discards.
	Logf func(format string, args ...any)
}

// Clock is a member's lease clock skew, applied at its next (re)start
// through the hidden --fault-clock-offset and --fault-clock-rate flags.
type Clock struct {
	Offset time.Duration
	Rate   float64
}

// Normal reports whether the clock is unskewed.
func (c Clock) Normal() bool { return c.Offset == 0 && (c.Rate == 0 || c.Rate == 1) }

// String describes the skew.
func (c Clock) String() string {
	if c.Normal() {
		return "normal"
	}
	return fmt.Sprintf("offset %s rate %.2f", c.Offset, c.Rate)
}

// State is a member's process state.
type State int

// Member states.
const (
	Running State = iota
	Stopped       // killed, not restarted yet
	Paused        // SIGSTOPped
	Removed       // removed from the cluster, process gone
)

// String names the state.
func (s State) String() string {
	return [...]string{"running", "stopped", "paused", "removed"}[s]
}

// Member is one member slot. Its IP, client address and peer listener are
// fixed for the cluster's life; its process, state, clock, Raft ID and
// advertised peer address (Move puts a new proxy in front of its peer
// listener) change.
type Member struct {
	Index      int // 0-based
	Name       string
	IP         string
	ClientAddr string
	PeerAddr   string // the member's own peer listener

	// Guarded by Cluster.mu.
	proxyAddr   string          // advertised peer address, the proxy in front of PeerAddr
	proxy       *faultnet.Proxy // the proxy at proxyAddr
	moving      *faultnet.Proxy // the proxy a Move in progress moves the member to
	state       State
	clock       Clock
	incarnation int
	joined      bool // this incarnation joined a running cluster
	id          string
	proc        *process
}

// Cluster is a running cluster of concord processes.
type Cluster struct {
	opts    Options
	spawner *spawner
	members []*Member
	admin   *client.Client
	httpc   *http.Client

	mu        sync.Mutex
	links     map[[2]int]faultnet.Link
	closeOnce sync.Once
}

// Start starts a cluster and waits until it has a ready leader.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Size < 1 || opts.Size > 9 {
		return nil, fmt.Errorf("cluster size %d: want 1 to 9", opts.Size)
	}
	if opts.HeartbeatTimeout == 0 {
		opts.HeartbeatTimeout = 300 * time.Millisecond
	}
	if opts.ElectionTimeout == 0 {
		opts.ElectionTimeout = 300 * time.Millisecond
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	for _, d := range []string{"data", "logs"} {
		if err := os.MkdirAll(filepath.Join(opts.Dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	c := &Cluster{
		opts:    opts,
		spawner: newSpawner(),
		links:   map[[2]int]faultnet.Link{},
		httpc:   &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}
	for i := 0; i < opts.Size; i++ {
		ip := "127.0.0." + strconv.Itoa(i+1)
		m := &Member{Index: i, Name: fmt.Sprintf("n%d", i+1), IP: ip}
		cport, err := freePort(ip)
		if err != nil {
			c.Close()
			return nil, err
		}
		pport, err := freePort(ip)
		if err != nil {
			c.Close()
			return nil, err
		}
		m.ClientAddr = net.JoinHostPort(ip, strconv.Itoa(cport))
		m.PeerAddr = net.JoinHostPort(ip, strconv.Itoa(pport))
		proxy, err := faultnet.Listen(net.JoinHostPort(ip, "0"), m.PeerAddr)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("proxy for %s: %w", m.Name, err)
		}
		m.proxy, m.proxyAddr = proxy, proxy.Addr()
		m.id = m.Name
		m.clock = opts.Clock
		c.members = append(c.members, m)
	}
	for _, m := range c.members {
		if err := c.startProcess(m); err != nil {
			c.Close()
			return nil, err
		}
	}
	for _, m := range c.members {
		if err := c.waitHealthy(ctx, m, 30*time.Second); err != nil {
			c.Close()
			return nil, err
		}
	}
	admin, err := client.New(ctx, client.Config{Endpoints: c.Endpoints(), DialTimeout: 30 * time.Second, RetryTimeout: 10 * time.Second})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("admin client: %w", err)
	}
	c.admin = admin
	if _, err := c.WaitLeader(ctx, 30*time.Second); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// freePort returns a port free on ip, below the kernel's ephemeral range
// when it can: a member restarts on the same ports, and while it is down
// an outgoing connection must not take its port as a source port.
func freePort(ip string) (int, error) {
	lo := ephemeralLow()
	if lo > 12000 {
		for range 50 {
			port := 10000 + rand.IntN(lo-10000)
			ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err == nil {
				ln.Close()
				return port, nil
			}
		}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("free port on %s: %w", ip, err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralLow returns the first port of the kernel's ephemeral range
// (32768 when unknown).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

// Close kills every member and closes the proxies. The data dirs stay.
// Calling it again does nothing.
func (c *Cluster) Close() { c.closeOnce.Do(c.close) }

func (c *Cluster) close() {
	if c.admin != nil {
		c.admin.Close()
	}
	c.mu.Lock()
	var procs []*process
	var proxies []*faultnet.Proxy
	for _, m := range c.members {
		if m.proc != nil {
			procs = append(procs, m.proc)
		}
		for _, p := range []*faultnet.Proxy{m.proxy, m.moving} {
			if p != nil {
				proxies = append(proxies, p)
			}
		}
	}
	c.mu.Unlock()
	for _, p := range procs {
		p.kill()
	}
	for _, p := range proxies {
		p.Close()
	}
	c.spawner.stop()
}

// Size returns the number of member slots.
func (c *Cluster) Size() int { return len(c.members) }

// Member returns member slot i.
func (c *Cluster) Member(i int) *Member { return c.members[i] }

// Endpoints returns the client addresses of every member slot.
func (c *Cluster) Endpoints() []string {
	out := make([]string, len(c.members))
	for i, m := range c.members {
		out[i] = m.ClientAddr
	}
	return out
}

// NewClient returns a new client of every member. The caller closes it.
func (c *Cluster) NewClient(ctx context.Context) (*client.Client, error) {
	return client.New(ctx, client.Config{Endpoints: c.Endpoints(), DialTimeout: 10 * time.Second, RetryTimeout: 10 * time.Second})
}

// Do runs f with a fresh client of every member, each attempt bounded by
// attempt, until f succeeds, fails with a permanent error (see Permanent),
// or timeout passes. A fresh client per attempt learns the leader anew, so
// an attempt stuck on a member that stopped answering does not doom the
// next one.
func (c *Cluster) Do(ctx context.Context, timeout, attempt time.Duration, f func(context.Context, *client.Client) error) error {
	return poll(ctx, timeout, 100*time.Millisecond, func() error {
		actx, cancel := context.WithTimeout(ctx, attempt)
		defer cancel()
		cl, err := c.NewClient(actx)
		if err != nil {
			return err
		}
		defer cl.Close()
		return f(actx, cl)
	})
}

// MemberInfo is a snapshot of a member slot's state.
type MemberInfo struct {
	Index       int
	Name        string
	ID          string
	State       State
	Clock       Clock
	Incarnation int
	DataDir     string
	// ProxyAddr is the member's advertised peer address.
	ProxyAddr string
}

// Info returns member i's current state.
func (c *Cluster) Info(i int) MemberInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[i]
	return MemberInfo{Index: i, Name: m.Name, ID: m.id, State: m.state, Clock: m.clock, Incarnation: m.incarnation, DataDir: c.dataDir(m), ProxyAddr: m.proxyAddr}
}

// DataDirs lists every data dir the members used, in order.
func (c *Cluster) DataDirs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.members {
		for inc := 0; inc <= m.incarnation; inc++ {
			out = append(out, filepath.Join(c.opts.Dir, "data", fmt.Sprintf("%s.%d", m.Name, inc)))
		}
	}
	return out
}

func (c *Cluster) dataDir(m *Member) string {
	return filepath.Join(c.opts.Dir, "data", fmt.Sprintf("%s.%d", m.Name, m.incarnation))
}

// LogPath returns the file that collects member i's output.
func (c *Cluster) LogPath(i int) string {
	return filepath.Join(c.opts.Dir, "logs", c.members[i].Name+".log")
}

func (c *Cluster) args(m *Member) []string {
	o := c.opts
	a := []string{"server",
		"--name", m.Name,
		"--data-dir", c.dataDir(m),
		"--listen-client", m.ClientAddr,
		"--listen-peer", m.PeerAddr,
		"--advertise-peer", m.proxyAddr,
		"--heartbeat-timeout", o.HeartbeatTimeout.String(),
		"--election-timeout", o.ElectionTimeout.String(),
		"--shutdown-timeout", "5s",
		"--log-format", "json",
	}
	if m.joined {
		var others []string
		for _, p := range c.members {
			if p != m {
				others = append(others, p.ClientAddr)
			}
		}
		a = append(a, "--join", strings.Join(others, ","))
	} else {
		var initial []string
		for _, p := range c.members {
			initial = append(initial, p.Name+"="+p.proxyAddr)
		}
		a = append(a, "--initial-cluster", strings.Join(initial, ","))
	}
	if o.SnapshotThreshold > 0 {
		a = append(a, "--snapshot-threshold", strconv.FormatUint(o.SnapshotThreshold, 10))
	}
	if o.SnapshotInterval > 0 {
		a = append(a, "--snapshot-interval", o.SnapshotInterval.String())
	}
	if o.TrailingLogs > 0 {
		a = append(a, "--trailing-logs", strconv.FormatUint(o.TrailingLogs, 10))
	}
	if o.MinSessionTTL > 0 {
		a = append(a, "--min-session-ttl", o.MinSessionTTL.String())
	}
	if o.LockHoldCheckpoint > 0 {
		a = append(a, "--lock-hold-checkpoint", o.LockHoldCheckpoint.String())
	}
	if !m.clock.Normal() {
		rate := m.clock.Rate
		if rate == 0 {
			rate = 1
		}
		a = append(a, "--fault-clock-offset", m.clock.Offset.String(), "--fault-clock-rate", strconv.FormatFloat(rate, 'f', -1, 64))
	}
	return append(a, o.ExtraFlags...)
}

// startProcess starts m's process; the caller holds no lock.
func (c *Cluster) startProcess(m *Member) error {
	c.mu.Lock()
	args := c.args(m)
	inc := m.incarnation
	c.mu.Unlock()
	logf, err := os.OpenFile(c.LogPath(m.Index), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== %s: starting %s (incarnation %d): %s\n", time.Now().Format(time.RFC3339Nano), m.Name, inc, strings.Join(args, " "))
	cmd := exec.Command(c.opts.Binary, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := c.spawner.start(cmd); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", m.Name, err)
	}
	p := &process{cmd: cmd, log: logf, exited: make(chan struct{})}
	go p.wait()
	c.mu.Lock()
	m.proc = p
	m.state = Running
	c.mu.Unlock()
	return nil
}

// waitHealthy waits until m's client API answers /healthz.
func (c *Cluster) waitHealthy(ctx context.Context, m *Member, timeout time.Duration) error {
	return poll(ctx, timeout, 50*time.Millisecond, func() error {
		c.mu.Lock()
		p := m.proc
		c.mu.Unlock()
		if p != nil && !p.alive() {
			return permanent(fmt.Errorf("%s exited: %v (see %s)", m.Name, p.exitErr(), c.LogPath(m.Index)))
		}
		if _, err := c.get(ctx, m, "/healthz"); err != nil {
			return fmt.Errorf("%s not healthy: %w", m.Name, err)
		}
		return nil
	})
}

// open GETs path from m's client port and returns the answer's body; a
// non-200 answer is an error that quotes the start of its body.
func (c *Cluster) open(ctx context.Context, m *Member, path string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.ClientAddr+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.httpc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return resp.Body, nil
}

// get fetches path from m's client port (at most 1 MiB of it), failing on
// non-200 answers.
func (c *Cluster) get(ctx context.Context, m *Member, path string) ([]byte, error) {
	body, err := c.open(ctx, m, path)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	return io.ReadAll(io.LimitReader(body, 1<<20))
}

// Counter reads one unlabelled sample from member i's /metrics; 0 when
// the member does not report it.
func (c *Cluster) Counter(ctx context.Context, i int, name string) (float64, error) {
	body, err := c.open(ctx, c.members[i], "/metrics")
	if err != nil {
		return 0, err
	}
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, sc.Err()
}

// Kill sends SIGKILL to member i and waits for it to exit.
func (c *Cluster) Kill(i int) error {
	m := c.members[i]
	c.mu.Lock()
	p, st := m.proc, m.state
	c.mu.Unlock()
	if p == nil || (st != Running && st != Paused) {
		return fmt.Errorf("%s is %s", m.Name, st)
	}
	p.kill()
	c.mu.Lock()
	m.state = Stopped
	c.mu.Unlock()
	return nil
}

// ErrStopHung is Stop's error for a graceful stop that did not end.
var ErrStopHung = errors.New("graceful stop hung")

// Stop stops member i gracefully, as an operator's rolling restart does:
// SIGTERM, then it waits up to within for the process to exit. It returns
// how long the stop took and the process's exit error (nil for exit 0);
// err is set, and nothing changed, when the member could not be signalled.
// A stop that `concord server` itself gave up on (exit code
// cli.ExitStopHung), or a process still running after within (then
// killed), exits with ErrStopHung.
func (c *Cluster) Stop(i int, within time.Duration) (took time.Duration, exit, err error) {
	m := c.members[i]
	c.mu.Lock()
	p, st := m.proc, m.state
	c.mu.Unlock()
	if p == nil || st != Running {
		return 0, nil, fmt.Errorf("%s is %s", m.Name, st)
	}
	start := time.Now()
	if err := p.signal(syscall.SIGTERM); err != nil {
		return 0, nil, err
	}
	timer := time.NewTimer(within)
	defer timer.Stop()
	select {
	case <-p.exited:
		exit = p.exitErr()
		var ee *exec.ExitError
		if errors.As(exit, &ee) && ee.ExitCode() == cli.ExitStopHung {
			exit = fmt.Errorf("%w: %s gave up on it (exit code %d, see %s)", ErrStopHung, m.Name, cli.ExitStopHung, c.LogPath(i))
		}
	case <-timer.C:
		p.kill()
		exit = fmt.Errorf("%w: %s still running %s after SIGTERM, killed (see %s)", ErrStopHung, m.Name, within, c.LogPath(i))
	}
	took = time.Since(start)
	c.mu.Lock()
	m.state = Stopped
	c.mu.Unlock()
	return took, exit, nil
}

// Restart starts a killed member again on its data dir, with its current
// clock, and waits until its client API answers.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	m := c.members[i]
	c.mu.Lock()
	st := m.state
	c.mu.Unlock()
	if st != Stopped {
		return fmt.Errorf("%s is %s, not stopped", m.Name, st)
	}
	if err := c.startProcess(m); err != nil {
		return err
	}
	return c.waitHealthy(ctx, m, 20*time.Second)
}

// SetClock sets the lease clock member i gets at its next (re)start.
func (c *Cluster) SetClock(i int, clk Clock) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.members[i].clock = clk
}

// Pause stops member i with SIGSTOP.
func (c *Cluster) Pause(i int) error {
	m := c.members[i]
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.state != Running {
		return fmt.Errorf("%s is %s", m.Name, m.state)
	}
	if err := m.proc.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	m.state = Paused
	return nil
}

// Resume continues a paused member with SIGCONT.
func (c *Cluster) Resume(i int) error {
	m := c.members[i]
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.state != Paused {
		return fmt.Errorf("%s is %s", m.Name, m.state)
	}
	if err := m.proc.signal(syscall.SIGCONT); err != nil {
		return err
	}
	m.state = Running
	return nil
}

// SetLink sets the behaviour of the directed link from member from to
// member to: connections from's IP opens to to's proxy (and to the proxy a
// Move in progress moves it to).
func (c *Cluster) SetLink(from, to int, l faultnet.Link) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l == (faultnet.Link{}) {
		delete(c.links, [2]int{from, to})
	} else {
		c.links[[2]int{from, to}] = l
	}
	c.setProxies(c.members[to], c.members[from].IP, l)
}

// setProxies sets the link from src on m's proxies; the caller holds c.mu.
func (c *Cluster) setProxies(m *Member, src string, l faultnet.Link) {
	m.proxy.Set(src, l)
	if m.moving != nil {
		m.moving.Set(src, l)
	}
}

// HealNetwork passes every link again. Connections that were blackholed
// are reset first: the proxy dropped bytes from their streams, which TCP
// never does, so they must not carry traffic again.
func (c *Cluster) HealNetwork() {
	c.mu.Lock()
	defer c.mu.Unlock()
	links := c.links
	c.links = map[[2]int]faultnet.Link{}
	for l, link := range links {
		if link.Mode == faultnet.Blackhole {
			c.setProxies(c.members[l[1]], c.members[l[0]].IP, faultnet.Link{Mode: faultnet.Reset})
		}
	}
	for _, m := range c.members {
		m.proxy.Heal()
		if m.moving != nil {
			m.moving.Heal()
		}
	}
}

// Move moves stopped member i to a new peer address, keeping its Raft ID,
// vote and data dir: a new proxy on its IP, in front of its peer listener,
// takes the old one's place, and the cluster is told with UpdateMember.
// The links set to the member apply to the new proxy from the start (and
// SetLink sets both while the move is in progress), so partitions keep
// cutting the member wherever it is reached. A call whose outcome was
// unknown is retried (moving a member to the address it has is a no-op);
// when the retries fail, the leader's Status decides whether the move took
// effect. Restart then starts the member with the new --advertise-peer
// (and its --initial-cluster entry changed). It returns the old and the new
// address.
func (c *Cluster) Move(ctx context.Context, i int, timeout time.Duration) (from, to string, err error) {
	m := c.members[i]
	c.mu.Lock()
	st, from := m.state, m.proxyAddr
	c.mu.Unlock()
	if st != Stopped {
		return "", "", fmt.Errorf("%s is %s, not stopped", m.Name, st)
	}
	proxy, err := faultnet.Listen(net.JoinHostPort(m.IP, "0"), m.PeerAddr)
	if err != nil {
		return "", "", fmt.Errorf("new proxy for %s: %w", m.Name, err)
	}
	to = proxy.Addr()
	c.mu.Lock()
	for l, link := range c.links {
		if l[1] == i {
			proxy.Set(c.members[l[0]].IP, link)
		}
	}
	m.moving = proxy
	c.mu.Unlock()
	err = c.Do(ctx, timeout, 5*time.Second, func(ctx context.Context, cl *client.Client) error {
		_, err := cl.UpdateMember(ctx, m.Name, to)
		return err
	})
	if err != nil {
		if addr, _, lerr := c.listed(ctx, i); lerr == nil && addr == to {
			err = nil
		}
	}
	c.mu.Lock()
	m.moving = nil
	old := proxy
	if err == nil {
		old, m.proxy, m.proxyAddr = m.proxy, proxy, to
	}
	c.mu.Unlock()
	old.Close()
	if err != nil {
		return "", "", fmt.Errorf("move %s to %s: %w", m.Name, to, err)
	}
	return from, to, nil
}

// Remove removes member i from the cluster, then kills its process. A
// removal whose outcome was unknown is retried; "not found" then means it
// took effect.
func (c *Cluster) Remove(ctx context.Context, i int, timeout time.Duration) error {
	m := c.members[i]
	c.mu.Lock()
	st := m.state
	c.mu.Unlock()
	if st == Removed {
		return fmt.Errorf("%s is already removed", m.Name)
	}
	err := c.Do(ctx, timeout, 5*time.Second, func(ctx context.Context, cl *client.Client) error {
		err := cl.RemoveMember(ctx, m.Name)
		if errors.Is(err, client.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("remove %s: %w", m.Name, err)
	}
	c.mu.Lock()
	p := m.proc
	c.mu.Unlock()
	if p != nil {
		p.kill()
	}
	c.mu.Lock()
	m.state = Removed
	c.mu.Unlock()
	return nil
}

// Readd adds a removed member back: the cluster gives it a new ID, and it
// starts with an empty data dir and --join. It returns once the process
// answers; Promoted reports when it became a voter.
func (c *Cluster) Readd(ctx context.Context, i int, timeout time.Duration) error {
	m := c.members[i]
	c.mu.Lock()
	st := m.state
	c.mu.Unlock()
	if st != Removed {
		return fmt.Errorf("%s is %s, not removed", m.Name, st)
	}
	c.mu.Lock()
	addr := m.proxyAddr
	c.mu.Unlock()
	err := c.Do(ctx, timeout, 5*time.Second, func(ctx context.Context, cl *client.Client) error {
		_, err := cl.AddMember(ctx, m.Name, addr)
		if errors.Is(err, client.ErrMemberExists) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("add %s: %w", m.Name, err)
	}
	c.mu.Lock()
	m.incarnation++
	m.joined = true
	c.mu.Unlock()
	if err := c.startProcess(m); err != nil {
		return err
	}
	return c.waitHealthy(ctx, m, 30*time.Second)
}

// ErrNotMember is returned by Promoted for a member the leader does not
// list at all: its removal went through (even if the call reported an
// error, as when the leader removed itself and stepped down).
var ErrNotMember = errors.New("not a member of the configuration")

// Promoted reports whether member i is a voter of the cluster, and records
// its current Raft ID. A member the leader lists at another peer address
// than the one it advertises (a Move whose outcome was misjudged) is an
// error: the leader does not reach it.
func (c *Cluster) Promoted(ctx context.Context, i int) (bool, error) {
	addr, voter, err := c.listed(ctx, i)
	if err != nil {
		return false, err
	}
	if want := c.Info(i).ProxyAddr; addr != want {
		return false, fmt.Errorf("the leader lists %s at %s, not at %s", c.members[i].Name, addr, want)
	}
	return voter, nil
}

// listed returns the peer address at which the leader lists member i and
// whether it is a voter, and records its current Raft ID.
func (c *Cluster) listed(ctx context.Context, i int) (addr string, voter bool, err error) {
	m := c.members[i]
	for _, s := range c.Statuses(ctx) {
		if s.Err != nil || s.Role != "leader" {
			continue
		}
		for _, mb := range s.raw.GetMembers() {
			if mb.GetName() != m.Name {
				continue
			}
			c.mu.Lock()
			m.id = mb.GetId()
			c.mu.Unlock()
			return mb.GetPeerAddr(), mb.GetRole() != "learner", nil
		}
		return "", false, ErrNotMember
	}
	return "", false, errors.New("no leader answers")
}

// Rejoined reports nil once member i takes part again at its advertised
// peer address: the leader lists it there as a voter, and the member
// itself advertises that address, follows that leader and has applied
// every entry the leader had committed when asked.
func (c *Cluster) Rejoined(ctx context.Context, i int) error {
	m := c.members[i]
	want := c.Info(i).ProxyAddr
	sts := c.Statuses(ctx)
	var leader *Status
	for k := range sts {
		if sts[k].Err == nil && sts[k].Role == "leader" {
			leader = &sts[k]
		}
	}
	if leader == nil {
		return errors.New("no leader answers")
	}
	var listed bool
	for _, mb := range leader.raw.GetMembers() {
		if mb.GetName() != m.Name {
			continue
		}
		if mb.GetPeerAddr() != want || mb.GetRole() == "learner" {
			return fmt.Errorf("the leader lists %s as %s at %s, not as a voter at %s", m.Name, mb.GetRole(), mb.GetPeerAddr(), want)
		}
		listed = true
	}
	if !listed {
		return ErrNotMember
	}
	if sts[i].Err != nil {
		return fmt.Errorf("%s does not answer: %w", m.Name, sts[i].Err)
	}
	// Asked after the leader, the member has applied what the leader had
	// committed if it takes part.
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	self, err := c.admin.StatusOf(sctx, m.ClientAddr)
	switch {
	case err != nil:
		return fmt.Errorf("%s does not answer: %w", m.Name, err)
	case self.GetSelf().GetPeerAddr() != want:
		return fmt.Errorf("%s advertises %s, not %s", m.Name, self.GetSelf().GetPeerAddr(), want)
	case self.GetLeaderId() != leader.ID:
		return fmt.Errorf("%s follows %q, not the leader %s", m.Name, self.GetLeaderId(), leader.ID)
	case self.GetAppliedIndex() < leader.raw.GetCommitIndex():
		return fmt.Errorf("%s applied %d of the leader's %d committed entries", m.Name, self.GetAppliedIndex(), leader.raw.GetCommitIndex())
	}
	return nil
}

// MarkRemoved records that member i is out of the configuration although
// Remove did not report it, and stops its process, so that Readd can bring
// it back.
func (c *Cluster) MarkRemoved(i int) {
	m := c.members[i]
	c.mu.Lock()
	p := m.proc
	c.mu.Unlock()
	if p != nil {
		p.kill()
	}
	c.mu.Lock()
	m.state = Removed
	c.mu.Unlock()
}

// Status is one member's view, as answered by it.
type Status struct {
	Index    int
	Name     string
	ID       string
	Role     string
	Leader   string // leader ID
	Term     uint64
	Applied  uint64
	Ready    bool
	Members  int
	Err      error
	Learners int
	// RulesVersion is the rules version the member's state machine
	// applies entries by.
	RulesVersion uint32
	// ClusterID is the cluster ID the member has applied, "" before.
	ClusterID string
	raw       *client.Status
}

// Statuses asks every running member for its view, concurrently.
func (c *Cluster) Statuses(ctx context.Context) []Status {
	out := make([]Status, len(c.members))
	var wg sync.WaitGroup
	for i, m := range c.members {
		out[i] = Status{Index: i, Name: m.Name}
		c.mu.Lock()
		st := m.state
		c.mu.Unlock()
		if st != Running {
			out[i].Err = fmt.Errorf("%s", st)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			s, err := c.admin.StatusOf(sctx, m.ClientAddr)
			if err != nil {
				out[i].Err = err
				return
			}
			out[i].raw = s
			out[i].ID = s.GetSelf().GetId()
			out[i].Role = s.GetSelf().GetRole()
			out[i].Leader = s.GetLeaderId()
			out[i].Term = s.GetTerm()
			out[i].Applied = s.GetAppliedIndex()
			out[i].Members = len(s.GetMembers())
			out[i].RulesVersion = s.GetRulesVersion()
			out[i].ClusterID = s.GetClusterId()
			for _, mb := range s.GetMembers() {
				if mb.GetRole() == "learner" {
					out[i].Learners++
				}
			}
			_, rerr := c.get(sctx, m, "/readyz")
			out[i].Ready = rerr == nil
		}()
	}
	wg.Wait()
	return out
}

// Leader returns the index of the member that leads in the highest term
// any running member reports, or -1.
func (c *Cluster) Leader(ctx context.Context) int {
	best, term := -1, uint64(0)
	for _, s := range c.Statuses(ctx) {
		if s.Err == nil && s.Role == "leader" && s.Term >= term {
			best, term = s.Index, s.Term
		}
	}
	return best
}

// WaitLeader waits until the running members agree on one leader that is
// ready, and returns its index.
func (c *Cluster) WaitLeader(ctx context.Context, timeout time.Duration) (int, error) {
	leader := -1
	err := poll(ctx, timeout, 100*time.Millisecond, func() error {
		sts := c.Statuses(ctx)
		if len(sts) == 0 {
			return errors.New("no member answers")
		}
		leader = -1
		var leaderID string
		for _, s := range sts {
			if s.Err != nil {
				continue
			}
			if s.Leader == "" {
				return fmt.Errorf("%s knows no leader", s.Name)
			}
			if leaderID != "" && s.Leader != leaderID {
				return fmt.Errorf("members disagree on the leader: %s and %s", leaderID, s.Leader)
			}
			leaderID = s.Leader
			if s.Role == "leader" {
				if !s.Ready {
					return fmt.Errorf("leader %s is not ready", s.Name)
				}
				leader = s.Index
			}
		}
		if leader < 0 {
			return fmt.Errorf("leader %q is not among the running members", leaderID)
		}
		return nil
	})
	return leader, err
}

// WaitRulesVersion waits until every running member reports that its state
// machine applies rules version v or later: the leader raises the
// cluster's version once every member reports that its build applies it,
// and every entry proposed after that applies by those rules. The error
// names the members still below v, with the version each reports.
func (c *Cluster) WaitRulesVersion(ctx context.Context, v uint32, timeout time.Duration) error {
	return poll(ctx, timeout, 200*time.Millisecond, func() error {
		var behind []string
		for _, s := range c.Statuses(ctx) {
			switch {
			case s.Err != nil:
				behind = append(behind, fmt.Sprintf("%s (no status: %v)", s.Name, s.Err))
			case s.RulesVersion < v:
				behind = append(behind, fmt.Sprintf("%s at %d", s.Name, s.RulesVersion))
			}
		}
		if len(behind) > 0 {
			return fmt.Errorf("members below rules version %d: %s", v, strings.Join(behind, ", "))
		}
		return nil
	})
}

// WaitClusterID waits until every running member reports one cluster ID
// and returns it. The error names the members without one, and every ID
// reported when they disagree (which they never may).
func (c *Cluster) WaitClusterID(ctx context.Context, timeout time.Duration) (string, error) {
	var id string
	err := poll(ctx, timeout, 200*time.Millisecond, func() error {
		var without []string
		seen := map[string][]string{}
		for _, s := range c.Statuses(ctx) {
			switch {
			case s.Err != nil:
				without = append(without, fmt.Sprintf("%s (no status: %v)", s.Name, s.Err))
			case s.ClusterID == "":
				without = append(without, s.Name)
			default:
				seen[s.ClusterID] = append(seen[s.ClusterID], s.Name)
			}
		}
		if len(seen) > 1 {
			return fmt.Errorf("members report different cluster IDs: %v", seen)
		}
		if len(without) > 0 {
			return fmt.Errorf("members without a cluster ID: %s", strings.Join(without, ", "))
		}
		for k := range seen {
			id = k
		}
		return nil
	})
	return id, err
}

// Hash is one member's applied index and state machine hash.
type Hash struct {
	Member  string `json:"member"`
	Applied uint64 `json:"applied_index"`
	Hash    string `json:"hash"`
}

// Hashes reads /debug/hash from every running member.
func (c *Cluster) Hashes(ctx context.Context) ([]Hash, error) {
	var out []Hash
	for _, m := range c.members {
		c.mu.Lock()
		st := m.state
		c.mu.Unlock()
		if st != Running {
			continue
		}
		b, err := c.get(ctx, m, "/debug/hash")
		if err != nil {
			return out, fmt.Errorf("%s: %w", m.Name, err)
		}
		var h Hash
		if err := json.Unmarshal(b, &h); err != nil {
			return out, fmt.Errorf("%s: /debug/hash: %w", m.Name, err)
		}
		out = append(out, h)
	}
	return out, nil
}

// WaitConverged waits until every running member reports the same applied
// index and hash, and returns the last readings.
func (c *Cluster) WaitConverged(ctx context.Context, timeout time.Duration) ([]Hash, error) {
	var last []Hash
	err := poll(ctx, timeout, 100*time.Millisecond, func() error {
		hs, err := c.Hashes(ctx)
		last = hs
		if err != nil {
			return err
		}
		if len(hs) != len(c.members) {
			return fmt.Errorf("only %d of %d members answer", len(hs), len(c.members))
		}
		for _, h := range hs[1:] {
			if h.Applied != hs[0].Applied || h.Hash != hs[0].Hash {
				return fmt.Errorf("members differ: %+v", hs)
			}
		}
		return nil
	})
	return last, err
}

type permanentErr struct{ error }

func permanent(err error) error { return permanentErr{err} }

// poll calls f every interval until it returns nil, returns a permanent
// error, the timeout passes or ctx ends; it returns f's last error then.
func poll(ctx context.Context, timeout, interval time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		err := f()
		if err == nil {
			return nil
		}
		var p permanentErr
		if errors.As(err, &p) {
			return p.error
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// Poll is the package's polling helper for callers: it calls f every
// interval until it returns nil or timeout passes.
func Poll(ctx context.Context, timeout, interval time.Duration, f func() error) error {
	return poll(ctx, timeout, interval, f)
}
