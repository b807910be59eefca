package server_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/fsm"
	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
	"github.com/concord-dev/concord/internal/peer"
	"github.com/concord-dev/concord/internal/testcluster"
)

// The first leader at rules version 3 names the cluster with a random ID
// that every member applies, that Status reports, and that neither a
// restart nor a new leader changes. Another cluster gets another.
func TestClusterIsNamedOnce(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	ids := map[string]bool{}
	for _, m := range c.Members {
		st, err := m.Daemon().Server().Status(ctx)
		require.NoError(t, err)
		require.True(t, fsm.ValidClusterID(st.GetClusterId()), "member %s reports %q", m.Cfg.Name, st.GetClusterId())
		ids[st.GetClusterId()] = true
	}
	require.Len(t, ids, 1, "every member applied the same ID")
	var id string
	for k := range ids {
		id = k
	}

	old := c.WaitLeader(10 * time.Second)
	c.Stop(old)
	nl := c.WaitNewLeader(old, 20*time.Second)
	_, err := c.Client(nl).Put(ctx, "k", []byte("v"))
	require.NoError(t, err)
	c.Restart(old)
	c.WaitConverged(20 * time.Second)
	for _, m := range c.Members {
		require.Equal(t, id, m.Daemon().Server().FSM().ClusterID(), "member %s after the restart and the new leader", m.Cfg.Name)
	}

	other := testcluster.Start(t, testcluster.Options{Size: 1})
	require.NotEqual(t, id, other.Members[0].Daemon().Server().FSM().ClusterID())
}

// A member of another cluster at an address this cluster's leader
// replicates to (a follower's, retargeted to the other cluster's one
// member) refuses the leader's Raft streams: neither cluster's leader takes
// part in the other's replication. Without the check, a's leader, of the
// higher term, made b's member its follower (this test then fails on b's
// state) and would overwrite its log.
func TestMemberOfAnotherClusterRefusesRaftStreams(t *testing.T) {
	a := testcluster.Start(t, testcluster.Options{})
	b := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 60*time.Second)
	bcl := b.Client()
	_, err := bcl.Put(ctx, "owner", []byte("b"))
	require.NoError(t, err)
	bsrv := b.Members[0].Daemon().Server()
	bBefore, err := bsrv.Status(ctx)
	require.NoError(t, err)

	// Raise a's term above b's, so that a's leader would win b's member
	// over without the check.
	for a.WaitLeader(10*time.Second) >= 0 {
		st, err := a.Members[a.Leader()].Daemon().Server().Status(ctx)
		require.NoError(t, err)
		if st.GetTerm() > bBefore.GetTerm() {
			break
		}
		old := a.Leader()
		a.Stop(old)
		a.WaitNewLeader(old, 20*time.Second)
		a.Restart(old)
	}
	l := a.WaitLeader(10 * time.Second)
	x := (l + 1) % 3

	a.Stop(x)
	a.Members[x].Proxy.Retarget(b.Members[0].Cfg.ListenPeer)
	acl := a.Client(l)
	for i := 0; i < 50; i++ {
		_, err := acl.Put(ctx, fmt.Sprintf("a%d", i), []byte("a"))
		require.NoError(t, err, "a commits with its two other members")
		time.Sleep(20 * time.Millisecond)
	}

	bAfter, err := bsrv.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, "Leader", bAfter.GetState(), "b's member still leads b")
	require.Equal(t, bBefore.GetTerm(), bAfter.GetTerm(), "a's leader did not raise b's term")
	require.Equal(t, bBefore.GetClusterId(), bAfter.GetClusterId())
	got, err := bcl.Get(ctx, "owner")
	require.NoError(t, err)
	require.NotNil(t, got)
	require.Equal(t, "b", string(got.GetValue()), "b's data is b's")
	_, err = bcl.Put(ctx, "still", []byte("b"))
	require.NoError(t, err)

	// a went on committing with its two other members (the Puts above);
	// its term is not asserted: with one member down, a missed heartbeat
	// on a loaded machine may start an election of its own.
	require.Eventually(t, func() bool { return metric(t, b.Members[0], "concord_peer_raft_streams_refused_total") > 0 },
		10*time.Second, 50*time.Millisecond, "b's member refused a's leader")
}

