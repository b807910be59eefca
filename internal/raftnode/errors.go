package raftnode

import (
	"errors"

	"github.com/hashicorp/raft"

	"github.com/concord-dev/concord/internal/errs"
)

var (
	// ErrNotLeader is returned when this member is not the leader. The
	// request was not applied; it may be retried at the leader.
	ErrNotLeader = errs.New("NOT_LEADER", "raft: this member is not the leader")
	// ErrNoLeader is returned when no leader is known, during an election
	// or a partition. The request was not applied.
	ErrNoLeader = errs.New("NO_LEADER", "raft: no leader is known; the cluster may be electing one or lack a quorum")
	// ErrUnknownOutcome is returned when leadership was lost after a
	// command was appended: it may or may not be applied. A write with a
	// request ID may be retried safely.
	ErrUnknownOutcome = errs.New("UNKNOWN_OUTCOME", "raft: leadership lost while committing; the write may or may not be applied")
	// ErrTransferFailed is returned when leadership could not be handed
	// over: the target did not answer (down, unreachable) or did not take
	// over in time. This member may still lead, or an election may
	// follow; nothing else changed.
	ErrTransferFailed = errs.New("TRANSFER_FAILED", "raft: leadership transfer failed")
	// ErrStopped is returned once the node is shutting down.
	ErrStopped = errs.New("SHUTTING_DOWN", "raft: member is shutting down")
)

// mapErr turns hashicorp/raft errors into concord's sentinels.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrNotVoter):
		return errs.Wrapf(ErrNotLeader, "%v", err)
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrAbortedByRestore):
		return errs.Wrapf(ErrUnknownOutcome, "%v", err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrStopped
	default:
		return err
	}
}
