// Command regent is the Regent continuous-integration system: masters,
// workers, the quickstart, and configuration tools.
//
// Exit status: 0 for success, 1 for a failed build or check, 2 for usage
// or runtime errors.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/regent-ci/regent/internal/worker"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string) int
}

var commands []command

func init() {
	commands = []command{
		{"quickstart", "run a master and a local worker on SQLite, building a git repository", runQuickstart},
		{"master", "run a master", runMaster},
		{"worker", "run a worker", runWorker},
		{"config", "check, diff and apply configurations", runConfig},
		{"build", "force, cancel, rebuild and show builds, and print their logs", runBuild},
		{"cluster", "show the masters and clustered services of a cluster", runCluster},
		{"version", "print the version", func(context.Context, []string) int {
			fmt.Println("regent", version)
			return 0
		}},
	}
}

func main() {
	// A worker runs each step under a keeper: this binary, started again.
	worker.RunKeeperIfRequested()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(ctx, args[1:])
		}
	}
	fmt.Fprintf(stderr, "regent: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: regent COMMAND [flags]\n\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'regent COMMAND --help' for a command's flags.")
}

// parse parses a subcommand's flags, which may come before, after or
// between its positional arguments; those are left in positional. It
// returns false and the exit status when the program should stop (help
// asked for, or a usage error).
func parse(fs *flag.FlagSet, args []string) (int, bool) {
	var positional []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		if err != nil {
			return 2, false
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	// Parse the positional arguments alone so that fs.Args reports them.
	fs.Parse(append([]string{"--"}, positional...))
	return 0, true
}

// noArgs refuses positional arguments to a command that takes none.
func noArgs(fs *flag.FlagSet) (int, bool) {
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2, false
	}
	return 0, true
}

// positive refuses a duration flag that is zero or negative.
func positive(fs *flag.FlagSet, name string, d time.Duration) (int, bool) {
	if d <= 0 {
		fmt.Fprintf(os.Stderr, "%s: --%s must be positive, not %s\n", fs.Name(), name, d)
		return 2, false
	}
	return 0, true
}

// fail prints an error and returns the runtime-error exit status.
func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "regent: "+format+"\n", args...)
	return 2
}

// newLogger returns the process's structured logger.
func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// readSecretFile reads a one-line secret such as a password or token.
func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := string(b)
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}