// A member of another cluster that calls this cluster's leader on the peer
// port (as a follower forwards a client's write to the leader it knows,
// here at an address this cluster now uses) is refused before any handler
// runs: its write is not applied here. Before, only Raft streams were
// checked and the forwarded Put landed in this cluster's data. A caller
// that names this cluster's ID, or none yet (a member that has not
// applied the ID), is served.
func TestMemberOfAnotherClusterHasItsCallsRefused(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	addr := c.Members[0].Cfg.ListenPeer
	own := c.Members[0].Daemon().Server().FSM().ClusterID()
	require.True(t, fsm.ValidClusterID(own))
	propose := func(callerID, key string) error {
		m, err := peer.Listen("127.0.0.1:0", nil)
		require.NoError(t, err)
		defer m.Close()
		if callerID != "-" {
			m.SetClusterID(func() string { return callerID }, func() bool { return true }, nil)
		}
		clients := peer.NewClients(m)
		defer clients.Close()
		put := &internalv1.Command{Op: &internalv1.Command_Put{Put: &concordv1.PutRequest{Key: []byte(key), Value: []byte("v")}}}
		_, err = clients.For(addr).Propose(ctx, connect.NewRequest(&internalv1.ProposeRequest{Command: put}))
		return err
	}
	cl := c.Client()
	value := func(key string) *concordv1.KeyValue {
		kv, err := cl.Get(ctx, key)
		if errors.Is(err, client.ErrNotFound) {
			return nil
		}
		require.NoError(t, err)
		return kv
	}

	err := propose(strings.Repeat("f", 32), "foreign")
	require.Error(t, err, "another cluster's forwarded write was served")
	var ce *connect.Error
	require.True(t, errors.As(err, &ce) && ce.Meta().Get("Content-Type") == "", "the connection was closed before any handler answered: %v", err)
	require.Nil(t, value("foreign"), "another cluster's write was applied")
	require.EqualValues(t, 1, metric(t, c.Members[0], "concord_peer_rpc_connections_refused_total"))
	require.Zero(t, metric(t, c.Members[0], "concord_peer_raft_streams_refused_total"), "counted under its own kind")

	require.NoError(t, propose(own, "named"), "a caller of this cluster is served")
	require.NotNil(t, value("named"))
	require.NoError(t, propose("-", "unnamed"), "a caller that knows no ID yet is served")
	require.NotNil(t, value("unnamed"))
	require.EqualValues(t, 1, metric(t, c.Members[0], "concord_peer_rpc_connections_refused_total"))
}

// A member stores the cluster ID it applied (member.json) and, restarted,
// names it from its first Raft stream: here, cut off from its peers, it has
// applied nothing of its log again, and still refuses a Raft stream that
// names another cluster ID. Before, a restarted member named none until it
// had applied its log, and took any cluster's streams meanwhile.
func TestRestartedMemberNamesItsClusterBeforeApplying(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	x := (c.WaitLeader(10*time.Second) + 1) % 3
	srv := c.Members[x].Daemon().Server()
	id := srv.FSM().ClusterID()
	require.True(t, fsm.ValidClusterID(id))
	stored := func() string {
		b, err := os.ReadFile(filepath.Join(c.Members[x].Cfg.DataDir, "member.json"))
		require.NoError(t, err)
		var m struct {
			ClusterID string `json:"cluster_id"`
		}
		require.NoError(t, json.Unmarshal(b, &m))
		return m.ClusterID
	}
	require.Eventually(t, func() bool { return stored() == id }, 10*time.Second, 20*time.Millisecond, "member.json stores the cluster ID")

	c.Isolate(x)
	c.Stop(x)
	c.Restart(x)
	srv = c.Members[x].Daemon().Server()
	require.Empty(t, srv.FSM().ClusterID(), "cut off, the member has applied nothing of its log again")

	other := strings.Repeat("f", 32)
	m, err := peer.Listen("127.0.0.1:0", nil)
	require.NoError(t, err)
	defer m.Close()
	m.SetClusterID(func() string { return other }, nil, nil)
	conn, err := m.Raft().DialTimeout(c.Members[x].Cfg.ListenPeer, time.Second)
	require.NoError(t, err)
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	require.Error(t, err)
	require.Eventually(t, func() bool { return metric(t, c.Members[x], "concord_peer_raft_streams_refused_total") == 1 },
		5*time.Second, 20*time.Millisecond, "the restarted member refused the stream of another cluster")

	c.Heal()
	require.Eventually(t, func() bool { return srv.FSM().ClusterID() == id }, 20*time.Second, 20*time.Millisecond)
	c.WaitConverged(20 * time.Second)
}
