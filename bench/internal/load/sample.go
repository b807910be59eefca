package load

import (
	"math"
	"slices"
	"time"
)

// Sample holds the measured operations of a phase.
type Sample struct {
	// Latencies of the successful operations, sorted once merged.
	Latencies []time.Duration
	// Errors counts failed operations; they are not in Latencies.
	Errors int
	// FirstErr is the first failure seen, for the report.
	FirstErr error
	// Elapsed is the length of the measured phase.
	Elapsed time.Duration
}

// Record adds one operation that took d to s: its latency if it succeeded,
// else the failure err.
func (s *Sample) Record(d time.Duration, err error) {
	if err != nil {
		if s.Errors == 0 {
			s.FirstErr = err
		}
		s.Errors++
		return
	}
	s.Latencies = append(s.Latencies, d)
}

// Merge combines the samples of the workers of one phase of length elapsed
// into one, its latencies sorted. Its FirstErr is that of the first sample
// with one.
func Merge(samples []*Sample, elapsed time.Duration) *Sample {
	n := 0
	for _, s := range samples {
		n += len(s.Latencies)
	}
	out := &Sample{Elapsed: elapsed, Latencies: make([]time.Duration, 0, n)}
	for _, s := range samples {
		out.Latencies = append(out.Latencies, s.Latencies...)
		if out.FirstErr == nil {
			out.FirstErr = s.FirstErr
		}
		out.Errors += s.Errors
	}
	slices.Sort(out.Latencies)
	return out
}

// Throughput is the successful operations per second.
func (s *Sample) Throughput() float64 {
	return float64(len(s.Latencies)) / s.Elapsed.Seconds()
}

// Percentile returns the latency below which a fraction q (0 < q <= 1) of
// the successful operations fall (nearest rank), or 0 with none.
func (s *Sample) Percentile(q float64) time.Duration {
	n := len(s.Latencies)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(q*float64(n))) - 1
	return s.Latencies[min(max(rank, 0), n-1)]
}
