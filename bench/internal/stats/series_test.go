package stats

import "testing"

func TestSeriesMedian(t *testing.T) {
	for _, tc := range []struct {
		in   Series
		want float64
	}{
		{nil, 0},
		{Series{2}, 2},
		{Series{3, 1, 2}, 2},
		{Series{4, 1, 3, 2}, 2.5},
	} {
		if got := tc.in.Median(); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if got, want := (Series{2.5}).String(), "2.50x"; got != want {
		t.Errorf("one round: %q, want %q", got, want)
	}
	if got, want := (Series{3, 1, 2}).String(), "median 2.00x (rounds 3.00x 1.00x 2.00x)"; got != want {
		t.Errorf("three rounds: %q, want %q", got, want)
	}
	if got, want := (Series{9.5, 11}).Format("%.1f ms"), "median 10.2 ms (rounds 9.5 ms 11.0 ms)"; got != want {
		t.Errorf("format: %q, want %q", got, want)
	}
}
