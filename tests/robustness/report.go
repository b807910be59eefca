package robustness

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/concord-dev/concord/tests/robustness/checker"
	"github.com/concord-dev/concord/tests/robustness/nemesis"
	"github.com/concord-dev/concord/tests/robustness/workload"
)

// Result is what a run did and found.
type Result struct {
	Profile         string
	Seed            int64
	Size            int
	TrafficDuration time.Duration
	// ReplayEnv prefixes ReplayCommand (see Config.ReplayEnv).
	ReplayEnv string
	// Wall is the run's whole duration, checks included.
	Wall time.Duration

	// Ops counts recorded operations by outcome.
	Ops, OK, Failed, Unknown int
	// Checked counts operations and events the checkers examined
	// (CheckedBy splits it: "linearizability" counts operations checked
	// against a model, and "linearizability/<workload>" those of each
	// workload; "kv" watch events and writes, "sessions" expiry
	// observations, "fence" list elements, appends and reads, "ids" IDs
	// checked for uniqueness, "loss notice" SDK grants checked for their
	// holders being told of their loss before the lock went to others:
	// see checker.CheckLossNotice); Inconclusive counts partitions (keys,
	// locks, ID streams) whose linearizability check timed out.
	Checked, Inconclusive int
	CheckedBy             map[string]int
	// Linearizability is what each workload's linearizability check did,
	// by workload: its partitions and operations, and those of the
	// partitions that timed out (see checkInconclusive).
	Linearizability map[string]checker.Stats
	// Faults counts injected faults by kind (those that started; the
	// report shows them against Schedule's count of each kind).
	Faults   map[nemesis.Kind]int
	Schedule nemesis.Schedule
	// LeaderAfterHeal is how long the cluster took to have a single
	// ready leader after the heal.
	LeaderAfterHeal time.Duration
	// WatchCompacted counts watch segments that ended with ErrCompacted
	// (allowed; the watcher starts a new segment); WatchResets describes
	// them.
	WatchCompacted int
	WatchResets    []string
	// SessionsUnresolved counts sessions left unrefreshed that were never
	// seen to expire within the holder's patience (availability, not
	// safety).
	SessionsUnresolved int
	// Counters count what the lock, fence and ID workloads' clients did
	// ("fence stale writes refused", "ids id-alloc", ...).
	Counters map[string]int

	Violations []checker.Violation
	// Timeline is the fault timeline.
	Timeline string

	// Dir is the run's directory, kept when it failed; the other paths
	// are inside it.
	Dir            string
	HistoryPath    string
	TimelinePath   string
	Visualizations []string
	DataDirs       []string
}

// FaultCount returns the number of faults injected.
func (r *Result) FaultCount() int {
	n := 0
	for _, c := range r.Faults {
		n += c
	}
	return n
}

// Passed reports whether the run found no violation.
func (r *Result) Passed() bool { return len(r.Violations) == 0 }

// ReplayCommand returns the command that replays the run.
func (r *Result) ReplayCommand() string {
	return fmt.Sprintf("%sCONCORD_ROBUSTNESS_SEED=%d CONCORD_ROBUSTNESS_PROFILE=%s CONCORD_ROBUSTNESS_DURATION=%s go test ./tests/robustness -run TestReplay -v -timeout 0",
		r.ReplayEnv, r.Seed, r.Profile, r.TrafficDuration)
}

// Summary is one line for logs.
func (r *Result) Summary() string {
	counters := ""
	if len(r.Counters) > 0 {
		counters = fmt.Sprintf(", clients did: %s", r.counters())
	}
	return fmt.Sprintf("%s seed %d: %d members, %s of traffic, %d ops (%d ok, %d failed, %d unknown), %d checked (%s), inconclusive: %s, %d faults (%s), leader %s after heal, %d watch resets, %d sessions unresolved%s, %d violations",
		r.Profile, r.Seed, r.Size, r.TrafficDuration, r.Ops, r.OK, r.Failed, r.Unknown, r.Checked, r.checkedKinds(), r.inconclusive(false),
		r.FaultCount(), r.faultKinds(), r.LeaderAfterHeal.Round(time.Millisecond), r.WatchCompacted, r.SessionsUnresolved, counters, len(r.Violations))
}

// inconclusive lists, per model, its partitions whose linearizability
// check timed out, of all it checked (with the operations they hold when
// long).
func (r *Result) inconclusive(long bool) string {
	var models []string
	for m := range r.Linearizability {
		models = append(models, m)
	}
	sort.Strings(models)
	var parts []string
	for _, m := range models {
		st := r.Linearizability[m]
		if long {
			parts = append(parts, fmt.Sprintf("%s %d of %d partitions (%d of %d operations)", m, st.Inconclusive, st.Partitions, st.InconclusiveOps, st.Checked))
		} else {
			parts = append(parts, fmt.Sprintf("%s %d of %d", m, st.Inconclusive, st.Partitions))
		}
	}
	if len(parts) == 0 {
		return "none checked"
	}
	return strings.Join(parts, ", ")
}

// partitions returns the partitions the run's linearizability checks
// checked, and how many of them timed out.
func (r *Result) partitions() (inconclusive, all int) {
	for _, st := range r.Linearizability {
		inconclusive += st.Inconclusive
		all += st.Partitions
	}
	return inconclusive, all
}

