package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/concord-dev/concord/bench/internal/cputime"
	"github.com/concord-dev/concord/bench/internal/load"
)

// Result is one measured phase of one generator.
type Result struct {
	Part      string  `json:"part"`
	System    string  `json:"system"`
	Nodes     int     `json:"nodes,omitempty"`
	Batch     int     `json:"batch,omitempty"`
	Workers   int     `json:"workers"`
	Seconds   float64 `json:"seconds"`
	IDs       int64   `json:"ids"`
	Calls     int64   `json:"calls"`
	IDsPerSec float64 `json:"ids_per_sec"`
	CallsPerS float64 `json:"calls_per_sec"`
	NsPerOp   float64 `json:"ns_per_op,omitempty"`
	P50Us     float64 `json:"p50_us,omitempty"`
	P90Us     float64 `json:"p90_us,omitempty"`
	P99Us     float64 `json:"p99_us,omitempty"`
	P999Us    float64 `json:"p999_us,omitempty"`
	MaxUs     float64 `json:"max_us,omitempty"`
	Errors    int64   `json:"errors"`
	FirstErr  string  `json:"first_error,omitempty"`
	// Checked IDs (warmup included) were checked for Duplicates; Disorder
	// counts IDs not above the previous one of the same goroutine, client or
	// generator.
	Checked    int64 `json:"checked_ids"`
	Duplicates int64 `json:"duplicates"`
	Disorder   int64 `json:"order_violations"`
	// Segments only: of the measured phase.
	Fetches        int64   `json:"fetches,omitempty"`
	FetchMaxUs     float64 `json:"fetch_max_us,omitempty"`
	Waits          int64   `json:"waits_for_fetch"`
	Step           int64   `json:"step,omitempty"`
	OverlapMaxUs   float64 `json:"max_us_during_fetch,omitempty"`
	Slow           int64   `json:"calls_over_1ms"`
	SlowOverlap    int64   `json:"calls_over_1ms_during_fetch"`
	WarmupFetches  int64   `json:"warmup_fetches,omitempty"`
	WarmupWaits    int64   `json:"warmup_waits,omitempty"`
	WarmupFetchMax float64 `json:"warmup_fetch_max_us,omitempty"`
	// CPU in cores during the measured phase (Linux).
	ServerCores float64 `json:"server_cores,omitempty"`
	BenchCores  float64 `json:"bench_cores"`
	OtherCores  float64 `json:"other_cores"`
	Note        string  `json:"note,omitempty"`
}

func (r *Result) setLatency(s *load.Sample) {
	r.Calls = int64(len(s.Latencies))
	r.CallsPerS = s.Throughput()
	r.P50Us, r.P90Us, r.P99Us = us(s.Percentile(0.5)), us(s.Percentile(0.9)), us(s.Percentile(0.99))
	r.P999Us, r.MaxUs = us(s.Percentile(0.999)), us(s.Percentile(1))
	r.Errors = int64(s.Errors)
	if s.FirstErr != nil {
		r.FirstErr = s.FirstErr.Error()
	}
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// duplicates counts the IDs of lists that repeat an ID of any list: it
// concatenates them, sorts and compares neighbours. It frees nothing; the
// caller drops lists afterwards.
func duplicates(lists [][]int64) (total, dups int64) {
	n := 0
	for _, l := range lists {
		n += len(l)
	}
	all := make([]int64, 0, n)
	for _, l := range lists {
		all = append(all, l...)
	}
	slices.Sort(all)
	for i := 1; i < len(all); i++ {
		if all[i] == all[i-1] {
			dups++
		}
	}
	return int64(len(all)), dups
}

// setCores sets r's CPU figures and warns when other processes skewed
// them. Server and other CPU stay 0 where the platform does not expose them.
func (r *Result) setCores(c cputime.Cores) {
	r.ServerCores, r.BenchCores, r.OtherCores = c.Server, c.Bench, c.Other
	c.Warn(os.Stderr)
}

// report is what a run produced, as written by -json.
type report struct {
	mu        sync.Mutex
	Date      time.Time      `json:"date"`
	GoVersion string         `json:"go_version"`
	OS        string         `json:"os"`
	CPUs      int            `json:"cpus"`
	Settings  map[string]any `json:"settings"`
	Results   []Result       `json:"results"`
}

func newReport(o options) *report {
	return &report{
		Date: time.Now().UTC(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH, CPUs: runtime.NumCPU(),
		Settings: map[string]any{
			"parts": o.parts, "nodes": o.nodes, "systems": o.systems, "batches": o.batches,
			"duration": o.duration.String(), "warmup": o.warmup.String(), "goroutines": o.goroutines,
			"clients": o.clients, "conns": o.conns, "redis": o.redis,
		},
	}
}

func (r *report) add(rs ...Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Results = append(r.Results, rs...)
}

// verdict prints whether every ID checked out.
func verdict(r Result) string {
	switch {
	case r.Checked == 0:
		return "no IDs"
	case r.Duplicates > 0 && r.Disorder > 0:
		return fmt.Sprintf("%d DUPLICATES, %d OUT OF ORDER", r.Duplicates, r.Disorder)
	case r.Duplicates > 0:
		return fmt.Sprintf("%d DUPLICATES", r.Duplicates)
	case r.Disorder > 0:
		return fmt.Sprintf("%d OUT OF ORDER", r.Disorder)
	}
	return "ok"
}

func table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
}

// num formats n with thousands separators.
func num(n float64) string {
	s := fmt.Sprintf("%.0f", n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func ms(usv float64) string { return fmt.Sprintf("%.3f", usv/1000) }

// summary prints the goals and every problem found, once all parts ran.
func (r *report) summary(w io.Writer, o options) {
	fmt.Fprintln(w, "\n== summary")
	bad := 0
	for _, x := range r.Results {
		if x.Duplicates > 0 || x.Disorder > 0 || x.Errors > 0 {
			bad++
			fmt.Fprintf(w, "PROBLEM: %s %s nodes=%d n=%d: %s, %d errors %s\n", x.Part, x.System, x.Nodes, x.Batch, verdict(x), x.Errors, x.FirstErr)
		}
	}
	if bad == 0 {
		fmt.Fprintln(w, "every ID checked: no duplicates, no order violations, no errors")
	}
	for _, x := range r.Results {
		switch {
		case x.Part == "snowflake" && x.System == "concord idgen.Snowflake":
			fmt.Fprintf(w, "goal: concord snowflake >= 4.0M IDs/s per generator (layout limit 4.096M/s): %s (%.2fM/s)\n", met(x.IDsPerSec >= 4e6), x.IDsPerSec/1e6)
		case x.Part == "segments":
			fmt.Fprintf(w, "goal: segments (%s, %d nodes) no call slower than 1 ms caused by a fetch: %s\n", x.System, x.Nodes, segGoal(x))
		case x.Part == "nextids" && x.Nodes == 3:
			fmt.Fprintf(w, "goal: nextids (%s, 3 nodes, n=%d) > 50,000 IDs/s (Leaf: ~50,000/s on 4 cores): %s (%s IDs/s, %s calls/s)\n",
				x.System, x.Batch, met(x.IDsPerSec > 50000), num(x.IDsPerSec), num(x.CallsPerS))
		}
	}
	if o.has("nextids") && !slices.Contains(o.nodes, 3) {
		fmt.Fprintln(w, "goal: nextids > 50,000 IDs/s at 3 nodes: not evaluated (no 3-node run in -nodes)")
	}
}

func met(ok bool) string {
	if ok {
		return "goal met"
	}
	return "goal NOT met"
}
