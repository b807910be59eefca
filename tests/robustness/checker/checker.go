// Package checker holds the robustness harness's checkers: the sequential
// models that porcupine checks histories against (key-value registers,
// mutexes with fencing tokens, ID allocation), the linearizability check
// itself (partitioned per key, lock or ID stream, with an HTML
// visualization on failure), the watch checker, the session checker, the
// fenced-list checker, the ID uniqueness checker and the loss-notice
// checker (the SDK tells a holder its lock is lost before the lock goes to
// someone else). Checkers take a
// recorded history and return violations; they never talk to the cluster.
package checker

import (
	"fmt"
	"strings"
)

// Violation is one broken guarantee.
type Violation struct {
	// Checker names the checker that found it, e.g. "linearizability".
	Checker string `json:"checker"`
	// Summary is one line for people.
	Summary string `json:"summary"`
	// Details is the evidence: the operations or events involved.
	Details string `json:"details,omitempty"`
	// Artifact is a file with more evidence (a visualization), if any.
	Artifact string `json:"artifact,omitempty"`
}

// String renders the violation with its details indented.
func (v Violation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] %s", v.Checker, v.Summary)
	if v.Artifact != "" {
		fmt.Fprintf(&b, " (see %s)", v.Artifact)
	}
	if v.Details != "" {
		for _, l := range strings.Split(strings.TrimRight(v.Details, "\n"), "\n") {
			b.WriteString("\n    " + l)
		}
	}
	return b.String()
}

// Stats counts what a checker looked at, for the campaign's summary.
type Stats struct {
	// Checked is the number of operations (or events) checked.
	Checked int
	// Partitions is the number of partitions (keys, locks, ID streams) a
	// linearizability check checked.
	Partitions int
	// Inconclusive is the number of partitions whose check timed out, and
	// InconclusiveOps the operations they hold: checked for nothing.
	Inconclusive, InconclusiveOps int
}

// Add accumulates o into s.
func (s *Stats) Add(o Stats) {
	s.Checked += o.Checked
	s.Partitions += o.Partitions
	s.Inconclusive += o.Inconclusive
	s.InconclusiveOps += o.InconclusiveOps
}
