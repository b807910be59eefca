package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	concordv1 "github.com/concord-dev/concord/api/concord/v1"
	"github.com/concord-dev/concord/api/concord/v1/concordv1connect"
	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/internal/config"
	"github.com/concord-dev/concord/internal/daemon"
	"github.com/concord-dev/concord/internal/errs"
	"github.com/concord-dev/concord/internal/faultnet"
	"github.com/concord-dev/concord/internal/member"
	"github.com/concord-dev/concord/internal/raftnode"
	"github.com/concord-dev/concord/internal/server"
	"github.com/concord-dev/concord/internal/testcluster"
)

// A new member whose first start failed once it had resolved its identity
// (here Raft's dir cannot be created: a file is in its place) left
// member.json behind. The next start, with the cause removed, found
// member.json, took the member for a restarted one, skipped the bootstrap
// and ran with an empty Raft configuration: it never elected a leader.
// member.json is now written only once Raft has opened and bootstrapped,
// so the retry bootstraps and leads.
func TestFailedFirstStartCanBeRetried(t *testing.T) {
	ip := "127.0.0.1"
	cfg := config.Server{
		Name:         "solo",
		DataDir:      filepath.Join(t.TempDir(), "solo"),
		ListenClient: fmt.Sprintf("%s:%d", ip, testcluster.FreePort(t, ip)),
		ListenPeer:   fmt.Sprintf("%s:%d", ip, testcluster.FreePort(t, ip)),
		Raft:         config.Raft{HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond},
	}
	require.NoError(t, os.MkdirAll(cfg.DataDir, 0o750))
	raftDir := filepath.Join(cfg.DataDir, "raft")
	require.NoError(t, os.WriteFile(raftDir, nil, 0o640))
	_, err := daemon.Start(context.Background(), cfg, daemon.Options{})
	require.Error(t, err, "Raft's dir is a file")
	t.Logf("first start: %v", err)
	require.NoFileExists(t, filepath.Join(cfg.DataDir, "member.json"), "a failed start stored the member's identity")

	require.NoError(t, os.Remove(raftDir))
	d, err := daemon.Start(context.Background(), cfg, daemon.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { d.Kill() })
	require.Eventually(t, func() bool { return d.Server().Ready() }, 10*time.Second, 50*time.Millisecond,
		"the member never got a leader after a failed first start")
	require.FileExists(t, filepath.Join(cfg.DataDir, "member.json"))
}

// A restore whose Raft seed failed (a full disk, a store that would not
// open) had already stored member.json: the corrected command was refused
// and `concord server` took the dir for a restarted member. SeedMember now
// stores the identity last and removes what a failed seed created.
func TestFailedSeedLeavesTheDataDirNew(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "r1")
	err := server.SeedMember(dir, "r1", server.Seed{}, func(raftDir string) error {
		require.NoError(t, os.MkdirAll(raftDir, 0o750))
		require.NoError(t, os.WriteFile(filepath.Join(raftDir, "partial"), []byte("x"), 0o640))
		return errors.New("disk full")
	})
	require.ErrorContains(t, err, "disk full")
	require.NoDirExists(t, dir)

	// A data dir the operator made stays; only what the seed wrote goes.
	require.NoError(t, os.MkdirAll(dir, 0o750))
	err = server.SeedMember(dir, "r1", server.Seed{}, func(raftDir string) error {
		require.NoError(t, os.MkdirAll(raftDir, 0o750))
		return errors.New("disk full")
	})
	require.Error(t, err)
	require.DirExists(t, dir)
	require.NoDirExists(t, filepath.Join(dir, "raft"))

	require.NoError(t, server.SeedMember(dir, "r1", server.Seed{}, func(raftDir string) error { return os.MkdirAll(raftDir, 0o750) }))
	require.FileExists(t, filepath.Join(dir, "member.json"))
	require.ErrorContains(t, server.SeedMember(dir, "r1", server.Seed{}, func(string) error { return nil }), "already belongs to a member")
}

// Two `cluster add` of one name at once both passed the clash check (each
// read the configuration before either proposed), both picked the same ID,
// and both were told they succeeded: the second AddNonvoter silently moved
// the first learner to its address. The same held for two names at one
// address. Membership changes are now serialised on the leader: exactly
// one of two concurrent adds succeeds, the other is MEMBER_EXISTS.
func TestConcurrentAddsThatClashSucceedOnce(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	ctx := ctxT(t, 30*time.Second)
	srv := c.Members[0].Daemon().Server()
	for round := 0; round < 5; round++ {
		for _, sameName := range []bool{true, false} {
			reqs := make([]*concordv1.AddMemberRequest, 2)
			for i := range reqs {
				if sameName {
					reqs[i] = &concordv1.AddMemberRequest{Name: fmt.Sprintf("x%d", round), PeerAddr: fmt.Sprintf("127.0.1.%d:%d", i+1, 7000+round)}
				} else {
					reqs[i] = &concordv1.AddMemberRequest{Name: fmt.Sprintf("y%d-%d", round, i), PeerAddr: fmt.Sprintf("127.0.2.1:%d", 7000+round)}
				}
			}
			var wg sync.WaitGroup
			results := make([]error, 2)
			for i := range reqs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, results[i] = srv.AddMember(ctx, reqs[i])
				}()
			}
			wg.Wait()
			ok := 0
			for _, err := range results {
				if err == nil {
					ok++
				} else {
					require.ErrorIs(t, err, member.ErrExists)
				}
			}
			if ok != 1 {
				st, err := srv.Status(ctx)
				require.NoError(t, err)
				var listed []string
				for _, m := range st.GetMembers() {
					listed = append(listed, m.GetId()+"@"+m.GetPeerAddr())
				}
				t.Fatalf("%d of two clashing adds %v succeeded (%v); the configuration holds %v", ok, reqs, results, listed)
			}
		}
	}
}

