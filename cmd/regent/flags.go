package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/regent-ci/regent/internal/cluster"
	"github.com/regent-ci/regent/internal/config"
)

// parse parses a subcommand's flags, which may come before, after or
// between its positional arguments; those are left in positional. It
// returns false and the exit status when the program should stop (help
// asked for, or a usage error). Values no command can use are refused
// here, the same way for every flag (see checkFlags); mayBeEmpty names
// the string flags whose empty value means something.
func parse(fs *flag.FlagSet, args []string, mayBeEmpty ...string) (int, bool) {
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
	return checkFlags(fs, mayBeEmpty)
}

// checkFlags refuses, for every flag of fs: a duration that is zero or
// negative, a number given that is zero or negative, and a string given
// as empty unless its name is in mayBeEmpty. A number or string left to
// its default is not checked: a default of 0 or "" stands for "chosen for
// you". Flags of other kinds (booleans, -p NAME=VALUE) pass; a command
// that takes a new kind of flag adds its case here.
func checkFlags(fs *flag.FlagSet, mayBeEmpty []string) (int, bool) {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var problem string
	fs.VisitAll(func(f *flag.Flag) {
		g, ok := f.Value.(flag.Getter)
		if problem != "" || !ok {
			return
		}
		switch v := g.Get().(type) {
		case time.Duration:
			if v <= 0 {
				problem = badValue(f.Name, f.Value.String(), "want a positive duration such as 30s or 2m")
			}
		case int:
			problem = positiveNumber(f, given[f.Name], int64(v))
		case int64:
			problem = positiveNumber(f, given[f.Name], v)
		case string:
			if given[f.Name] && v == "" && !slices.Contains(mayBeEmpty, f.Name) {
				problem = badValue(f.Name, v, "may not be empty (leave the flag out for its default)")
			}
		}
	})
	if problem != "" {
		return usageError(fs, "%s", problem)
	}
	return 0, true
}

// positiveNumber refuses a number flag given as zero or less.
func positiveNumber(f *flag.Flag, given bool, n int64) string {
	if given && n <= 0 {
		return badValue(f.Name, f.Value.String(), "want a positive number")
	}
	return ""
}

// badValue says what is wrong with a flag's value, naming both.
func badValue(name, value, why string) string {
	return fmt.Sprintf("invalid value %q for --%s: %s", value, name, why)
}

// usageError prints a usage error of the command fs parses and returns
// the usage exit status.
func usageError(fs *flag.FlagSet, format string, args ...any) (int, bool) {
	fmt.Fprintf(fs.Output(), "%s: %s\nRun '%s --help' for its flags.\n", fs.Name(),
		fmt.Sprintf(format, args...), fs.Name())
	return 2, false
}

// noArgs refuses positional arguments to a command that takes none.
func noArgs(fs *flag.FlagSet) (int, bool) {
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	return 0, true
}

// logLevel reads a --log-level flag.
func logLevel(fs *flag.FlagSet, value string) (slog.Level, int, bool) {
	levels := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo,
		"warn": slog.LevelWarn, "error": slog.LevelError}
	l, ok := levels[strings.ToLower(value)]
	if !ok {
		code, _ := usageError(fs, "%s", badValue("log-level", value, "want debug, info, warn or error"))
		return 0, code, false
	}
	return l, 0, true
}

// checkName refuses a flag value that breaks the rule of configuration names.
func checkName(fs *flag.FlagSet, flagName, value string) (int, bool) {
	if err := config.CheckName(value); err != nil {
		return usageError(fs, "%s", badValue(flagName, value, err.Error()))
	}
	return 0, true
}

// nameList reads a comma-separated flag of names, each following the rule
// of configuration names; a blank value is no names.
func nameList(fs *flag.FlagSet, flagName, value string) ([]string, int, bool) {
	list, code, ok := splitList(fs, flagName, value)
	if !ok {
		return nil, code, false
	}
	for _, n := range list {
		if code, ok := checkName(fs, flagName, n); !ok {
			return nil, code, false
		}
	}
	return list, 0, true
}

