package raft

import (
	"fmt"
	"testing"
	"time"
)

// TestSnapshotCheckPassesSingleHistories: entryBeyondSnapshot and the
// refusal of a foreign leader's snapshots must never fire in one legitimate
// history. The sequence goes through what could trip them: every member
// snapshots and truncates its log, leadership moves right after the
// snapshots (later entries carry newer terms than the snapshot's entry), a
// follower cut off while the leader snapshots and truncates catches up by
// installing the leader's snapshot and then takes entries after it, and
// leadership moves again to a member whose snapshot is of an older term.
// Both log stores (monotonic or not) are run.
func TestSnapshotCheckPassesSingleHistories(t *testing.T) {
	for _, monotonic := range []bool{false, true} {
		t.Run(fmt.Sprintf("monotonic=%v", monotonic), func(t *testing.T) {
			conf := inmemConfig(t)
			conf.TrailingLogs = 5
			conf.SnapshotThreshold = 1 << 30 // only the snapshots the test takes
			c, err := makeCluster(t, &MakeClusterOpts{Peers: 3, Bootstrap: true, Conf: conf, MonotonicLogs: monotonic})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			total := 0
			apply := func(n int) {
				t.Helper()
				leader := c.Leader()
				for i := range n {
					if err := leader.Apply([]byte{byte(i)}, 5*time.Second).Error(); err != nil {
						t.Fatalf("apply: %v", err)
					}
				}
				total += n
				c.WaitForReplication(total)
			}
			snapshotAll := func() {
				t.Helper()
				for _, r := range c.rafts {
					if err := r.Snapshot().Error(); err != nil {
						t.Fatalf("snapshot of %s: %v", r.localID, err)
					}
				}
			}
			transfer := func() {
				t.Helper()
				old := c.Leader()
				if err := old.LeadershipTransfer().Error(); err != nil {
					t.Fatalf("leadership transfer: %v", err)
				}
				deadline := time.Now().Add(10 * time.Second)
				for {
					if l := c.Leader(); l != old && l.getCurrentTerm() > 0 {
						return
					}
					if time.Now().After(deadline) {
						t.Fatal("no new leader")
					}
					time.Sleep(10 * time.Millisecond)
				}
			}

			apply(40)
			snapshotAll() // every member truncates its log behind a snapshot of the first term
			transfer()    // right after the snapshots
			apply(40)     // entries of a later term than every snapshot's

			// A follower misses entries while the leader snapshots and
			// truncates them; it catches up by installing the snapshot,
			// then takes the entries after it.
			behind := c.Followers()[0]
			c.Disconnect(behind.localAddr)
			apply2 := func(n int) { // without waiting for the cut-off follower
				t.Helper()
				leader := c.Leader()
				for i := range n {
					if err := leader.Apply([]byte{byte(i)}, 5*time.Second).Error(); err != nil {
						t.Fatalf("apply: %v", err)
					}
				}
				total += n
			}
			apply2(50)
			if err := c.Leader().Snapshot().Error(); err != nil {
				t.Fatalf("snapshot: %v", err)
			}
			apply2(20)
			c.FullyConnect()
			c.WaitForReplication(total)
			if idx, _ := behind.getLastSnapshot(); idx <= 80 {
				t.Fatalf("the cut-off follower did not install the leader's snapshot (its snapshot ends at %d)", idx)
			}
			apply(20)

			// Members snapshot at an index whose entry's term is older than
			// the next leader's; leadership moves twice more, with entries
			// and snapshots in between.
			snapshotAll()
			transfer()
			apply(30)
			snapshotAll()
			transfer()
			apply(30)

			c.EnsureSame(t)
			for _, r := range c.rafts {
				// Read after the cluster settled: only the main thread
				// writes it, and only when it refuses.
				if r.foreignTerm != 0 {
					t.Fatalf("%s refused the entries of a leader of its own history (term %d)", r.localID, r.foreignTerm)
				}
			}
		})
	}
}
