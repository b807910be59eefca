// Package stats summarises a figure measured over several rounds of a
// benchmark.
package stats

import (
	"fmt"
	"slices"
	"strings"
)

// Series is one figure over the rounds, in round order.
type Series []float64

// Median is the middle value, or the mean of the two middle values; 0 for
// an empty series.
func (s Series) Median() float64 {
	if len(s) == 0 {
		return 0
	}
	sorted := slices.Clone(s)
	slices.Sort(sorted)
	if len(sorted)%2 == 1 {
		return sorted[len(sorted)/2]
	}
	return (sorted[len(sorted)/2-1] + sorted[len(sorted)/2]) / 2
}

// String formats ratios: "2.43x", or with several rounds
// "median 2.90x (rounds 2.43x 3.10x 2.90x)".
func (s Series) String() string { return s.Format("%.2fx") }

// Format formats each value with f (a fmt verb with its decoration, such as
// "%.2f ms"): the value alone for one round, else the median followed by
// every round.
func (s Series) Format(f string) string {
	if len(s) == 1 {
		return fmt.Sprintf(f, s[0])
	}
	each := make([]string, len(s))
	for i, x := range s {
		each[i] = fmt.Sprintf(f, x)
	}
	return fmt.Sprintf("median "+f+" (rounds %s)", s.Median(), strings.Join(each, " "))
}
