package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/concord-dev/concord/client"
)

// impostorKey is the key an impostor is given before it impersonates a
// member, and must still hold, unchanged, when it is stopped.
const impostorKey = "robustness/impostor"

// Impostor is a one-member cluster of its own, started on a member's IP
// under the member's Raft ID (a fresh cluster takes its member's name as
// ID), with a data dir and ports of its own. Impersonate puts it at the
// member's advertised peer address: what an operator does who rebuilds
// a cluster at the addresses of a running one, or starts a member on
// another cluster's data dir. The cluster's members must refuse its Raft
// streams, and it theirs (peer.Mux, by the cluster ID): neither takes part
// in the other's elections or replication.
type Impostor struct {
	Name       string
	ClientAddr string
	PeerAddr   string
	// Before is the impostor's status once it led and held its key.
	Before *client.Status

	proc  *process
	cl    *client.Client
	httpc *http.Client
	value string
}

// StartImpostor starts an impostor of member i and waits until it leads
// its own cluster, has named it, and holds its key.
func (c *Cluster) StartImpostor(ctx context.Context, i int) (*Impostor, error) {
	m := c.members[i]
	c.mu.Lock()
	id, inc := m.id, m.incarnation
	c.mu.Unlock()
	cport, err := freePort(m.IP)
	if err != nil {
		return nil, err
	}
	pport, err := freePort(m.IP)
	if err != nil {
		return nil, err
	}
	imp := &Impostor{
		Name:       id,
		ClientAddr: net.JoinHostPort(m.IP, strconv.Itoa(cport)),
		PeerAddr:   net.JoinHostPort(m.IP, strconv.Itoa(pport)),
		httpc:      &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		value:      fmt.Sprintf("impostor of %s.%d", m.Name, inc),
	}
	dir := filepath.Join(c.opts.Dir, "data", fmt.Sprintf("%s.%d.impostor", m.Name, inc))
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	args := []string{"server",
		"--name", id,
		"--data-dir", dir,
		"--listen-client", imp.ClientAddr,
		"--listen-peer", imp.PeerAddr,
		"--initial-cluster", id + "=" + imp.PeerAddr,
		"--heartbeat-timeout", c.opts.HeartbeatTimeout.String(),
		"--election-timeout", c.opts.ElectionTimeout.String(),
		"--shutdown-timeout", "5s",
		"--log-format", "json",
	}
	logf, err := os.OpenFile(filepath.Join(c.opts.Dir, "logs", m.Name+".impostor.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logf, "=== %s: starting an impostor of %s (ID %s): %s\n", time.Now().Format(time.RFC3339Nano), m.Name, id, strings.Join(args, " "))
	cmd := exec.Command(c.opts.Binary, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := c.spawner.start(cmd); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start an impostor of %s: %w", m.Name, err)
	}
	imp.proc = &process{cmd: cmd, log: logf, exited: make(chan struct{})}
	go imp.proc.wait()
	if err := imp.ready(ctx); err != nil {
		imp.Stop()
		return nil, err
	}
	return imp, nil
}

// ready waits until the impostor leads, has named its cluster and holds its
// key, and records its status then.
func (imp *Impostor) ready(ctx context.Context) error {
	cl, err := client.New(ctx, client.Config{Endpoints: []string{imp.ClientAddr}, DialTimeout: 20 * time.Second, RetryTimeout: 10 * time.Second})
	if err != nil {
		return fmt.Errorf("impostor client: %w", err)
	}
	imp.cl = cl
	err = poll(ctx, 30*time.Second, 100*time.Millisecond, func() error {
		if !imp.proc.alive() {
			return permanent(fmt.Errorf("the impostor exited: %v", imp.proc.exitErr()))
		}
		st, err := imp.status(ctx)
		if err != nil {
			return err
		}
		if st.GetState() != "Leader" || st.GetClusterId() == "" {
			return fmt.Errorf("the impostor is %s with cluster ID %q", st.GetState(), st.GetClusterId())
		}
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := cl.Put(ctx, impostorKey, []byte(imp.value)); err != nil {
		return fmt.Errorf("the impostor's write: %w", err)
	}
	imp.Before, err = imp.status(ctx)
	return err
}

func (imp *Impostor) status(ctx context.Context) (*client.Status, error) {
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return imp.cl.StatusOf(sctx, imp.ClientAddr)
}

// Check reports how the impostor's cluster changed since Before, nil if it
// did not: it must still lead in the same term, under the same cluster ID,
// with its one member, and hold its key. A member of the other cluster
// that won it over would have raised its term or made it a follower, and
// overwritten its log.
func (imp *Impostor) Check(ctx context.Context) error {
	if !imp.proc.alive() {
		return fmt.Errorf("the impostor exited: %v", imp.proc.exitErr())
	}
	st, err := imp.status(ctx)
	if err != nil {
		return fmt.Errorf("the impostor's status: %w", err)
	}
	var errs []error
	if st.GetState() != "Leader" {
		errs = append(errs, fmt.Errorf("the impostor is %s, not the leader of its own cluster (leader %q)", st.GetState(), st.GetLeaderId()))
	}
	if st.GetTerm() != imp.Before.GetTerm() {
		errs = append(errs, fmt.Errorf("the impostor's term went from %d to %d", imp.Before.GetTerm(), st.GetTerm()))
	}
	if st.GetClusterId() != imp.Before.GetClusterId() {
		errs = append(errs, fmt.Errorf("the impostor's cluster ID went from %s to %s", imp.Before.GetClusterId(), st.GetClusterId()))
	}
	if n := len(st.GetMembers()); n != 1 {
		errs = append(errs, fmt.Errorf("the impostor's cluster lists %d members", n))
	}
	if st.GetState() == "Leader" {
		gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		kv, err := imp.cl.Get(gctx, impostorKey)
		cancel()
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("reading the impostor's key: %w", err))
		case kv == nil || string(kv.GetValue()) != imp.value:
			errs = append(errs, fmt.Errorf("the impostor's key holds %v, not %q", kv, imp.value))
		}
	}
	return errors.Join(errs...)
}

// Refused returns how many Raft connections the impostor refused for
// naming another cluster ID.
func (imp *Impostor) Refused(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+imp.ClientAddr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := imp.httpc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range bytes.Split(body, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("concord_peer_raft_streams_refused_total ")); ok {
			f, err := strconv.ParseFloat(string(v), 64)
			return int(f), err
		}
	}
	return 0, errors.New("no concord_peer_raft_streams_refused_total in the impostor's metrics")
}

// Stop kills the impostor.
func (imp *Impostor) Stop() {
	if imp.cl != nil {
		_ = imp.cl.Close()
	}
	imp.proc.kill()
}

// Impersonate points member i's advertised peer address (its proxy) at the
// impostor's peer port: connections opened from now on reach the impostor
// where they reached i. Kill i first, so that none of its own stay open.
func (c *Cluster) Impersonate(i int, imp *Impostor) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.members[i].proxy.Retarget(imp.PeerAddr)
}

// Unimpersonate points member i's proxy back at i's own peer port.
func (c *Cluster) Unimpersonate(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[i]
	m.proxy.Retarget(m.PeerAddr)
}
