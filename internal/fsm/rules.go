package fsm

import (
	"errors"

	internalv1 "github.com/concord-dev/concord/internal/gen/internalv1"
)

// Rules versions. A release that changes how the state machine applies an
// input adds a version and applies the input the new way only once the
// replicated rules version has reached it: members of two releases running
// together then apply every entry alike. The leader raises the version
// (RaiseRules) only once every member of the configuration reports that its
// build applies it, and the version never goes down.
const (
	// BaselineRulesVersion is the rules version of a state machine that
	// was never raised, and of a snapshot made before rules versions
	// existed: the rules before Lock/Acquire's conversion field.
	BaselineRulesVersion = 1
	// RulesConversion is the rules version from which a Lock/Acquire's
	// conversion converts the owner's grant in place, or answers LOST and
	// takes nothing when that grant has ended. Below it the field is
	// ignored, as members of a release before it ignore it: the request is
	// an acquire, granted anew when the grant has ended.
	RulesConversion = 2
	// RulesClusterID is the rules version from which a SetClusterID entry
	// names the cluster (the first one applied; later ones change
	// nothing). Below it the entry changes nothing, as members of a
	// release before it, which do not know the entry, change nothing.
	RulesClusterID = 3
	// RulesLockLimit is the rules version from which a Lock/Acquire
	// command's lock_limit (the proposing member's --max-locks) is a bound
	// the state machine keeps: an acquire that could take the lock table's
	// entries past it is refused with QUOTA_EXCEEDED and takes nothing.
	// Below it the field is ignored, as members of a release before it,
	// which do not know it, ignore it; the bound is then the members'
	// check before proposing, which acquires racing each other can pass
	// together.
	RulesLockLimit = 4
	// RulesRPCClusterID is the rules version from which members name the
	// cluster ID on their internal RPC connections too, not only on Raft
	// streams: every member's build then knows that handshake, where the
	// build before it closes such a connection. It changes nothing in how
	// entries are applied, and comes with version 4.
	RulesRPCClusterID = RulesLockLimit
	// RulesHoldCheckpoint is the rules version from which a
	// CheckpointLockHolds entry records how much of grants' hold times the
	// leader has counted (lock.Holder.HoldCountedMs), which a new leader
	// then does not count again. Below it the entry changes nothing, and
	// leaders do not propose it: members of a release before it do not
	// know it.
	RulesHoldCheckpoint = 5
	// MaxRulesVersion is the highest rules version this build applies.
	MaxRulesVersion = RulesHoldCheckpoint
)

// ErrRulesTooNew stops a member asked to apply a rules version above the
// one its build applies (in a RaiseRules entry or in a snapshot): applying
// further entries by older rules would make its state differ from the
// other members'. Its binary must be upgraded. It is a member's fatal
// error, never an API error.
var ErrRulesTooNew = errors.New("fsm: the cluster applies a rules version this build does not know")

// RulesVersion returns the rules version the state machine applies entries
// by.
func (f *FSM) RulesVersion() uint32 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.rules
}

// MaxRulesVersion returns the highest rules version this member applies:
// MaxRulesVersion unless Config.MaxRulesVersion lowers it.
func (f *FSM) MaxRulesVersion() uint32 { return f.cfg.MaxRulesVersion }

// Halted returns the error that stopped the state machine (one wrapping
// ErrRulesTooNew), or nil while it applies entries.
func (f *FSM) Halted() error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.halted
}

// rulesOf returns the rules version a snapshot header records.
func rulesOf(hdr *internalv1.SnapshotHeader) uint32 {
	return max(hdr.GetRulesVersion(), BaselineRulesVersion)
}

// formatFor returns the snapshot format that records rules version v: a
// snapshot at the baseline is written as before rules versions existed
// (format 1, no rules version), so that it reads, and hashes, the same on
// members of a release before them; above it, format 2, which those
// members refuse rather than apply later entries by older rules.
func formatFor(v uint32) (format, rules uint32) {
	if v <= BaselineRulesVersion {
		return 1, 0
	}
	return 2, v
}
