package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// Systems measured.
const (
	SystemRegent   = "regent"
	SystemBuildbot = "buildbot"
)

// Which way a figure improves.
const (
	LowerIsBetter  = "lower"
	HigherIsBetter = "higher"
)

// Report is the machine-readable benchmark report, docs/benchmarks.json.
// Each make target replaces its own run and keeps the other's, so the
// report always holds the latest of both.
type Report struct {
	// Regent is the latest `make bench`: Regent's own figures.
	Regent *Run `json:"regent,omitempty"`
	// Versus is the latest `make bench-buildbot`: the workloads both
	// systems can express, measured one after the other in one run.
	Versus *Run `json:"versus_buildbot,omitempty"`
}

// Run is one invocation of the harness.
type Run struct {
	// Target is the make target that produced the run.
	Target string `json:"target"`
	// Commit is the commit measured (git rev-parse HEAD); Dirty says the
	// working tree held uncommitted changes to Go files besides.
	Commit string `json:"commit"`
	Dirty  bool   `json:"dirty"`
	// Date is when the run started.
	Date time.Time `json:"date"`
	// Machine describes where it ran.
	Machine Machine `json:"machine"`
	// Quick is set for the reduced development mode (QUICK=1).
	Quick bool `json:"quick"`
	// Elapsed is the run's wall time in seconds.
	Elapsed float64 `json:"elapsed_s"`
	// Load is the machine's one-minute load average at the start and at
	// the end of the run: other work on the machine makes figures noisy.
	Load []float64 `json:"load_average,omitempty"`
	// Figures are the measurements, in the order they were taken.
	Figures []Figure `json:"figures"`
	// Ratios compare the two systems' figures of the same id; only in
	// Versus.
	Ratios []Ratio `json:"ratios,omitempty"`
	// Notes are remarks on the run as a whole.
	Notes []string `json:"notes,omitempty"`
}

// Machine describes the machine a run measured on.
type Machine struct {
	CPUs      int    `json:"cpus"`
	MemoryMiB int    `json:"memory_mib"`
	Kernel    string `json:"kernel,omitempty"`
	GoVersion string `json:"go_version"`
	Buildbot  string `json:"buildbot_version,omitempty"`
}

// Figure is one measured quantity of one system, with the value each
// repeated run gave.
type Figure struct {
	// ID names the figure uniquely in its run, such as
	// "dispatch.w4.throughput"; the two systems' versions of one workload
	// share it.
	ID string `json:"id"`
	// Group is the heading it is shown under, Name its row.
	Group string `json:"group"`
	Name  string `json:"name"`
	// System is SystemRegent or SystemBuildbot.
	System string `json:"system"`
	// Unit is the unit of the values, such as "ms" or "builds/s".
	Unit string `json:"unit"`
	// Better is LowerIsBetter or HigherIsBetter.
	Better string `json:"better"`
	// Runs holds one value per repeated run.
	Runs []float64 `json:"runs,omitempty"`
	// Summary summarizes Runs.
	Summary *Summary `json:"summary,omitempty"`
	// NotMeasured says why there is no value, when there is none.
	NotMeasured string `json:"not_measured,omitempty"`
	// Note qualifies the figure.
	Note string `json:"note,omitempty"`
}

// Ratio compares Regent's median with Buildbot's for one figure id.
type Ratio struct {
	ID string `json:"id"`
	// Advantage is how many times better Regent's median is: Buildbot's
	// over Regent's for a figure where lower is better, Regent's over
	// Buildbot's otherwise. Above 1 Regent is better.
	Advantage float64 `json:"regent_advantage"`
}

// Measured reports whether the figure has a value.
func (f Figure) Measured() bool { return f.Summary != nil && f.Summary.N > 0 }

// Add records a figure from the values of its repeated runs, summarizing
// them.
func (r *Run) Add(f Figure, runs []float64) {
	f.Runs = runs
	if len(runs) > 0 {
		s := Summarize(runs)
		f.Summary = &s
	}
	r.Figures = append(r.Figures, f)
}

// Missing records a figure that could not be measured, and why.
func (r *Run) Missing(f Figure, why string) {
	f.NotMeasured = why
	r.Figures = append(r.Figures, f)
}

// Figure returns the figure of a system with the given id.
func (r *Run) Figure(system, id string) (Figure, bool) {
	for _, f := range r.Figures {
		if f.System == system && f.ID == id {
			return f, true
		}
	}
	return Figure{}, false
}

// ComputeRatios fills Ratios from every id that both systems measured.
func (r *Run) ComputeRatios() {
	r.Ratios = nil
	for _, bb := range r.Figures {
		if bb.System != SystemBuildbot || !bb.Measured() {
			continue
		}
		rg, ok := r.Figure(SystemRegent, bb.ID)
		if !ok || !rg.Measured() {
			continue
		}
		if a, ok := advantage(rg.Summary.Median, bb.Summary.Median, bb.Better); ok {
			r.Ratios = append(r.Ratios, Ratio{ID: bb.ID, Advantage: a})
		}
	}
}

// Ratio returns the ratio of id, if both systems measured it.
func (r *Run) Ratio(id string) (float64, bool) {
	for _, x := range r.Ratios {
		if x.ID == id {
			return x.Advantage, true
		}
	}
	return 0, false
}

// advantage returns how many times better regent is than buildbot.
func advantage(regent, buildbot float64, better string) (float64, bool) {
	if better == HigherIsBetter {
		regent, buildbot = buildbot, regent
	}
	if regent <= 0 || buildbot <= 0 {
		return 0, false
	}
	return buildbot / regent, true
}

// LoadReport reads a report, returning an empty one if the file does not
// exist.
func LoadReport(path string) (*Report, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Report{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("read report %s: %w", path, err)
	}
	return &r, nil
}

// Save writes the report as indented JSON, atomically.
func (r *Report) Save(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	return writeAtomic(path, append(data, '\n'))
}

// writeAtomic replaces path's content through a temporary file.
func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
