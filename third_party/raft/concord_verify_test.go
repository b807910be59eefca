package raft

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// newVerify returns a verification registered at at, needing two votes (the
// leader's own, already counted, and one follower's), that reports on the
// returned channel once decided.
func newVerify(at time.Time) (*verifyFuture, chan *verifyFuture) {
	done := make(chan *verifyFuture, 1)
	v := &verifyFuture{notifyCh: done, quorumSize: 2, votes: 1, registered: at}
	v.init()
	return v, done
}

// TestStaleAckDoesNotConfirmLaterVerify checks the rule that makes
// VerifyLeader (and so every linearizable read) safe across a leader's
// pause: a follower's answer confirms only the verifications registered
// before the RPC it answers was sent.
func TestStaleAckDoesNotConfirmLaterVerify(t *testing.T) {
	t0 := time.Now()
	sentBefore := t0.Add(-time.Millisecond) // an RPC in flight before the read began
	early, earlyDone := newVerify(t0.Add(-2 * time.Millisecond))
	late, lateDone := newVerify(t0)
	s := &followerReplication{notify: map[*verifyFuture]struct{}{early: {}, late: {}}}

	s.notifyAll(true, sentBefore)
	select {
	case v := <-earlyDone:
		if v.votes != 2 {
			t.Fatalf("early verification decided with %d votes, want 2", v.votes)
		}
	default:
		t.Fatal("an answer to an RPC sent after the early verification did not confirm it")
	}
	select {
	case <-lateDone:
		t.Fatal("an answer to an RPC sent before the late verification confirmed it")
	default:
	}
	if _, waiting := s.notify[late]; !waiting || len(s.notify) != 1 {
		t.Fatalf("the late verification should still wait for an answer, alone; notify = %v", s.notify)
	}

	// An answer to an RPC sent at the registration instant is not after it.
	s.notifyAll(true, t0)
	select {
	case <-lateDone:
		t.Fatal("an RPC sent at the registration instant confirmed it")
	default:
	}

	// The heartbeat sent after the registration confirms it.
	s.notifyAll(true, t0.Add(time.Millisecond))
	select {
	case v := <-lateDone:
		if v.votes != 2 {
			t.Fatalf("late verification decided with %d votes, want 2", v.votes)
		}
	default:
		t.Fatal("an answer to an RPC sent after the late verification did not confirm it")
	}
	if len(s.notify) != 0 {
		t.Fatalf("decided verifications left waiting: %v", s.notify)
	}
}

// TestNoEndsEveryVerification checks that a follower's "no" (a newer term)
// ends the verifications whatever their age, as upstream.
func TestNoEndsEveryVerification(t *testing.T) {
	t0 := time.Now()
	a, aDone := newVerify(t0)
	b, bDone := newVerify(t0.Add(time.Hour))
	s := &followerReplication{notify: map[*verifyFuture]struct{}{a: {}, b: {}}}
	s.notifyAll(false, time.Time{})
	for name, ch := range map[string]chan *verifyFuture{"a": aDone, "b": bDone} {
		select {
		case v := <-ch:
			if v.votes >= v.quorumSize {
				t.Fatalf("%s: a refusal counted as a vote", name)
			}
		default:
			t.Fatalf("%s: a refusal left the verification waiting", name)
		}
	}
	if len(s.notify) != 0 {
		t.Fatalf("verifications left waiting after a refusal: %v", s.notify)
	}
}

// holdingTransport delays, once armed, the answer to one heartbeat from
// this node: the follower has answered, and the answer reaches raft only
// when the test says, as an answer that waited in a paused leader's
// socket does.
type holdingTransport struct {
	*InmemTransport
	mu      sync.Mutex
	target  ServerAddress // armed when not empty
	held    chan struct{}
	release chan struct{}
}

func (h *holdingTransport) arm(target ServerAddress) {
	h.mu.Lock()
	h.target = target
	h.mu.Unlock()
}

func (h *holdingTransport) AppendEntries(id ServerID, target ServerAddress, args *AppendEntriesRequest, resp *AppendEntriesResponse) error {
	err := h.InmemTransport.AppendEntries(id, target, args, resp)
	h.mu.Lock()
	hold := err == nil && resp.Success && h.target != "" && target == h.target && len(args.Entries) == 0
	if hold {
		h.target = ""
	}
	h.mu.Unlock()
	if hold {
		close(h.held)
		<-h.release
	}
	return err
}

// TestVerifyLeaderIgnoresAnswerSentBeforeIt reproduces, in memory, the
// stale read our fault campaign found (seed 961): a follower's answer to a
// heartbeat sent before VerifyLeader was called reaches the leader after
// the call, when the leader can no longer reach anyone. Upstream counted
// it and VerifyLeader succeeded; it must not.
func TestVerifyLeaderIgnoresAnswerSentBeforeIt(t *testing.T) {
	conf := inmemConfig(t)
	// Long enough that neither the leader's lease check nor an election
	// ends the test's window of a few hundred milliseconds.
	conf.HeartbeatTimeout = 2 * time.Second
	conf.ElectionTimeout = 2 * time.Second
	conf.LeaderLeaseTimeout = 2 * time.Second

	const n = 3
	var (
		trans   [n]*holdingTransport
		rafts   [n]*Raft
		servers []Server
	)
	for i := range trans {
		addr, tr := NewInmemTransport("")
		trans[i] = &holdingTransport{InmemTransport: tr, held: make(chan struct{}), release: make(chan struct{})}
		servers = append(servers, Server{Suffrage: Voter, ID: ServerID(fmt.Sprint("n", i)), Address: addr})
	}
	for i := range trans {
		for j := range trans {
			if i != j {
				trans[i].Connect(trans[j].LocalAddr(), trans[j].InmemTransport)
			}
		}
	}
	for i := range trans {
		c := *conf
		c.LocalID = servers[i].ID
		store := NewInmemStore()
		snap := NewInmemSnapshotStore()
		if err := BootstrapCluster(&c, store, store, snap, trans[i], Configuration{Servers: servers}); err != nil {
			t.Fatal(err)
		}
		r, err := NewRaft(&c, &MockFSM{}, store, store, snap, trans[i])
		if err != nil {
			t.Fatal(err)
		}
		rafts[i] = r
		defer func() { _ = r.Shutdown().Error() }()
	}
	leader := -1
	for deadline := time.Now().Add(20 * time.Second); leader < 0; {
		for i, r := range rafts {
			if r.State() == Leader {
				leader = i
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := rafts[leader].Apply([]byte("x"), 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	follower := (leader + 1) % n
	lt := trans[leader]

	// The next heartbeat to the follower is answered, and its answer held.
	lt.arm(trans[follower].LocalAddr())
	select {
	case <-lt.held:
	case <-time.After(10 * time.Second):
		t.Fatal("no heartbeat to hold")
	}
	// The leader can no longer reach anyone, nor anyone the leader.
	lt.DisconnectAll()
	for i := range trans {
		if i != leader {
			trans[i].Disconnect(lt.LocalAddr())
		}
	}
	verified := make(chan error, 1)
	go func() { verified <- rafts[leader].VerifyLeader().Error() }()
	time.Sleep(100 * time.Millisecond) // the verification is registered
	close(lt.release)                  // and then the old answer arrives

	select {
	case err := <-verified:
		if err == nil {
			t.Fatal("VerifyLeader succeeded on an answer to a heartbeat sent before it, with every follower unreachable")
		}
		t.Logf("VerifyLeader failed, as it must: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("VerifyLeader neither failed nor returned after the leader lost its followers")
	}
}
