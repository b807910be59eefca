package raft

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// TestPipelineDecodeExitUnblocksTheSender: when the decoder of a pipelined
// replication stops (the follower has a newer term, or refused an entry),
// a send in progress must not block forever. Before the fix the transport's
// in-flight buffers filled with nobody draining them, the sender blocked
// on them, and the pipeline was closed only by that sender after it
// returned: the follower got heartbeats but no more entries, and Shutdown
// waited forever.
func TestPipelineDecodeExitUnblocksTheSender(t *testing.T) {
	answers := map[string]AppendEntriesResponse{
		"newer term": {Term: 9, Success: false},
		"refused":    {Term: 1, Success: false},
	}
	transports := map[string]func(t *testing.T) (AppendPipeline, <-chan RPC){
		"inmem": inmemPipelinePair,
		"tcp":   tcpPipelinePair,
	}
	for tname, pair := range transports {
		for aname, answer := range answers {
			t.Run(fmt.Sprintf("%s/%s", tname, aname), func(t *testing.T) {
				p, rpcs := pair(t)
				stopAnswering := make(chan struct{})
				defer close(stopAnswering)
				go func() {
					for {
						select {
						case rpc := <-rpcs:
							resp := answer
							rpc.Respond(&resp, nil)
						case <-stopAnswering:
							return
						}
					}
				}()

				r := &Raft{logger: hclog.NewNullLogger()}
				s := &followerReplication{
					peer:     Server{ID: "follower", Address: "follower"},
					notify:   map[*verifyFuture]struct{}{},
					stepDown: make(chan struct{}, 1),
				}
				stopCh, finishCh := make(chan struct{}), make(chan struct{})
				defer close(stopCh)
				go r.pipelineDecode(s, p, stopCh, finishCh)

				// The sender keeps pipelining, as pipelineReplicate does
				// when its trigger wins the select over finishCh.
				sendErr := make(chan error, 1)
				go func() {
					for {
						req := &AppendEntriesRequest{RPCHeader: RPCHeader{ProtocolVersion: ProtocolVersionMax}, Term: 1}
						if _, err := p.AppendEntries(req, new(AppendEntriesResponse)); err != nil {
							sendErr <- err
							return
						}
					}
				}()

				select {
				case <-finishCh:
				case <-time.After(10 * time.Second):
					t.Fatal("the decoder did not stop on the follower's answer")
				}
				// The send returns an error: ErrPipelineShutdown when it
				// waited on the pipeline's buffers, or the closed
				// connection's write error when the close met it writing.
				select {
				case err := <-sendErr:
					t.Logf("the send returned %v", err)
				case <-time.After(10 * time.Second):
					t.Fatal("the sender is still blocked 10 s after the decoder stopped")
				}
				if aname == "newer term" {
					select {
					case <-s.stepDown:
					default:
						t.Fatal("a newer term did not ask the leader to step down")
					}
				}
			})
		}
	}
}

func inmemPipelinePair(t *testing.T) (AppendPipeline, <-chan RPC) {
	addr1, t1 := NewInmemTransport("")
	addr2, t2 := NewInmemTransport("")
	t1.Connect(addr2, t2)
	t2.Connect(addr1, t1)
	t.Cleanup(func() { _ = t1.Close(); _ = t2.Close() })
	p, err := t1.AppendEntriesPipeline("follower", addr2)
	if err != nil {
		t.Fatal(err)
	}
	return p, t2.Consumer()
}

func tcpPipelinePair(t *testing.T) (AppendPipeline, <-chan RPC) {
	newTrans := func() *NetworkTransport {
		trans, err := NewTCPTransportWithConfig("127.0.0.1:0", nil, &NetworkTransportConfig{
			MaxPool:         2,
			MaxRPCsInFlight: 4,
			Timeout:         time.Minute, // longer than the test: no deadline unblocks it
			Logger:          hclog.NewNullLogger(),
		})
		if err != nil {
			t.Fatal(err)
		}
		return trans
	}
	leader, follower := newTrans(), newTrans()
	t.Cleanup(func() { _ = leader.Close(); _ = follower.Close() })
	p, err := leader.AppendEntriesPipeline("follower", follower.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	return p, follower.Consumer()
}

// TestLeadershipTransferStopsWhileItsTriggerIsFull: a transfer waiting to
// hand its catch-up trigger to a replication goroutine that will never
// take it (the channel still holds an earlier transfer's trigger, and the
// goroutine ended when the leader stepped down) must return when the
// transfer is stopped. Before the fix the send blocked forever, and
// leadershipTransferInProgress stayed set: the member, if elected again,
// refused every write.
func TestLeadershipTransferStopsWhileItsTriggerIsFull(t *testing.T) {
	r := &Raft{logger: hclog.NewNullLogger()}
	repl := &followerReplication{
		triggerDeferErrorCh: make(chan *deferError, 1),
		writer:              &logWriter{last: 10}, // the target (nextIndex 0) is behind
	}
	stale := &deferError{}
	stale.init()
	repl.triggerDeferErrorCh <- stale
	stopCh, doneCh := make(chan struct{}), make(chan error, 1)
	go r.leadershipTransfer("target", "target", repl, stopCh, doneCh)
	// Let it get past its first check of stopCh, to the send.
	time.Sleep(100 * time.Millisecond)
	close(stopCh)
	select {
	case err := <-doneCh:
		if err != nil {
			t.Fatalf("a stopped transfer answered %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the transfer is still blocked on its trigger 10 s after it was stopped")
	}
}
