package raftnode

import (
	"context"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type tcpStreams struct{ net.Listener }

func (s tcpStreams) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, timeout)
}

type nopFSM struct{}

func (nopFSM) ApplyBatch(entries []Entry) []any { return make([]any, len(entries)) }
func (nopFSM) Snapshot() (Snapshot, error)      { return nil, io.EOF }
func (nopFSM) Restore(io.Reader) error          { return nil }

// Open creates the NetworkTransport, whose accept loop starts at once,
// before BootstrapCluster and NewRaft can fail, and its error paths closed
// only the stores: the loop outlived the failed start and, once the peer
// listener was closed, logged "failed to accept connection" every second
// for as long as the process ran (an embedding program, a harness that
// retries daemon.Start). Every error path now closes the transport.
func TestFailedOpenClosesItsTransport(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	listeners := func() int {
		buf := make([]byte, 4<<20)
		return strings.Count(string(buf[:runtime.Stack(buf, true)]), "raft.(*NetworkTransport).listen(")
	}
	before := listeners()
	// An election timeout below the heartbeat timeout: raft refuses it at
	// the bootstrap, after the transport started. (config.Validate refuses
	// it for a member; raftnode takes what it is given.)
	_, err = Open(Config{
		ID: "n1", Dir: t.TempDir(), Advertise: ln.Addr().String(), Streams: tcpStreams{ln},
		Bootstrap:        []Server{{ID: "n1", Addr: ln.Addr().String(), Voter: true}},
		HeartbeatTimeout: time.Second, ElectionTimeout: 300 * time.Millisecond,
	}, nopFSM{})
	require.ErrorContains(t, err, "bootstrap")
	require.Eventually(t, func() bool { return listeners() == before }, 2*time.Second, 20*time.Millisecond,
		"the failed Open left its Raft transport running")
}

func openSingle(t *testing.T) *Node {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	n, err := Open(Config{
		ID: "n1", Dir: t.TempDir(), Advertise: ln.Addr().String(), Streams: tcpStreams{ln},
		Bootstrap: []Server{{ID: "n1", Addr: ln.Addr().String(), Voter: true}},
	}, nopFSM{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Shutdown(); ln.Close() })
	require.Eventually(t, n.IsLeader, 10*time.Second, 10*time.Millisecond)
	return n
}

// TestProposeWithin: a deferred proposal waits for the next one and is
// written just before it; its caller's context bounds the wait.
func TestProposeWithin(t *testing.T) {
	n := openSingle(t)
	type outcome struct {
		index uint64
		err   error
	}
	done := make(chan outcome, 1)
	go func() {
		index, _, err := n.ProposeWithin(context.Background(), []byte("deferred"), time.Minute)
		done <- outcome{index, err}
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case o := <-done:
		t.Fatalf("a deferred proposal with nothing after it returned at once: %+v", o)
	default:
	}
	index, _, err := n.Propose(context.Background(), []byte("company"))
	require.NoError(t, err)
	o := <-done
	require.NoError(t, o.err)
	require.Equal(t, index-1, o.index, "the deferred proposal is written just before the one that took it along")

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, _, err = n.ProposeWithin(ctx, []byte("bounded"), time.Minute)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}
