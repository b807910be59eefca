package raftnode

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/hashicorp/raft"
)

// keyCurrentTerm is the stable store key hashicorp/raft keeps its term in.
var keyCurrentTerm = []byte("CurrentTerm")

// SeedFromSnapshot prepares an empty Raft directory to start a new cluster
// from a state machine snapshot (a backup): it writes the snapshot at index
// with term 1 and the given membership, so every member seeded with the
// same backup and membership starts from the same state. The directory must
// hold no Raft state.
func SeedFromSnapshot(dir, logStore string, index uint64, servers []Server, data io.Reader, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.Default()
	}
	store, snaps, err := openStores(dir, logStore, logger)
	if err != nil {
		return err
	}
	defer store.Close()
	has, err := raft.HasExistingState(store.logs, store.stable, snaps)
	if err != nil {
		return err
	}
	if has {
		return fmt.Errorf("raftnode: %s already holds Raft state; restore into an empty data dir", dir)
	}
	_, trans := raft.NewInmemTransport("")
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, 1, configuration(servers), index, trans)
	if err != nil {
		return fmt.Errorf("create snapshot: %w", err)
	}
	if _, err := io.Copy(sink, data); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("finalize snapshot: %w", err)
	}
	// Raft's terms must not go backwards along the log: start the new
	// cluster's terms after the snapshot's.
	return store.stable.SetUint64(keyCurrentTerm, 1)
}
