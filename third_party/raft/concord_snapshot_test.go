package raft

import (
	"testing"
	"time"
)

// TestFollowerIgnoresSnapshotBelowApplied: a leader may send a snapshot
// after the follower it chose it for has caught up past it. Installing it
// took the follower's state machine back to the snapshot and, on a
// monotonic log store, emptied its log; the next commit then panicked on a
// missing entry (concord's fault campaign, seed 1011). The follower now
// answers success without installing it, and replication goes on from the
// snapshot's end.
func TestFollowerIgnoresSnapshotBelowApplied(t *testing.T) {
	conf := inmemConfig(t)
	conf.TrailingLogs = 10
	conf.SnapshotThreshold = 1 << 30 // only the snapshot the test takes
	c, err := makeCluster(t, &MakeClusterOpts{Peers: 3, Bootstrap: true, Conf: conf, MonotonicLogs: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	leader := c.Leader()

	apply := func(n int) {
		t.Helper()
		for i := range n {
			if err := leader.Apply([]byte{byte(i)}, time.Second).Error(); err != nil {
				t.Fatalf("apply: %v", err)
			}
		}
	}
	apply(100)
	if err := leader.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	apply(100)
	c.WaitForReplication(200)

	metas, err := leader.snapshots.List()
	if err != nil || len(metas) == 0 {
		t.Fatalf("the leader's snapshots: %v, %v", metas, err)
	}
	meta, data, err := leader.snapshots.Open(metas[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()

	follower := c.Followers()[0]
	fsm := getMockFSM(c.fsms[c.IndexOf(follower)])
	applied := follower.getLastApplied()
	if meta.Index >= applied {
		t.Fatalf("the snapshot ends at %d, not below the follower's last applied %d", meta.Index, applied)
	}
	before := len(fsm.Logs())

	req := &InstallSnapshotRequest{
		RPCHeader:          leader.getRPCHeader(),
		SnapshotVersion:    meta.Version,
		Term:               leader.getCurrentTerm(),
		Leader:             leader.trans.EncodePeer(leader.localID, leader.localAddr),
		LastLogIndex:       meta.Index,
		LastLogTerm:        meta.Term,
		Configuration:      EncodeConfiguration(meta.Configuration),
		ConfigurationIndex: meta.ConfigurationIndex,
		Size:               meta.Size,
	}
	var resp InstallSnapshotResponse
	if err := leader.trans.InstallSnapshot(follower.localID, follower.localAddr, req, &resp, data); err != nil {
		t.Fatalf("install snapshot: %v", err)
	}
	if !resp.Success {
		t.Fatal("the follower refused a snapshot it already holds the state of")
	}
	if got := follower.getLastApplied(); got != applied {
		t.Fatalf("the follower's last applied went from %d to %d", applied, got)
	}
	if got := len(fsm.Logs()); got != before {
		t.Fatalf("the follower's state machine went from %d commands to %d: the old snapshot was restored", before, got)
	}

	// Replication goes on, from wherever the leader now thinks the
	// follower is, through entries the follower has applied.
	apply(100)
	c.WaitForReplication(300)
	c.EnsureSame(t)
}

// TestSnapshotBelowFollowersLogEndsItsLog: a follower whose log runs past
// a snapshot it has not applied installs it and, on a monotonic store,
// loses its whole log. Upstream kept the old end of the log as its last
// index, so the next append, from the snapshot's end, failed on entries
// that were no longer there (hashicorp/raft#697). The log now ends with
// the snapshot and the append goes through.
func TestSnapshotBelowFollowersLogEndsItsLog(t *testing.T) {
	conf := inmemConfig(t)
	conf.TrailingLogs = 1024 // the leader keeps the entries the test sends
	conf.SnapshotThreshold = 1 << 30
	c, err := makeCluster(t, &MakeClusterOpts{Peers: 3, Bootstrap: true, Conf: conf, MonotonicLogs: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	leader := c.Leader()
	apply := func(n int) {
		t.Helper()
		for i := range n {
			if err := leader.Apply([]byte{byte(i)}, time.Second).Error(); err != nil {
				t.Fatalf("apply: %v", err)
			}
		}
	}
	apply(20)
	c.WaitForReplication(20)

	follower := c.Followers()[0]
	fi := c.IndexOf(follower)
	// The cut-off follower must not start an election while the test
	// speaks for the leader.
	if err := follower.ReloadConfig(ReloadableConfig{TrailingLogs: conf.TrailingLogs, SnapshotInterval: conf.SnapshotInterval,
		SnapshotThreshold: conf.SnapshotThreshold, HeartbeatTimeout: time.Minute, ElectionTimeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	c.Disconnect(follower.localAddr)
	apply(100)
	if err := leader.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	apply(50)

	// Speak for the leader to the cut-off follower on a transport of our own.
	_, tr := NewInmemTransport("")
	tr.Connect(follower.localAddr, c.trans[fi])
	entries := func(from, to uint64) []*Log {
		var out []*Log
		for i := from; i <= to; i++ {
			l := new(Log)
			if err := leader.logs.GetLog(i, l); err != nil {
				t.Fatalf("leader's entry %d: %v", i, err)
			}
			out = append(out, l)
		}
		return out
	}
	term := func(i uint64) uint64 { return entries(i, i)[0].Term }
	appendTo := func(prev uint64, ents []*Log, commit uint64) *AppendEntriesResponse {
		t.Helper()
		req := &AppendEntriesRequest{
			RPCHeader: leader.getRPCHeader(), Term: leader.getCurrentTerm(),
			PrevLogEntry: prev, PrevLogTerm: term(prev), Entries: ents, LeaderCommitIndex: commit,
		}
		var resp AppendEntriesResponse
		if err := tr.AppendEntries(follower.localID, follower.localAddr, req, &resp); err != nil {
			t.Fatalf("append entries: %v", err)
		}
		return &resp
	}

	// The follower's log runs past the snapshot; none of it is committed.
	last, _ := follower.getLastLog()
	applied := follower.getLastApplied()
	metas, err := leader.snapshots.List()
	if err != nil || len(metas) == 0 {
		t.Fatalf("the leader's snapshots: %v, %v", metas, err)
	}
	snapEnd := metas[0].Index
	if resp := appendTo(last, entries(last+1, snapEnd+30), applied); !resp.Success {
		t.Fatal("the follower refused the leader's entries")
	}
	if l, _ := follower.getLastLog(); l != snapEnd+30 {
		t.Fatalf("the follower's log ends at %d, want %d", l, snapEnd+30)
	}
	if a := follower.getLastApplied(); a >= snapEnd {
		t.Fatalf("the follower applied up to %d, past the snapshot at %d", a, snapEnd)
	}

	meta, data, err := leader.snapshots.Open(metas[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	req := &InstallSnapshotRequest{
		RPCHeader: leader.getRPCHeader(), SnapshotVersion: meta.Version, Term: leader.getCurrentTerm(),
		Leader:       leader.trans.EncodePeer(leader.localID, leader.localAddr),
		LastLogIndex: meta.Index, LastLogTerm: meta.Term,
		Configuration: EncodeConfiguration(meta.Configuration), ConfigurationIndex: meta.ConfigurationIndex,
		Size: meta.Size,
	}
	var sresp InstallSnapshotResponse
	if err := tr.InstallSnapshot(follower.localID, follower.localAddr, req, &sresp, data); err != nil || !sresp.Success {
		t.Fatalf("install snapshot: %v, success %v", err, sresp.Success)
	}
	if l, _ := follower.getLastLog(); l != snapEnd {
		t.Fatalf("after the snapshot the follower's log ends at %d, want the snapshot's end %d", l, snapEnd)
	}

	// Replication from the snapshot's end goes through and commits.
	if resp := appendTo(snapEnd, entries(snapEnd+1, snapEnd+10), snapEnd+10); !resp.Success {
		t.Fatal("the follower refused the append after the snapshot")
	}
	if a := follower.getLastApplied(); a != snapEnd+10 {
		t.Fatalf("the follower applied up to %d, want %d", a, snapEnd+10)
	}

	c.FullyConnect()
	c.WaitForReplication(170)
	c.EnsureSame(t)
}

// TestFollowerRefusesEntriesOfAnotherHistory: members of a new cluster
// seeded from one backup at different indexes (concord's `snapshot restore`
// with different --bump-index) hold snapshots of different histories. A
// follower took a leader's entries at or below its snapshot for entries it
// had applied (they are committed, so the same), skipped them and answered
// success, though their terms were later than its snapshot's, which no
// single history allows: the leader counted it in quorums for entries it
// never held. It now refuses them.
func TestFollowerRefusesEntriesOfAnotherHistory(t *testing.T) {
	conf := inmemConfig(t)
	conf.SnapshotThreshold = 1 << 30 // only the snapshot the test takes
	c, err := makeCluster(t, &MakeClusterOpts{Peers: 3, Bootstrap: true, Conf: conf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	leader := c.Leader()
	for i := range 50 {
		if err := leader.Apply([]byte{byte(i)}, time.Second).Error(); err != nil {
			t.Fatalf("apply: %v", err)
		}
	}
	c.WaitForReplication(50)
	follower := c.Followers()[0]
	if err := follower.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	snapIdx, snapTerm := follower.getLastSnapshot()
	fsm := getMockFSM(c.fsms[c.IndexOf(follower)])
	before := len(fsm.Logs())

	send := func(prev, prevTerm, term uint64) bool {
		t.Helper()
		req := &AppendEntriesRequest{
			RPCHeader:         leader.getRPCHeader(),
			Term:              leader.getCurrentTerm(),
			PrevLogEntry:      prev,
			PrevLogTerm:       prevTerm,
			LeaderCommitIndex: prev,
		}
		for i := prev + 1; i <= snapIdx; i++ {
			req.Entries = append(req.Entries, &Log{Index: i, Term: term, Type: LogCommand, Data: []byte("other")})
		}
		var resp AppendEntriesResponse
		if err := leader.trans.AppendEntries(follower.localID, follower.localAddr, req, &resp); err != nil {
			t.Fatalf("append entries: %v", err)
		}
		return resp.Success
	}
	var prevLog Log
	if err := follower.logs.GetLog(snapIdx-5, &prevLog); err != nil {
		t.Fatal(err)
	}
	if !send(snapIdx-5, prevLog.Term, snapTerm) {
		t.Fatal("the follower refused entries of its own history")
	}
	if send(snapIdx-5, prevLog.Term, snapTerm+1) {
		t.Fatalf("the follower took entries of term %d at or below its snapshot of term %d at %d", snapTerm+1, snapTerm, snapIdx)
	}
	if got := len(fsm.Logs()); got != before {
		t.Fatalf("the follower applied %d entries", got-before)
	}

	// That leader's snapshot, below what the follower applied, is refused
	// too: answered with success, it reset the leader's backoff, and the
	// leader sent it again at once, over and over.
	if err := leader.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	metas, err := leader.snapshots.List()
	if err != nil || len(metas) == 0 {
		t.Fatalf("the leader's snapshots: %v, %v", metas, err)
	}
	meta, data, err := leader.snapshots.Open(metas[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	sreq := &InstallSnapshotRequest{
		RPCHeader:          leader.getRPCHeader(),
		SnapshotVersion:    meta.Version,
		Term:               leader.getCurrentTerm(),
		Leader:             leader.trans.EncodePeer(leader.localID, leader.localAddr),
		LastLogIndex:       meta.Index,
		LastLogTerm:        meta.Term,
		Configuration:      EncodeConfiguration(meta.Configuration),
		ConfigurationIndex: meta.ConfigurationIndex,
		Size:               meta.Size,
	}
	if meta.Index > follower.getLastApplied() {
		t.Fatalf("the leader's snapshot at %d is above the follower's last applied %d", meta.Index, follower.getLastApplied())
	}
	var sresp InstallSnapshotResponse
	if err := leader.trans.InstallSnapshot(follower.localID, follower.localAddr, sreq, &sresp, data); err != nil {
		t.Fatalf("install snapshot: %v", err)
	}
	if sresp.Success {
		t.Fatal("the follower took a snapshot from a leader whose entries it refused as another history")
	}
}
