package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Options configure a run of the harness.
type Options struct {
	// Root is the repository's root directory.
	Root string
	// WorkDir holds the labs; a temporary directory if empty.
	WorkDir string
	// Quick asks for the short development mode.
	Quick bool
	// LogMiB is the size of the log ingestion workload's log; 1024 if
	// zero.
	LogMiB int64
	// SkipSlow leaves out Buildbot's poller failover, which takes about
	// 15 minutes.
	SkipSlow bool
	// GoBench is the path of `go test -bench` output to include; none if
	// empty.
	GoBench string
	// Only, if not empty, runs only the workloads whose names it holds.
	Only []string
	// Log receives progress.
	Log *slog.Logger
}

// env is what the workloads of one run share.
type env struct {
	opts            Options
	log             *slog.Logger
	workDir         string
	regentBin       string
	buildbotScripts string
	pg              *postgres
}

// newEnv builds the regent binary into a fresh work directory.
func newEnv(ctx context.Context, opts Options) (*env, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.LogMiB <= 0 {
		opts.LogMiB = 1024
	}
	dir, err := os.MkdirTemp(opts.WorkDir, "regent-bench-")
	if err != nil {
		return nil, fmt.Errorf("make work directory: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	e := &env{opts: opts, log: opts.Log, workDir: dir,
		regentBin:       filepath.Join(dir, "regent"),
		buildbotScripts: filepath.Join(opts.Root, "scripts", "buildbot")}
	if _, err := runCommand(ctx, opts.Root, nil, "go", "build", "-o", e.regentBin, "./cmd/regent"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("build regent: %w", err)
	}
	return e, nil
}

// close stops PostgreSQL if it was started and removes the work
// directory.
func (e *env) close() {
	if e.pg != nil {
		if err := e.pg.close(); err != nil {
			e.log.Warn("cannot clean up PostgreSQL", "err", err)
		}
	}
	if err := os.RemoveAll(e.workDir); err != nil {
		e.log.Warn("cannot remove work directory", "dir", e.workDir, "err", err)
	}
}

// lab makes a lab for one workload.
func (e *env) lab(name string) (*Lab, error) { return NewLab(e.workDir, name, e.log) }

// database returns a fresh database: a SQLite file in lab, or a new
// database on the PostgreSQL server, started on first use.
func (e *env) database(ctx context.Context, lab *Lab, kind, label string) (string, error) {
	if kind == "sqlite" {
		return lab.Path(label + ".db"), nil
	}
	if e.pg == nil {
		pg, err := startPostgres(e.workDir)
		if err != nil {
			return "", err
		}
		e.pg = pg
	}
	return e.pg.newDatabase(ctx, label)
}

// workload is one named part of a run; it adds figures to the run.
type workload struct {
	name string
	// figures describes, for a workload that fails, the figures it would
	// have added, so the report shows them as not measured.
	figures []Figure
	run     func(ctx context.Context, e *env, run *Run) error
}

// runWorkloads runs each workload selected, logging and recording a
// failure as figures not measured, and returns the run.
func runWorkloads(ctx context.Context, e *env, run *Run, workloads []workload) {
	for _, w := range workloads {
		if len(e.opts.Only) > 0 && !contains(e.opts.Only, w.name) {
			continue
		}
		start := time.Now()
		e.log.Info("workload started", "workload", w.name)
		before := len(run.Figures)
		err := w.run(ctx, e, run)
		if err != nil {
			e.log.Error("workload failed", "workload", w.name, "err", err)
			run.Notes = append(run.Notes, fmt.Sprintf("Workload %s failed: %s", w.name, firstLine(err.Error())))
			for _, f := range w.figures {
				if _, ok := run.Figure(f.System, f.ID); !ok {
					run.Missing(f, "the workload failed in this run (see notes)")
				}
			}
			if ctx.Err() != nil {
				return
			}
			continue
		}
		e.log.Info("workload finished", "workload", w.name, "figures", len(run.Figures)-before,
			"took", time.Since(start).Round(time.Second))
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// newRun starts a run's record.
func newRun(ctx context.Context, opts Options, target string) (*Run, error) {
	commit, dirty, err := GitHead(ctx, opts.Root)
	if err != nil {
		return nil, err
	}
	return &Run{Target: target, Commit: commit, Dirty: dirty, Date: time.Now().UTC(),
		Machine: DescribeMachine(), Quick: opts.Quick, Load: []float64{LoadAverage()}}, nil
}
