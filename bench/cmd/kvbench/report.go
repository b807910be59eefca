package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/concord-dev/concord/bench/internal/cputime"
	"github.com/concord-dev/concord/bench/internal/load"
	"github.com/concord-dev/concord/bench/internal/stats"
)

// Result is the outcome of one measured phase: one operation against one
// cluster.
type Result struct {
	System string `json:"system"`
	Nodes  int    `json:"nodes"`
	Op     string `json:"op"`
	// Round is which of -rounds this is, from 1.
	Round      int     `json:"round"`
	Ops        int     `json:"ops"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	Seconds    float64 `json:"seconds"`
	OpsPerSec  float64 `json:"ops_per_sec"`
	P50Ms      float64 `json:"p50_ms"`
	P90Ms      float64 `json:"p90_ms"`
	P99Ms      float64 `json:"p99_ms"`
	P999Ms     float64 `json:"p999_ms"`
	MaxMs      float64 `json:"max_ms"`
	// ServerCores, BenchCores and OtherCores are the CPU the cluster's
	// processes, kvbench itself (the clients) and everything else on the
	// machine used during the phase, in cores.
	ServerCores float64 `json:"server_cores"`
	BenchCores  float64 `json:"bench_cores"`
	OtherCores  float64 `json:"other_cores"`
}

func newResult(sys string, nodes int, op load.Op, s *load.Sample) Result {
	r := Result{
		System: sys, Nodes: nodes, Op: string(op),
		Ops: len(s.Latencies), Errors: s.Errors,
		Seconds: s.Elapsed.Seconds(), OpsPerSec: s.Throughput(),
		P50Ms: ms(s.Percentile(0.50)), P90Ms: ms(s.Percentile(0.90)),
		P99Ms: ms(s.Percentile(0.99)), P999Ms: ms(s.Percentile(0.999)),
		MaxMs: ms(s.Percentile(1)),
	}
	if s.FirstErr != nil {
		r.FirstError = s.FirstErr.Error()
	}
	return r
}

// setCores sets r's CPU figures. Server and other CPU stay 0 where the
// platform does not expose them.
func (r *Result) setCores(c cputime.Cores) {
	r.ServerCores, r.BenchCores, r.OtherCores = c.Server, c.Bench, c.Other
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// report is what a run produced, as written by -json.
type report struct {
	Date      time.Time `json:"date"`
	GoVersion string    `json:"go_version"`
	CPUs      int       `json:"cpus"`
	Clients   int       `json:"clients"`
	Conns     int       `json:"conns"`
	ValueSize int       `json:"value_bytes"`
	Keys      int       `json:"keys"`
	Rounds    int       `json:"rounds"`
	WarmupS   float64   `json:"warmup_s"`
	DurationS float64   `json:"duration_s"`
	Results   []Result  `json:"results"`
}

func newReport(o options) *report {
	return &report{
		Date: time.Now().UTC(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(),
		Clients: o.load.Workers, Conns: o.conns, ValueSize: o.load.ValueSize, Keys: o.load.Keys, Rounds: o.rounds,
		WarmupS: o.warmup.Seconds(), DurationS: o.duration.Seconds(),
	}
}

// printTable prints the results for clusters of n nodes, then the
// concord/etcd ratios where both systems were measured.
func (rep *report) printTable(w io.Writer, n int) {
	fmt.Fprintf(w, "\n%d node(s), %d clients, %d conns, %d-byte values, %d keys\n",
		n, rep.Clients, rep.Conns, rep.ValueSize, rep.Keys)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tnodes\tround\top\tops/s\tp50 ms\tp99 ms\terrors\tserver cores\tbench cores\tother cores\tserver us/op\tbench us/op\t")
	for _, r := range rep.sized(n) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%.0f\t%.2f\t%.2f\t%d\t%.2f\t%.2f\t%.2f\t%.0f\t%.0f\t\n",
			r.System, r.Nodes, r.Round, r.Op, r.OpsPerSec, r.P50Ms, r.P99Ms, r.Errors,
			r.ServerCores, r.BenchCores, r.OtherCores, perOp(r.ServerCores, r.OpsPerSec), perOp(r.BenchCores, r.OpsPerSec))
	}
	tw.Flush()
	for _, line := range rep.ratios(n) {
		fmt.Fprintln(w, line)
	}
}

// perOp converts a CPU use in cores into microseconds of CPU per operation.
func perOp(cores, opsPerSec float64) float64 {
	if opsPerSec == 0 {
		return 0
	}
	return cores / opsPerSec * 1e6
}

// sized returns the results for clusters of n nodes.
func (rep *report) sized(n int) []Result {
	var out []Result
	for _, r := range rep.Results {
		if r.Nodes == n {
			out = append(out, r)
		}
	}
	return out
}

// ratios describes, per operation, each concord configuration's
// throughput and p99 as multiples of etcd's: each round's concord against
// the same round's etcd, and with several rounds the median first.
func (rep *report) ratios(n int) []string {
	var lines []string
	type key struct{ sys, op string }
	var order []key
	byRound := map[key]map[int]Result{}
	for _, r := range rep.sized(n) {
		k := key{r.System, r.Op}
		if byRound[k] == nil {
			byRound[k] = map[int]Result{}
			order = append(order, k)
		}
		byRound[k][r.Round] = r
	}
	for _, k := range order {
		if !strings.HasPrefix(k.sys, "concord") {
			continue
		}
		peer := byRound[key{"etcd", k.op}]
		var ops, p99 stats.Series
		for round := 1; round <= max(rep.Rounds, 1); round++ {
			c, okc := byRound[k][round]
			e, oke := peer[round]
			if okc && oke && e.OpsPerSec > 0 && e.P99Ms > 0 {
				ops = append(ops, c.OpsPerSec/e.OpsPerSec)
				p99 = append(p99, c.P99Ms/e.P99Ms)
			}
		}
		if len(ops) > 0 {
			lines = append(lines, fmt.Sprintf("%s/etcd %s, %d node(s): ops/s %s, p99 %s", k.sys, k.op, n, ops, p99))
		}
	}
	return lines
}
