// Command regent is the Regent continuous-integration system: masters,
// workers, the quickstart, and configuration tools.
//
// Exit status: 0 for success, 1 for a failed build or check, 2 for usage
// or runtime errors.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

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
		{"version", "print the version", runVersion},
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
	var text strings.Builder
	usage(&text)
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = c.name
	}
	name, args, code, ok := subcommand(stderr, "regent", text.String(), args, names...)
	if !ok {
		return code
	}
	i := slices.IndexFunc(commands, func(c command) bool { return c.name == name })
	return commands[i].run(ctx, args)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: regent COMMAND [flags]\n\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'regent COMMAND --help' for a command's flags.")
}

// subcommand splits the subcommand off the arguments of a command group
// such as "regent config". With no subcommand it prints the group's usage
// and fails; with -h, --help or help it prints the usage and succeeds; an
// unknown subcommand is a usage error.
func subcommand(w io.Writer, group, usage string, args []string, names ...string) (string, []string, int, bool) {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(w, usage)
		if len(args) == 0 {
			return "", nil, 2, false
		}
		return "", nil, 0, false
	}
	if !slices.Contains(names, args[0]) {
		fmt.Fprintf(w, "%s: unknown command %q\n\n%s", group, args[0], usage)
		return "", nil, 2, false
	}
	return args[0], args[1:], 0, true
}

func runVersion(_ context.Context, args []string) int {
	fs := flag.NewFlagSet("regent version", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(fs.Output(), "Usage: regent version\n\nPrint the version of this binary.") }
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if code, ok := noArgs(fs); !ok {
		return code
	}
	fmt.Println("regent", version)
	return 0
}

// fail prints an error and returns the runtime-error exit status.
func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "regent: "+format+"\n", args...)
	return 2
}

// newLogger returns the process's structured logger.
func newLogger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
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
