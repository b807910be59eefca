package robustness

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/concord-dev/concord/tests/robustness/checker"
	"github.com/concord-dev/concord/tests/robustness/history"
	"github.com/concord-dev/concord/tests/robustness/nemesis"
)

func TestReportAndSummary(t *testing.T) {
	pass := &Result{Profile: ProfileShort, Seed: 1, Size: 3, TrafficDuration: 30 * time.Second, Ops: 10, OK: 9, Unknown: 1,
		Checked: 40, CheckedBy: map[string]int{"linearizability": 9, "linearizability/locks": 3, "linearizability/fence": 2,
			"kv": 2, "sessions": 1, "fence": 6, "ids": 20, lossNoticeChecked: 7},
		Counters: map[string]int{"fence stale writes refused": 1, "locks grants": 4},
		Faults:   map[nemesis.Kind]int{nemesis.Kill: 2, nemesis.Bridge: 1}}
	fail := &Result{Profile: ProfileLong, Seed: 7, Size: 5, TrafficDuration: 2 * time.Minute, Ops: 5, OK: 5,
		Violations: []checker.Violation{{Checker: "linearizability", Summary: "kv: key kv/k001: not linearizable", Details: "a\nb", Artifact: "/x/viz.html"}},
		Timeline:   "   1.000s network #0 bridge start ...\n", Dir: "/x", HistoryPath: "/x/history.jsonl", TimelinePath: "/x/timeline.txt",
		Visualizations: []string{"/x/viz.html"}, DataDirs: []string{"/x/data/n1.0"}}
	require.True(t, pass.Passed())
	require.False(t, fail.Passed())
	require.Equal(t, 3, pass.FaultCount())

	report := fail.Report()
	for _, want := range []string{
		"CONCORD_ROBUSTNESS_SEED=7 CONCORD_ROBUSTNESS_PROFILE=long CONCORD_ROBUSTNESS_DURATION=2m0s go test ./tests/robustness -run TestReplay",
		"[linearizability] kv: key kv/k001", "fault timeline:", "bridge start", "/x/history.jsonl", "/x/viz.html", "/x/data/n1.0", "/x/logs",
	} {
		require.Contains(t, report, want)
	}

	table := SummaryTable([]*Result{pass, fail})
	lines := strings.Split(strings.TrimSpace(table), "\n")
	require.Len(t, lines, 5, "header, separator, two runs, total")
	require.Contains(t, lines[2], "| short | 1 | 3 | 30s | 10 (9 / 0 / 1) | 40 (9 / 2 / 1) | 5 / 6 / 1 | 20 | 7 | 3: bridge×1 kill×2 |")
	require.Contains(t, lines[3], "**1** (linearizability)")
	require.Contains(t, lines[4], "total: 2 runs")
	require.Contains(t, lines[4], "| 5 / 6 / 1 | 20 | 7 | 3 |")
	require.Contains(t, pass.Summary(), "clients did: fence stale writes refused 1, locks grants 4")
}

func TestCheckFaults(t *testing.T) {
	schedule := nemesis.Schedule{{Kind: nemesis.Kill}, {Kind: nemesis.Pause}, {Kind: nemesis.Bridge}, {Kind: nemesis.SlowLinks}}
	require.Empty(t, checkFaults(nil, nil), "a run without a schedule injects nothing")
	require.Empty(t, checkFaults(schedule, map[nemesis.Kind]int{nemesis.Kill: 1, nemesis.Bridge: 1}), "some steps may fail")
	vs := checkFaults(schedule, nil)
	require.Len(t, vs, 1, "a run whose faults all failed must not pass")
	require.Equal(t, "nemesis", vs[0].Checker)
	require.Contains(t, vs[0].Summary, "only 0 of the 4 scheduled faults were injected")
	require.Len(t, checkFaults(schedule, map[nemesis.Kind]int{nemesis.Kill: 1}), 1)

	// The timeline counts a fault when it starts, not when it fails.
	tl := nemesis.NewTimeline(history.NewClock())
	tl.Add(nemesis.LaneProcess, 0, nemesis.Kill, "error", "no running leader member")
	tl.Add(nemesis.LaneProcess, 1, nemesis.Pause, "start", "SIGSTOP n1 (leader)")
	tl.Add(nemesis.LaneProcess, 1, nemesis.Pause, "heal", "SIGCONT n1")
	require.Equal(t, map[nemesis.Kind]int{nemesis.Pause: 1}, tl.Faults())
	require.Len(t, checkFaults(schedule, tl.Faults()), 1)
}

