package bench

import (
	"math"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		xs   []float64
		p    float64
		want float64
	}{
		{"one value", []float64{7}, 99, 7},
		{"median of odd", []float64{3, 1, 2}, 50, 2},
		{"median of even", []float64{4, 1, 3, 2}, 50, 2.5},
		{"minimum", []float64{5, 1, 9}, 0, 1},
		{"maximum", []float64{5, 1, 9}, 100, 9},
		{"interpolated", []float64{10, 20, 30, 40, 50}, 90, 46},
		{"p99 of 1..100", seq(100), 99, 99.01},
		{"clamped above", []float64{1, 2}, 150, 2},
	} {
		if got := Percentile(tc.xs, tc.p); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: Percentile(%v, %v) = %v, want %v", tc.name, tc.xs, tc.p, got, tc.want)
		}
	}
	if got := Percentile(nil, 50); !math.IsNaN(got) {
		t.Errorf("Percentile of nothing = %v, want NaN", got)
	}
}

func TestPercentileLeavesItsInputAlone(t *testing.T) {
	t.Parallel()
	xs := []float64{3, 1, 2}
	Percentile(xs, 50)
	Summarize(xs)
	if xs[0] != 3 || xs[1] != 1 || xs[2] != 2 {
		t.Errorf("input reordered to %v", xs)
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	got := Summarize([]float64{12, 8, 10, 11, 9})
	want := Summary{N: 5, Median: 10, Min: 8, Max: 12, Spread: 0.4}
	if got.N != want.N || got.Median != want.Median || got.Min != want.Min || got.Max != want.Max ||
		math.Abs(got.Spread-want.Spread) > 1e-9 {
		t.Errorf("Summarize = %+v, want %+v", got, want)
	}
	if z := Summarize([]float64{0, 0}); z.Spread != 0 {
		t.Errorf("spread around a zero median = %v, want 0", z.Spread)
	}
	if e := Summarize(nil); e != (Summary{}) {
		t.Errorf("Summarize(nil) = %+v, want the zero summary", e)
	}
}

func TestMillis(t *testing.T) {
	t.Parallel()
	got := Millis([]time.Duration{1500 * time.Microsecond, 2 * time.Second})
	if got[0] != 1.5 || got[1] != 2000 {
		t.Errorf("Millis = %v, want [1.5 2000]", got)
	}
}

func seq(n int) []float64 {
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = float64(i + 1)
	}
	return xs
}
