package bench

import (
	"math"
	"slices"
	"time"
)

// Summary describes a set of measurements of one figure: one value per
// repeated run, or one per sample inside a run.
type Summary struct {
	// N is the number of values.
	N int `json:"n"`
	// Median is the middle value, the mean of the two middle ones for an
	// even N.
	Median float64 `json:"median"`
	// Min and Max bound the values.
	Min float64 `json:"min"`
	Max float64 `json:"max"`
	// Spread is (Max-Min)/Median, the relative width of the range; zero
	// when the median is zero.
	Spread float64 `json:"spread"`
}

// Summarize returns the summary of xs, or the zero Summary when xs is
// empty. It does not modify xs.
func Summarize(xs []float64) Summary {
	if len(xs) == 0 {
		return Summary{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	sum := Summary{N: len(s), Median: Percentile(s, 50), Min: s[0], Max: s[len(s)-1]}
	if sum.Median != 0 {
		sum.Spread = (sum.Max - sum.Min) / math.Abs(sum.Median)
	}
	return sum
}

// Percentile returns the p-th percentile (0 to 100) of xs, interpolating
// linearly between the two nearest ranks, as most statistics packages do.
// It returns NaN for an empty xs and does not modify xs.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := xs
	if !slices.IsSorted(s) {
		s = slices.Clone(xs)
		slices.Sort(s)
	}
	p = min(max(p, 0), 100)
	rank := p / 100 * float64(len(s)-1)
	lo := int(math.Floor(rank))
	hi := int(math.Ceil(rank))
	return s[lo] + (s[hi]-s[lo])*(rank-float64(lo))
}

// Millis converts durations to milliseconds, the unit of every latency
// figure.
func Millis(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	return out
}