func (r *Result) counters() string {
	var kinds []string
	for k, n := range r.Counters {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(kinds)
	return strings.Join(kinds, ", ")
}

// lockOps counts the lock operations checked against the lock model (the
// lock, lock-limit and fenced-resource workloads').
func (r *Result) lockOps() int {
	return r.CheckedBy["linearizability/"+workload.LockWorkload] + r.CheckedBy["linearizability/"+workload.FenceWorkload] +
		r.CheckedBy["linearizability/"+workload.LockLimitWorkload]
}

func (r *Result) checkedKinds() string {
	var kinds []string
	for k, n := range r.CheckedBy {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(kinds)
	return strings.Join(kinds, ", ")
}

// faultKinds lists, per kind, the faults that started, and of how many
// scheduled when some did not start (their steps failed: see the
// timeline), so that a kind that never started shows as 0 of n.
func (r *Result) faultKinds() string {
	scheduled := r.Schedule.Count()
	var kinds []string
	for k, n := range r.Faults {
		if n < scheduled[k] {
			kinds = append(kinds, fmt.Sprintf("%s×%d of %d", k, n, scheduled[k]))
		} else {
			kinds = append(kinds, fmt.Sprintf("%s×%d", k, n))
		}
	}
	for k, n := range scheduled {
		if _, ok := r.Faults[k]; !ok {
			kinds = append(kinds, fmt.Sprintf("%s×0 of %d", k, n))
		}
	}
	sort.Strings(kinds)
	return strings.Join(kinds, " ")
}

// Report is the full account of a failed run: how to replay it, what
// broke, the fault timeline, and where the evidence is.
func (r *Result) Report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "robustness run %s seed %d: %d violation(s)\n", r.Profile, r.Seed, len(r.Violations))
	fmt.Fprintf(&b, "replay: %s\n", r.ReplayCommand())
	fmt.Fprintf(&b, "inconclusive linearizability checks: %s\n", r.inconclusive(true))
	fmt.Fprintf(&b, "%s\n\nviolations:\n", r.Summary())
	for i, v := range r.Violations {
		if i == 20 {
			fmt.Fprintf(&b, "  ... and %d more\n", len(r.Violations)-i)
			break
		}
		fmt.Fprintf(&b, "  %s\n", strings.ReplaceAll(v.String(), "\n", "\n  "))
	}
	fmt.Fprintf(&b, "\nfault timeline:\n%s", r.Timeline)
	if r.Dir != "" {
		fmt.Fprintf(&b, "\nartifacts in %s:\n", r.Dir)
		fmt.Fprintf(&b, "  history:        %s\n", r.HistoryPath)
		fmt.Fprintf(&b, "  timeline:       %s\n", r.TimelinePath)
		for _, v := range r.Visualizations {
			fmt.Fprintf(&b, "  visualization:  %s\n", v)
		}
		fmt.Fprintf(&b, "  member logs:    %s/logs\n", r.Dir)
		for _, d := range r.DataDirs {
			fmt.Fprintf(&b, "  data dir:       %s\n", d)
		}
	}
	return b.String()
}

// SummaryTable renders results as a markdown table.
func SummaryTable(results []*Result) string {
	var b strings.Builder
	b.WriteString("| profile | seed | members | traffic | ops (ok / failed / unknown) | checked (lin / watch / session) | locks (lock ops / list checks / stale writes refused) | IDs checked | grants notice-checked | faults | leader after heal | watch resets | sessions unresolved | inconclusive partitions | violations |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	var ops, checked, lockOps, fence, stale, ids, notices, faults, inconclusive, partitions, violations int
	for _, r := range results {
		verdict := "0"
		if !r.Passed() {
			verdict = fmt.Sprintf("**%d** (%s)", len(r.Violations), r.Violations[0].Checker)
		}
		inc, parts := r.partitions()
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %d (%d / %d / %d) | %d (%d / %d / %d) | %d / %d / %d | %d | %d | %d: %s | %s | %d | %d | %d of %d | %s |\n",
			r.Profile, r.Seed, r.Size, r.TrafficDuration, r.Ops, r.OK, r.Failed, r.Unknown,
			r.Checked, r.CheckedBy["linearizability"], r.CheckedBy["kv"], r.CheckedBy["sessions"],
			r.lockOps(), r.CheckedBy[workload.FenceWorkload], r.Counters[workload.FenceWorkload+" stale writes refused"], r.CheckedBy[workload.IDsWorkload],
			r.CheckedBy[lossNoticeChecked], r.FaultCount(), r.faultKinds(), r.LeaderAfterHeal.Round(time.Millisecond), r.WatchCompacted, r.SessionsUnresolved, inc, parts, verdict)
		ops += r.Ops
		checked += r.Checked
		lockOps += r.lockOps()
		fence += r.CheckedBy[workload.FenceWorkload]
		stale += r.Counters[workload.FenceWorkload+" stale writes refused"]
		ids += r.CheckedBy[workload.IDsWorkload]
		notices += r.CheckedBy[lossNoticeChecked]
		faults += r.FaultCount()
		inconclusive += inc
		partitions += parts
		violations += len(r.Violations)
	}
	fmt.Fprintf(&b, "| **total: %d runs** | | | | %d | %d | %d / %d / %d | %d | %d | %d | | | | %d of %d | %d |\n", len(results), ops, checked, lockOps, fence, stale, ids, notices, faults, inconclusive, partitions, violations)
	return b.String()
}
