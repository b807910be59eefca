package load

import (
	"errors"
	"testing"
	"time"
)

func TestMergeAndPercentiles(t *testing.T) {
	var a, b Sample
	for i := 1; i <= 100; i++ {
		s := &a
		if i%2 == 0 {
			s = &b
		}
		s.Record(time.Duration(i)*time.Millisecond, nil)
	}
	b.Record(time.Second, errors.New("boom"))
	m := Merge([]*Sample{&a, &b}, 2*time.Second)
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {0.999, 100 * time.Millisecond}, {1, 100 * time.Millisecond}} {
		if got := m.Percentile(tc.q); got != tc.want {
			t.Errorf("Percentile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if m.Errors != 1 || m.FirstErr == nil {
		t.Errorf("errors = %d (%v), want 1", m.Errors, m.FirstErr)
	}
	if got := m.Throughput(); got != 50 {
		t.Errorf("Throughput() = %v, want 50", got)
	}
}

func TestPercentileEmpty(t *testing.T) {
	if got := (&Sample{Elapsed: time.Second}).Percentile(0.99); got != 0 {
		t.Errorf("Percentile of nothing = %v, want 0", got)
	}
}