// Handing leadership to a voter that is down failed inside raft with an
// untyped error ("failed to make TimeoutNow RPC to n3: EOF", or
// "leadership transfer timeout"), which reached the client as INTERNAL,
// documented as "a bug: please report it". It is now TRANSFER_FAILED,
// Unavailable.
func TestTransferToADownVoterIsATypedError(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 30*time.Second)
	leader := c.WaitLeader(5 * time.Second)
	down := (leader + 1) % 3
	c.Kill(down)
	_, err := c.Members[leader].Daemon().Server().TransferLeader(ctx, &concordv1.TransferLeaderRequest{Name: c.Members[down].Name})
	require.Error(t, err)
	t.Logf("transfer to a down voter: %v", err)
	require.ErrorIs(t, err, raftnode.ErrTransferFailed)
	info, ok := errs.InfoOf(errs.ToConnect(err))
	require.True(t, ok)
	require.Equal(t, "TRANSFER_FAILED", info.GetReason())
	require.Equal(t, connect.CodeUnavailable, connect.CodeOf(errs.ToConnect(err)))
}

// A transfer answered with the new leader's ID, which the CLI prints
// ("leader is now n2"), but the old leader answered as soon as Raft's
// transfer future completed: the target had started its election and this
// member did not know the winner yet, so the answer was usually empty
// ("leader is now "). It now waits for the new leader's first contact.
func TestTransferLeaderAnswersTheNewLeader(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := ctxT(t, 30*time.Second)
	leader := c.WaitLeader(5 * time.Second)
	target := (leader + 1) % 3
	cl := c.Client()
	got, err := cl.TransferLeader(ctx, c.Members[target].Name)
	require.NoError(t, err)
	require.Equal(t, c.Members[target].Daemon().Server().ID(), got, "a named transfer answers the target")
	require.Equal(t, target, c.WaitNewLeader(leader, 5*time.Second))

	got, err = cl.TransferLeader(ctx, "")
	require.NoError(t, err)
	require.NotEmpty(t, got, "a transfer Raft chose the target of answers who leads now")
	nl := c.WaitNewLeader(target, 5*time.Second)
	require.Equal(t, c.Members[nl].Daemon().Server().ID(), got)
}

// Removing a member that is down, then the leader itself, leaves a working
// three-member cluster under a new leader; a transfer to a name the
// cluster does not know, or to the removed leader, is MEMBER_NOT_FOUND.
// (Checked in a review of operations: it held.)
func TestRemoveADownMemberThenTheLeader(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 5})
	ctx := ctxT(t, 60*time.Second)
	leader := c.WaitLeader(5 * time.Second)
	down := (leader + 1) % 5
	c.Kill(down)
	cl := c.Client()
	require.NoError(t, cl.RemoveMember(ctx, c.Members[down].Name), "removing a member that is down")
	require.NoError(t, cl.RemoveMember(ctx, c.Members[leader].Name), "removing the leader")
	nl := c.WaitNewLeader(leader, 10*time.Second)
	_, err := c.Client(nl).Put(ctx, "after", []byte("v"))
	require.NoError(t, err)
	st, err := c.Client(nl).Status(ctx)
	require.NoError(t, err)
	require.Len(t, st.GetMembers(), 3)
	for _, name := range []string{"nobody", c.Members[leader].Name} {
		_, err = c.Client(nl).TransferLeader(ctx, name)
		require.ErrorIs(t, err, client.ErrNotFound, "transfer to %s", name)
	}
}

// A graceful stop cancels the requests in flight on the member, a write it
// is forwarding to the leader included. A raw gRPC or HTTP client got a bare
// "canceled", a code without a reason that says nothing of whether the
// write was applied. It now gets UNKNOWN_OUTCOME: retry with the same
// request ID. (Draining such a write instead is a known gap: see
// docs/operations.md, Upgrades.)
func TestStopWhileForwardingAWriteAnswersUnknownOutcome(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	leader := c.WaitLeader(5 * time.Second)
	f := (leader + 1) % 3
	c.Members[leader].Proxy.Set(c.Members[f].IP, faultnet.Link{Delay: 700 * time.Millisecond})
	kvc := concordv1connect.NewKVClient(http.DefaultClient, "http://"+c.Members[f].Cfg.ListenClient)
	errc := make(chan error, 1)
	go func() {
		_, err := kvc.Put(context.Background(), connect.NewRequest(&concordv1.PutRequest{Key: []byte("k"), Value: []byte("v"),
			Meta: &concordv1.WriteMeta{ClientId: "drain-test", RequestId: 1}}))
		errc <- err
	}()
	time.Sleep(300 * time.Millisecond)
	c.Stop(f)
	select {
	case err := <-errc:
		if err != nil {
			info, ok := errs.InfoOf(err)
			require.True(t, ok, "an error without a reason: %v", err)
			require.Equal(t, "UNKNOWN_OUTCOME", info.GetReason(), "%v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer")
	}
}