// roleList reads the --roles flag: at least one role, each a known one.
func roleList(fs *flag.FlagSet, value string) ([]string, int, bool) {
	list, code, ok := splitList(fs, "roles", value)
	if !ok {
		return nil, code, false
	}
	known := strings.Join(cluster.DefaultRoles, ", ")
	if len(list) == 0 {
		code, _ := usageError(fs, "%s", badValue("roles", value, "give at least one of "+known))
		return nil, code, false
	}
	for _, r := range list {
		if !slices.Contains(cluster.DefaultRoles, r) {
			code, _ := usageError(fs, "%s", badValue("roles", value,
				fmt.Sprintf("unknown role %q; roles are %s", r, known)))
			return nil, code, false
		}
	}
	return list, 0, true
}

// splitList splits a comma-separated flag value into its items, trimmed
// of spaces. A blank value is no items; an empty item in a value that has
// others ("a,,b", "a,") is refused, being most likely a slip that would
// otherwise pass unseen.
func splitList(fs *flag.FlagSet, flagName, value string) ([]string, int, bool) {
	if strings.TrimSpace(value) == "" {
		return nil, 0, true
	}
	var out []string
	for i, item := range strings.Split(value, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			code, _ := usageError(fs, "%s", badValue(flagName, value,
				fmt.Sprintf("item %d of the comma-separated list is empty", i+1)))
			return nil, code, false
		}
		out = append(out, item)
	}
	return out, 0, true
}

// checkHTTPURL says what is wrong with the URL of a master, if anything.
func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("want an http:// or https:// URL such as http://127.0.0.1:8010")
	}
	return nil
}

// urlList reads a comma-separated flag of master URLs: at least one, each an
// http(s) URL.
func urlList(fs *flag.FlagSet, flagName, value string) ([]string, int, bool) {
	list, code, ok := splitList(fs, flagName, value)
	if !ok {
		return nil, code, false
	}
	if len(list) == 0 {
		code, _ := usageError(fs, "%s", badValue(flagName, value, "give at least one URL"))
		return nil, code, false
	}
	for _, u := range list {
		if err := checkHTTPURL(u); err != nil {
			code, _ := usageError(fs, "%s", badValue(flagName, value, fmt.Sprintf("%q: %v", u, err)))
			return nil, code, false
		}
	}
	return list, 0, true
}

// listenAddr refuses a --listen value that is not HOST:PORT with a port
// number from 0 (any free port) to 65535.
func listenAddr(fs *flag.FlagSet, value string) (int, bool) {
	_, port, err := net.SplitHostPort(value)
	if err != nil {
		return usageError(fs, "%s", badValue("listen", value, "want HOST:PORT such as 127.0.0.1:8010"))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return usageError(fs, "%s", badValue("listen", value,
			"want a port number from 1 to 65535, or 0 for any free port"))
	}
	return 0, true
}

// existingDir refuses a flag naming a directory the program only reads
// when there is no directory there. An empty value (the flag left out)
// passes.
func existingDir(fs *flag.FlagSet, flagName, value string) (int, bool) {
	if value == "" {
		return 0, true
	}
	fi, err := os.Stat(value)
	switch {
	case err != nil:
		return usageError(fs, "%s", badValue(flagName, value, fmt.Sprintf("no such directory (%v)", err)))
	case !fi.IsDir():
		return usageError(fs, "%s", badValue(flagName, value, "not a directory"))
	}
	return 0, true
}

// configSource refuses a --config value that cannot be a configuration
// source: a directory source must be a directory, and a git+ source must
// name a repository. Whether a git+ source can be fetched is known only
// once the master's configuration watcher fetches it.
func configSource(fs *flag.FlagSet, value string) (int, bool) {
	if value == "" {
		return 0, true
	}
	if rest, ok := strings.CutPrefix(value, "git+"); ok {
		if repo, _, _ := strings.Cut(rest, "#"); repo == "" {
			return usageError(fs, "%s", badValue("config", value, "want git+URL#REF:PATH"))
		}
		return 0, true
	}
	return existingDir(fs, "config", value)
}

// atLeast refuses a duration flag below its least useful value.
func atLeast(fs *flag.FlagSet, flagName string, value, least time.Duration) (int, bool) {
	if value < least {
		return usageError(fs, "%s", badValue(flagName, value.String(), "want at least "+least.String()))
	}
	return 0, true
}

// missingDatabase reports that a read-only command could not open its
// database, in words the user can act on when the file does not exist.
func missingDatabase(db string, err error) int {
	if errors.Is(err, os.ErrNotExist) {
		return fail("no database at %s: give the path of an existing SQLite database "+
			"(this command only reads, and creates none)", db)
	}
	return fail("%v", err)
}
