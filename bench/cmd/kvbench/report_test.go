package main

import (
	"slices"
	"strings"
	"testing"
)

// TestRatiosPairRounds checks that each concord round is compared with the
// same round of etcd and that the median leads.
func TestRatiosPairRounds(t *testing.T) {
	rep := &report{Rounds: 3}
	add := func(sys string, round int, ops, p99 float64) {
		rep.Results = append(rep.Results, Result{System: sys, Nodes: 3, Op: "get", Round: round, OpsPerSec: ops, P99Ms: p99})
	}
	add("concord", 1, 20000, 8)
	add("etcd", 1, 10000, 16)
	add("concord", 2, 30000, 6)
	add("etcd", 2, 8000, 18)
	add("concord", 3, 25000, 7)
	add("etcd", 3, 10000, 14)
	add("concord", 1, 9000, 5) // another cluster size: not compared
	rep.Results[len(rep.Results)-1].Nodes = 1
	want := "concord/etcd get, 3 node(s): ops/s median 2.50x (rounds 2.00x 3.75x 2.50x), p99 median 0.50x (rounds 0.50x 0.33x 0.50x)"
	if lines := rep.ratios(3); !slices.Equal(lines, []string{want}) {
		t.Errorf("ratios:\n%s\nwant\n%s", strings.Join(lines, "\n"), want)
	}
}
