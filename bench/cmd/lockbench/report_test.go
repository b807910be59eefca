package main

import (
	"slices"
	"strings"
	"testing"
)

// TestRatiosPairRounds checks that each concord round is compared with the
// same round of etcd, that the goal is judged on the median, and that Redis
// (measured once) is compared with every round.
func TestRatiosPairRounds(t *testing.T) {
	rep := &report{Rounds: 3, Clients: 64, HotClients: 16}
	add := func(sys string, round int, ops float64) {
		rep.Results = append(rep.Results, Result{System: sys, Nodes: 3, Workload: Distinct, Round: round, OpsPerSec: ops, P99Ms: 10})
	}
	// Per round: 2x, 4x, 3.5x; the median, 3.5x, meets the goal although
	// the first round alone would not.
	add("concord", 1, 2000)
	add("etcd", 1, 1000)
	add("concord", 2, 4000)
	add("etcd", 2, 1000)
	add("concord", 3, 3500)
	add("etcd", 3, 1000)
	rep.Results = append(rep.Results, Result{System: "redis", Nodes: 1, Workload: Distinct, OpsPerSec: 10000, P99Ms: 5})
	lines := rep.ratios(3)
	want := "goal met:     concord, 3 node(s): distinct cycles/s, 64 clients, >= 3x etcd: median 3.50x (rounds 2.00x 4.00x 3.50x)"
	if !slices.Contains(lines, want) {
		t.Errorf("no line %q in\n%s", want, strings.Join(lines, "\n"))
	}
	wantRedis := "concord/redis distinct, 3 node(s): cycles/s median 0.35x (rounds 0.20x 0.40x 0.35x), p99 median 2.00x (rounds 2.00x 2.00x 2.00x)"
	if !slices.Contains(lines, wantRedis) {
		t.Errorf("no line %q in\n%s", wantRedis, strings.Join(lines, "\n"))
	}
}

// TestGoalsNeedTheIssuesClientCounts checks that a run with other client
// counts never meets a goal (etcd's hot rate grows with its clients), and
// that the handoff p99 goal is judged on the worst round.
func TestGoalsNeedTheIssuesClientCounts(t *testing.T) {
	for _, tc := range []struct {
		clients, hot int
		p99s         []float64
		want         []string
	}{
		{64, 16, []float64{3, 25, 4}, []string{
			"goal met:     concord, 3 node(s): distinct cycles/s, 64 clients, >= 3x etcd: median 4.00x (rounds 4.00x 4.00x 4.00x)",
			"goal NOT met: concord, 3 node(s): hot handoff p99 < 20 ms in every round: worst 25.00 ms, median 4.00 ms (rounds 3.00 ms 25.00 ms 4.00 ms)",
		}},
		{8, 4, []float64{3, 3, 3}, []string{
			"goal NOT met: concord, 3 node(s): distinct cycles/s, 8 clients, >= 3x etcd: median 4.00x (rounds 4.00x 4.00x 4.00x) [8 clients, not the goal's 64]",
			"goal NOT met: concord, 3 node(s): hot handoffs/s, 4 clients, >= 20x etcd: median 25.00x (rounds 25.00x 25.00x 25.00x) [4 clients, not the goal's 16]",
		}},
	} {
		rep := &report{Rounds: 3, Clients: tc.clients, HotClients: tc.hot}
		for round := 1; round <= 3; round++ {
			rep.Results = append(rep.Results,
				Result{System: "concord", Nodes: 3, Workload: Distinct, Round: round, OpsPerSec: 4000, P99Ms: 10},
				Result{System: "etcd", Nodes: 3, Workload: Distinct, Round: round, OpsPerSec: 1000, P99Ms: 10},
				Result{System: "concord", Nodes: 3, Workload: Hot, Round: round, OpsPerSec: 1000, Handoffs: 10000, HandoffP99Ms: tc.p99s[round-1]},
				Result{System: "etcd", Nodes: 3, Workload: Hot, Round: round, OpsPerSec: 40, Handoffs: 400, HandoffP99Ms: 50})
		}
		lines := rep.ratios(3)
		for _, want := range tc.want {
			if !slices.Contains(lines, want) {
				t.Errorf("no line %q in\n%s", want, strings.Join(lines, "\n"))
			}
		}
	}
}
