package bench

import (
	"context"
	"fmt"
)

// measureGet times GET url n times in a row, runs times after warm
// untimed requests, and returns each run's median and 99th percentile in
// milliseconds, and the answer's size in bytes.
func measureGet(ctx context.Context, url string, warm, n, runs int) (p50, p99 []float64, size int, err error) {
	for range warm {
		if _, size, err = timedGet(ctx, url); err != nil {
			return nil, nil, 0, err
		}
	}
	for range runs {
		var ms []float64
		for range n {
			took, _, err := timedGet(ctx, url)
			if err != nil {
				return nil, nil, 0, err
			}
			ms = append(ms, float64(took.Microseconds())/1000)
		}
		p50 = append(p50, Percentile(ms, 50))
		p99 = append(p99, Percentile(ms, 99))
	}
	return p50, p99, size, nil
}

// addGetFigures measures GET base+path and adds its figures under id for
// system.
func addGetFigures(ctx context.Context, run *Run, system, id, group, what, base, path string, n, runs int) error {
	p50, p99, size, err := measureGet(ctx, base+path, 10, n, runs)
	if err != nil {
		return err
	}
	note := fmt.Sprintf("GET %s, an answer of %s bytes", path, FormatValue(float64(size)))
	run.Add(Figure{ID: id + ".p50", Group: group, Name: what + ", median of " + fmt.Sprint(n) + " requests in a row",
		System: system, Unit: "ms", Better: LowerIsBetter, Note: note}, p50)
	run.Add(Figure{ID: id + ".p99", Group: group, Name: what + ", p99 of " + fmt.Sprint(n) + " requests in a row",
		System: system, Unit: "ms", Better: LowerIsBetter}, p99)
	return nil
}
