package chaos

import (
	"fmt"
	"strings"
	"time"
)

// Trace window: the events shown around a violation.
const (
	traceBefore   = 6 * time.Second
	traceAfter    = 2 * time.Second
	traceMaxLines = 30
	reportMax     = 10 // violations shown in full; the rest are counted
)

// Report describes a failed campaign: the seed that replays it, and each
// violation with the events around it.
func Report(h *History, vs []Violation) string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos campaign FAILED: seed %d, duration %s: %d violation(s)\n", h.Seed, h.Duration, len(vs))
	fmt.Fprintf(&b, "replay with: make chaos SEED=%d DURATION=%s\n", h.Seed, h.Duration)
	for i, v := range vs {
		if i == reportMax {
			fmt.Fprintf(&b, "\n... and %d more\n", len(vs)-reportMax)
			break
		}
		fmt.Fprintf(&b, "\n[%d] %s at %s\n    %s\n", i+1, v.Invariant, h.clock(v.At), v.Message)
		for _, line := range h.Trace(v.At) {
			b.WriteString("      " + line + "\n")
		}
	}
	return b.String()
}

// Trace returns the campaign's events from a little before at to a little
// after, in time order; when there are more than traceMaxLines, the
// earliest are left out.
func (h *History) Trace(at time.Time) []string {
	var lines []string
	from, to := at.Add(-traceBefore), at.Add(traceAfter)
	for _, e := range h.Events {
		if e.At.Before(from) || e.At.After(to) {
			continue
		}
		lines = append(lines, fmt.Sprintf("%s %-16s %-8s %s", h.clock(e.At), e.Kind, e.Target, e.Detail))
	}
	if len(lines) > traceMaxLines {
		cut := len(lines) - traceMaxLines
		lines = append([]string{"..."}, lines[cut:]...)
	}
	return lines
}

// Summary is a few lines about what a campaign did, for its log.
func Summary(h *History) string {
	results := map[string]int{}
	for _, b := range h.Final.Builds {
		results[b.Result]++
	}
	faults := map[FaultKind]int{}
	for _, f := range h.Faults {
		faults[f.Kind]++
	}
	fenced, exits := 0, 0
	for _, l := range h.Services {
		if strings.Contains(l.Msg, "fenced") {
			fenced++
		}
	}
	for _, e := range h.Events {
		if e.Kind == "exit" {
			exits++
		}
	}
	return fmt.Sprintf("seed %d, %s: %d forces, %d pushes, %d applies (generation %d), %d faults %v; "+
		"%d requests, %d builds %v, %d changes, %d marker lines, %d ownership samples, %d list samples, "+
		"%d fenced refusals logged, %d token grants and %d fenced rows in the database, "+
		"%d processes ended on their own; settled %s after healing",
		h.Seed, h.Duration, len(h.Forces), len(h.Pushes), len(h.Applies), h.Final.Generation, len(h.Faults), faults,
		len(h.Final.Requests), len(h.Final.Builds), results, len(h.Final.Changes), len(h.Markers),
		len(h.Samples), len(h.Lists), fenced, len(h.Final.Grants), len(h.Final.Fenced), exits,
		h.Settled.Sub(h.Healed).Round(time.Millisecond))
}
