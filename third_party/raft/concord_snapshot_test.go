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
