// Package e2e runs the concord binary as separate processes and checks what
// a user relies on: acknowledged writes survive kill -9 of the leader and of
// every member, and the CLI's JSON output is stable.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/client"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "concord-e2e-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "concord")
	build := exec.Command("go", "build", "-o", binary, "../../cmd/concord")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building concord:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type proc struct {
	name, ip, client, peer, dir string
	args                        []string
	cmd                         *exec.Cmd
	log                         *os.File
}

type cluster struct {
	t     *testing.T
	procs []*proc
}

func freePort(t *testing.T, ip string) string {
	ln, err := net.Listen("tcp", ip+":0")
	require.NoError(t, err)
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

func startCluster(t *testing.T, n int, extra ...string) *cluster {
	c := &cluster{t: t}
	base := t.TempDir()
	var initial []string
	for i := 1; i <= n; i++ {
		ip := fmt.Sprintf("127.0.0.%d", i)
		p := &proc{name: fmt.Sprintf("n%d", i), ip: ip, dir: filepath.Join(base, fmt.Sprintf("n%d", i))}
		p.client = ip + ":" + freePort(t, ip)
		p.peer = ip + ":" + freePort(t, ip)
		initial = append(initial, p.name+"="+p.peer)
		c.procs = append(c.procs, p)
	}
	for _, p := range c.procs {
		p.args = []string{"server", "--name", p.name, "--data-dir", p.dir, "--listen-client", p.client,
			"--listen-peer", p.peer, "--initial-cluster", strings.Join(initial, ","),
			"--heartbeat-timeout", "300ms", "--election-timeout", "300ms", "--log-format", "json"}
		p.args = append(p.args, extra...)
		c.start(p)
	}
	t.Cleanup(func() {
		for _, p := range c.procs {
			c.kill(p)
		}
	})
	return c
}

func (c *cluster) start(p *proc) {
	f, err := os.OpenFile(p.dir+".log", os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	require.NoError(c.t, err)
	p.log = f
	p.cmd = exec.Command(binary, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	require.NoError(c.t, p.cmd.Start())
}

func (c *cluster) kill(p *proc) {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	p.cmd = nil
	p.log.Close()
}

func (c *cluster) endpoints(except ...*proc) []string {
	var out []string
outer:
	for _, p := range c.procs {
		for _, e := range except {
			if p == e {
				continue outer
			}
		}
		out = append(out, p.client)
	}
	return out
}

// leader returns the process every reachable member names as leader.
func (c *cluster) leader(cl *client.Client) *proc {
	var leader *proc
	require.Eventually(c.t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := cl.Status(ctx)
		if err != nil || st.GetLeader() == "" {
			return false
		}
		for _, p := range c.procs {
			if p.name == st.GetLeader() && p.cmd != nil {
				leader = p
				return true
			}
		}
		return false
	}, 20*time.Second, 50*time.Millisecond)
	return leader
}

func newClient(t *testing.T, endpoints []string) *client.Client {
	var cl *client.Client
	require.Eventually(t, func() bool {
		var err error
		cl, err = client.New(context.Background(), client.Config{Endpoints: endpoints, DialTimeout: 2 * time.Second})
		return err == nil
	}, 30*time.Second, 100*time.Millisecond)
	t.Cleanup(func() { cl.Close() })
	return cl
}

func TestKillLeaderKeepsEveryAcknowledgedWrite(t *testing.T) {
	for _, store := range []string{"bolt", "wal"} {
		t.Run(store, func(t *testing.T) { killLeaderKeepsEveryAcknowledgedWrite(t, store) })
	}
}

func killLeaderKeepsEveryAcknowledgedWrite(t *testing.T, store string) {
	c := startCluster(t, 3, "--raft-log-store", store)
	cl := newClient(t, c.endpoints())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	acked := map[string]uint64{}
	write := func(from, to int) {
		for i := from; i < to; i++ {
			key := fmt.Sprintf("e2e/%04d", i)
			res, err := cl.Put(ctx, key, []byte(key))
			require.NoError(t, err)
			acked[key] = res.Revision
		}
	}
	write(0, 200)
	old := c.leader(cl)
	c.kill(old)

	survivors := newClient(t, c.endpoints(old))
	newLeader := c.leader(survivors)
	require.NotEqual(t, old.name, newLeader.name)
	write(200, 300)
	for key, rev := range acked {
		kv, err := survivors.Get(ctx, key)
		require.NoError(t, err, "acknowledged write %s lost", key)
		require.Equal(t, rev, kv.GetModRevision())
	}

	// kill -9 every member, restart them all: nothing acknowledged is lost.
	for _, p := range c.procs {
		c.kill(p)
	}
	for _, p := range c.procs {
		c.start(p)
	}
	again := newClient(t, c.endpoints())
	c.leader(again)
	res, err := again.Range(ctx, "e2e/", client.WithPrefix(), client.WithCountOnly())
	require.NoError(t, err)
	require.EqualValues(t, len(acked), res.Count)

	// Every member converges on one state.
	require.Eventually(t, func() bool {
		var first string
		for _, p := range c.procs {
			resp, err := http.Get("http://" + p.client + "/debug/hash")
			if err != nil {
				return false
			}
			var h struct {
				AppliedIndex uint64 `json:"applied_index"`
				Hash         string `json:"hash"`
			}
			err = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if err != nil {
				return false
			}
			got := fmt.Sprint(h.AppliedIndex, h.Hash)
			if first == "" {
				first = got
			} else if got != first {
				return false
			}
		}
		return true
	}, 20*time.Second, 100*time.Millisecond)
}

func run(t *testing.T, args ...string) (string, int) {
	out, err := exec.Command(binary, args...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return string(out), code
}

func TestCLI(t *testing.T) {
	c := startCluster(t, 3)
	newClient(t, c.endpoints())
	eps := "--endpoints=" + strings.Join(c.endpoints(), ",")

	out, code := run(t, "kv", "put", "cli/a", "1", eps)
	require.Zero(t, code, out)
	out, code = run(t, "kv", "get", "cli/a", eps, "--json")
	require.Zero(t, code, out)
	var kv map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &kv))
	require.Equal(t, "cli/a", kv["key"])
	require.Equal(t, "1", kv["value"])

	out, code = run(t, "kv", "get", "cli/missing", eps)
	require.Equal(t, 1, code)
	require.Contains(t, out, "not found")

	out, code = run(t, "kv", "add", "cli/stock", "--min", "0", eps, "--", "-1")
	require.Equal(t, 3, code, "an out-of-bounds add exits 3: %s", out)

	out, code = run(t, "cluster", "status", eps, "--json")
	require.Zero(t, code, out)
	var st struct {
		Leader  string `json:"leader"`
		Members []struct {
			Name       string `json:"name"`
			PeerAddr   string `json:"peer_addr"`
			ClientAddr string `json:"client_addr"`
			Role       string `json:"role"`
		} `json:"members"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	require.NotEmpty(t, st.Leader)
	require.Len(t, st.Members, 3)
	roles := map[string]int{}
	for _, m := range st.Members {
		require.NotEmpty(t, m.Name)
		require.NotEmpty(t, m.PeerAddr)
		roles[m.Role]++
	}
	require.Equal(t, map[string]int{"leader": 1, "follower": 2}, roles)
	require.Eventually(t, func() bool {
		out, _ := run(t, "cluster", "members", eps, "--json")
		return strings.Count(out, `"client_addr": "127.0.0.`) == 3
	}, 10*time.Second, 100*time.Millisecond, "members publish their client addresses")

	// Backup and restore into a new single-member cluster.
	backup := filepath.Join(t.TempDir(), "backup.snap")
	out, code = run(t, "cluster", "snapshot", "save", backup, eps)
	require.Zero(t, code, out)
	dir := filepath.Join(t.TempDir(), "restored")
	ip := "127.0.0.9"
	peer, clientAddr := ip+":"+freePort(t, ip), ip+":"+freePort(t, ip)
	out, code = run(t, "snapshot", "restore", backup, "--name", "r1", "--data-dir", dir, "--initial-cluster", "r1="+peer)
	require.Zero(t, code, out)
	r := &proc{name: "r1", dir: dir, args: []string{"server", "--name", "r1", "--data-dir", dir, "--listen-client", clientAddr,
		"--listen-peer", peer, "--initial-cluster", "r1=" + peer, "--heartbeat-timeout", "300ms", "--election-timeout", "300ms"}}
	c.procs = append(c.procs, r)
	c.start(r)
	rc := newClient(t, []string{clientAddr})
	require.Eventually(t, func() bool {
		kv, err := rc.Get(context.Background(), "cli/a")
		return err == nil && string(kv.GetValue()) == "1"
	}, 20*time.Second, 100*time.Millisecond, "the restored cluster serves the backup's keys")
	// By default the restored cluster's revisions (and lock tokens) start a
	// billion past the backup's, above what the old cluster went on to use.
	res, err := rc.Put(context.Background(), "cli/after-restore", []byte("x"))
	require.NoError(t, err)
	require.Greater(t, res.Revision, uint64(1_000_000_000), "snapshot restore bumps the index by default")
}
