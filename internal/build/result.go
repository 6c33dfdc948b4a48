// Package build holds the vocabulary of builds: states, results and how
// results combine.
package build

// Build and build request states.
const (
	StatePending  = "pending"
	StateRunning  = "running"
	StateFinished = "finished"
)

// Results, ordered from best to worst by Worse.
const (
	Success   = "success"
	Warnings  = "warnings"
	Failure   = "failure"
	Skipped   = "skipped"
	Exception = "exception"
	Cancelled = "cancelled"
	Retry     = "retry"
)

var severity = map[string]int{
	Skipped:   0,
	Success:   1,
	Warnings:  2,
	Failure:   3,
	Exception: 4,
	Retry:     5,
	Cancelled: 6,
}

// Valid reports whether r is a known result.
func Valid(r string) bool {
	_, ok := severity[r]
	return ok
}

// Worse returns the more severe of two results; it is how step results
// combine into a build result.
func Worse(a, b string) string {
	if severity[b] > severity[a] {
		return b
	}
	return a
}

// OK reports whether a result counts as passing.
func OK(r string) bool { return r == Success || r == Warnings || r == Skipped }
