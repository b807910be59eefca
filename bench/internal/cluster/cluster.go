// Package cluster runs a throwaway cluster of server processes on loopback:
// fresh ports, fresh data directories, one process per member.
package cluster

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Member is one member of a cluster.
type Member struct {
	// Name is n1, n2, ...
	Name string
	// ClientAddr and PeerAddr are host:port on loopback.
	ClientAddr string
	PeerAddr   string
	// DataDir is the member's own fresh directory.
	DataDir string
}

// Flavor says how to run the members of one system.
type Flavor interface {
	// Args returns the command line of member m in a cluster of all.
	Args(m Member, all []Member) []string
	// ReadyPath is the HTTP path on a member's client address that answers
	// 200 once the member is part of a cluster with a leader.
	ReadyPath() string
}

// Cluster is a running cluster.
type Cluster struct {
	root    string
	members []Member
	procs   []*process
}

// Start launches n members of binary bin, as flavor says, under a fresh
// temporary directory, and returns once every member reports ready or
// readyTimeout passed. On error nothing is left running.
func Start(ctx context.Context, bin string, flavor Flavor, n int, readyTimeout time.Duration) (*Cluster, error) {
	root, err := os.MkdirTemp("", "kvbench-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{root: root}
	if c.members, err = newMembers(root, n); err != nil {
		c.Stop()
		return nil, err
	}
	for _, m := range c.members {
		p, err := startProcess(bin, flavor.Args(m, c.members), filepath.Join(root, m.Name+".log"))
		if err != nil {
			c.Stop()
			return nil, fmt.Errorf("start %s: %w", m.Name, err)
		}
		c.procs = append(c.procs, p)
	}
	rctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := c.waitReady(rctx, flavor.ReadyPath()); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// Run starts a cluster as Start does, runs f on it and stops it, deleting
// its data, whatever f returns. It returns f's error, else Stop's, else
// ctx's.
func Run(ctx context.Context, bin string, flavor Flavor, n int, readyTimeout time.Duration, f func(*Cluster) error) (err error) {
	c, err := Start(ctx, bin, flavor, n, readyTimeout)
	if err != nil {
		return err
	}
	defer func() {
		if serr := c.Stop(); err == nil {
			err = serr
		}
	}()
	if err := f(c); err != nil {
		return err
	}
	return ctx.Err()
}

// newMembers names n members and gives each two free loopback ports and a
// data directory under root.
func newMembers(root string, n int) ([]Member, error) {
	addrs, err := freeAddrs(2 * n)
	if err != nil {
		return nil, err
	}
	members := make([]Member, n)
	for i := range members {
		name := fmt.Sprintf("n%d", i+1)
		dir := filepath.Join(root, name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			return nil, err
		}
		members[i] = Member{Name: name, ClientAddr: addrs[2*i], PeerAddr: addrs[2*i+1], DataDir: dir}
	}
	return members, nil
}

// freeAddrs returns n distinct loopback addresses that were free a moment
// ago: all are held open together so that none is handed out twice.
func freeAddrs(n int) ([]string, error) {
	addrs := make([]string, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

// Members returns the cluster's members.
func (c *Cluster) Members() []Member { return c.members }

// ClientAddrs returns every member's client address.
func (c *Cluster) ClientAddrs() []string {
	out := make([]string, len(c.members))
	for i, m := range c.members {
		out[i] = m.ClientAddr
	}
	return out
}

// CPUTime returns the CPU time (user and system) the members have used so
// far, and false where the platform does not expose it.
func (c *Cluster) CPUTime() (time.Duration, bool) {
	var total time.Duration
	for _, p := range c.procs {
		d, ok := p.cpuTime()
		if !ok {
			return 0, false
		}
		total += d
	}
	return total, true
}

// waitReady polls every member's ready path until all answer 200.
func (c *Cluster) waitReady(ctx context.Context, path string) error {
	hc := &http.Client{Timeout: time.Second}
	for i, m := range c.members {
		url := "http://" + m.ClientAddr + path
		for !answers200(ctx, hc, url) {
			if err := c.procs[i].exitErr(); err != nil {
				return fmt.Errorf("%s exited before it was ready: %w\n%s", m.Name, err, c.procs[i].logTail())
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s not ready at %s: %w\n%s", m.Name, url, ctx.Err(), c.procs[i].logTail())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func answers200(ctx context.Context, hc *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Stop terminates every member (SIGTERM, then SIGKILL after 10s) and
// deletes the cluster's directory with all data.
func (c *Cluster) Stop() error {
	var wg sync.WaitGroup
	for _, p := range c.procs {
		wg.Go(func() { p.stop(10 * time.Second) })
	}
	wg.Wait()
	return os.RemoveAll(c.root)
}
