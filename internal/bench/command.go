package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
)

// Main runs the harness's command line, regent-bench, and returns its
// exit status: 0 on success, 1 if a workload failed (its figures are
// then recorded as not measured), 2 on usage or runtime errors.
//
//	regent-bench regent [flags]   Regent's own figures (make bench)
//	regent-bench versus [flags]   Regent beside Buildbot (make bench-buildbot)
//	regent-bench render [flags]   docs/benchmarks.md again from the JSON
func Main(ctx context.Context, args []string, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "regent" && args[0] != "versus" && args[0] != "render") {
		fmt.Fprintln(stderr, "usage: regent-bench regent|versus|render [flags]; regent-bench regent --help for the flags")
		return 2
	}
	fs := flag.NewFlagSet("regent-bench "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := fs.String("root", ".", "the repository's root directory")
	jsonPath := fs.String("json", "docs/benchmarks.json", "the machine-readable report, relative to -root")
	mdPath := fs.String("md", "docs/benchmarks.md", "the Markdown report, relative to -root")
	quick := fs.Bool("quick", false, "short development mode: fewer runs and builds")
	logMiB := fs.Int64("log-mb", 0, "MiB the log ingestion build prints (default 1024, 32 with -quick)")
	skipSlow := fs.Bool("skip-slow", false, "leave out Buildbot's poller failover (about 15 minutes)")
	goBench := fs.String("gobench", "", "`go test -bench` output to include, such as bench.txt")
	only := fs.String("only", "", "comma-separated workloads to run, all if empty")
	workDir := fs.String("workdir", "", "where to make the labs (default: the temporary directory)")
	verbose := fs.Bool("v", false, "log every process started")
	if err := fs.Parse(args[1:]); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	abs, err := filepath.Abs(*root)
	if err != nil {
		fmt.Fprintf(stderr, "regent-bench: %v\n", err)
		return 2
	}
	if *logMiB == 0 {
		*logMiB = 1024
		if *quick {
			*logMiB = 32
		}
	}
	opts := Options{Root: abs, WorkDir: *workDir, Quick: *quick, LogMiB: *logMiB, SkipSlow: *skipSlow,
		GoBench: *goBench, Log: log}
	if *only != "" {
		opts.Only = strings.Split(*only, ",")
	}
	jsonFile, mdFile := underRoot(abs, *jsonPath), underRoot(abs, *mdPath)

	var run *Run
	switch args[0] {
	case "regent":
		run, err = RunRegent(ctx, opts)
	case "versus":
		run, err = RunVersus(ctx, opts)
	}
	if err != nil {
		fmt.Fprintf(stderr, "regent-bench: %v\n", err)
		return 2
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "regent-bench: interrupted; the reports are left as they were")
		return 2
	}

	// Read the report only now, so that a run of the other target that
	// ended meanwhile is kept.
	report, err := LoadReport(jsonFile)
	if err != nil {
		fmt.Fprintf(stderr, "regent-bench: %v\n", err)
		return 2
	}
	switch args[0] {
	case "regent":
		report.Regent = run
	case "versus":
		report.Versus = run
	}
	if err := report.Save(jsonFile); err != nil {
		fmt.Fprintf(stderr, "regent-bench: %v\n", err)
		return 2
	}
	if err := writeAtomic(mdFile, RenderMarkdown(report)); err != nil {
		fmt.Fprintf(stderr, "regent-bench: %v\n", err)
		return 2
	}
	log.Info("reports written", "json", jsonFile, "markdown", mdFile)
	if run != nil {
		for _, f := range run.Figures {
			if !f.Measured() && !strings.HasPrefix(f.NotMeasured, "skipped") {
				return 1
			}
		}
	}
	return 0
}

// underRoot resolves a path relative to the repository's root.
func underRoot(root, path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(root, path)
}