// A run whose linearizability checks mostly timed out has not checked
// what it claims: it fails with an "inconclusive" violation per model
// whose inconclusive partitions hold more than a tenth of its operations,
// and the report names the inconclusive partitions per model.
func TestCheckInconclusive(t *testing.T) {
	kv := checker.Stats{Checked: 10000, Partitions: 200, Inconclusive: 1, InconclusiveOps: 400}
	require.Empty(t, checkInconclusive("kv", kv), "one hot key of 200 timing out is noise")
	kv.Inconclusive, kv.InconclusiveOps = 10, 5000
	vs := checkInconclusive("kv", kv)
	require.Len(t, vs, 1, "the hot keys, half of the operations, went unchecked")
	require.Equal(t, "inconclusive", vs[0].Checker)
	require.Contains(t, vs[0].Summary, "kv: 10 of 200 partitions (5000 of 10000 operations)")
	require.Len(t, checkInconclusive("locks", checker.Stats{Checked: 3000, Partitions: 3, Inconclusive: 1, InconclusiveOps: 1000}), 1,
		"one lock of three is a third of the lock model's operations")
	require.Empty(t, checkInconclusive("ids", checker.Stats{Checked: 3000, Partitions: 3}))

	res := &Result{Profile: ProfileShort, Seed: 1, Size: 3,
		Linearizability: map[string]checker.Stats{"kv": kv, "locks": {Checked: 30, Partitions: 3}}}
	require.Contains(t, res.Summary(), "inconclusive: kv 10 of 200, locks 0 of 3")
	require.Contains(t, res.Report(), "inconclusive linearizability checks: kv 10 of 200 partitions (5000 of 10000 operations), locks 0 of 3 partitions (0 of 30 operations)")
	require.Contains(t, SummaryTable([]*Result{res, res}), "| 20 of 406 |", "the campaign's table counts the inconclusive partitions")
}

// The report says, per fault kind, how many of the scheduled faults
// started: a kind whose every step failed shows as 0 of n, not nothing.
func TestReportFaultsStartedPerKind(t *testing.T) {
	res := &Result{Profile: ProfileShort, Seed: 1, Size: 3,
		Schedule: nemesis.Schedule{{Kind: nemesis.Kill}, {Kind: nemesis.Kill}, {Kind: nemesis.Pause}, {Kind: nemesis.Bridge}},
		Faults:   map[nemesis.Kind]int{nemesis.Kill: 1, nemesis.Bridge: 1}}
	require.Contains(t, res.Summary(), "2 faults (bridge×1 kill×1 of 2 pause×0 of 1)")
	require.Contains(t, SummaryTable([]*Result{res}), "| 2: bridge×1 kill×1 of 2 pause×0 of 1 |")
}

func TestCheckLossNoticeNeedsGrants(t *testing.T) {
	h := &history.History{}
	st, vs := checkLossNotice(h, 1, false)
	require.Empty(t, vs, "a run without lock workloads holds no grant")
	require.Zero(t, st.Checked)
	_, vs = checkLossNotice(h, 1, true)
	require.Len(t, vs, 1, "a run whose lock clients held no grant must not pass")
	require.Equal(t, "loss-notice", vs[0].Checker)

	h.Grants = []history.Grant{{Workload: "locks", Owner: "a", Locks: []string{"lock/m0"}, Capacity: 1, Permits: 1, Token: 1,
		Granted: int64(time.Millisecond), Ended: int64(2 * time.Millisecond), Released: true}}
	st, vs = checkLossNotice(h, 1, true)
	require.Empty(t, vs)
	require.Equal(t, 1, st.Checked)
}
