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
	rep := &report{Rounds: 3}
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
	want := "goal met:     concord, 3 node(s): distinct cycles/s >= 3x etcd: median 3.50x (rounds 2.00x 4.00x 3.50x)"
	if !slices.Contains(lines, want) {
		t.Errorf("no line %q in\n%s", want, strings.Join(lines, "\n"))
	}
	wantRedis := "concord/redis distinct, 3 node(s): cycles/s median 0.35x (rounds 0.20x 0.40x 0.35x), p99 median 2.00x (rounds 2.00x 2.00x 2.00x)"
	if !slices.Contains(lines, wantRedis) {
		t.Errorf("no line %q in\n%s", wantRedis, strings.Join(lines, "\n"))
	}
}
