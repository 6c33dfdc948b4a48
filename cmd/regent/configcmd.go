package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/user"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

func runConfig(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "Usage: regent config check|diff|apply DIR [flags]")
		return 2
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("regent config "+sub, flag.ContinueOnError)
	db := fs.String("db", "", "database: a SQLite file path or a postgres:// URL")
	secretsDir := fs.String("secrets-dir", "", "directory of secret files for secret(\"name\")")
	dryRun := fs.Bool("dry-run", false, "apply: show the plan without applying it")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(os.Stderr, "regent config %s: want exactly one configuration source (a directory or git+URL#REF:PATH)\n", sub)
		return 2
	}
	if sub != "check" && sub != "diff" && sub != "apply" {
		return fail("unknown config command %q (want check, diff or apply)", sub)
	}
	tmp, err := os.MkdirTemp("", "regent-config-")
	if err != nil {
		return fail("%v", err)
	}
	defer os.RemoveAll(tmp)
	root, source, err := config.FetchSource(ctx, fs.Arg(0), tmp)
	if err != nil {
		return fail("%v", err)
	}
	st, err := config.Load(ctx, root, config.Options{Secrets: secretProvider(*secretsDir)})
	var cerrs config.Errors
	if errors.As(err, &cerrs) {
		fmt.Fprintf(os.Stderr, "%v\nconfiguration invalid: %d error(s)\n", err, len(cerrs))
		return 1
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "configuration invalid: %v\n", err)
		return 1
	}
	if sub == "check" {
		fmt.Printf("configuration valid: %d builders, %d workers, %d repositories, %d schedulers\n",
			len(st.Builders), len(st.Workers), len(st.Repos), len(st.Schedulers))
		return 0
	}
	if *db == "" {
		return fail("config %s needs --db", sub)
	}
	s, err := store.Open(ctx, *db)
	if err != nil {
		return fail("%v", err)
	}
	defer s.Close()
	_, active, err := s.ActiveState(ctx)
	if errors.Is(err, store.ErrNotFound) {
		active = &config.State{}
	} else if err != nil {
		return fail("%v", err)
	}
	plan := config.Diff(active, st)
	fmt.Print(plan.String())
	if sub == "diff" || *dryRun {
		return 0
	}
	res, err := s.Apply(ctx, st, source, appliedBy())
	if err != nil {
		return fail("%v", err)
	}
	if !res.Created {
		fmt.Printf("unchanged: generation %d is already this configuration\n", res.Generation.Number)
		return 0
	}
	fmt.Printf("applied generation %d (%d pending requests cancelled, %d worker sessions revoked)\n",
		res.Generation.Number, res.CancelledRequests, res.RevokedSessions)
	return 0
}

func appliedBy() string {
	host, _ := os.Hostname()
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return "cli:" + name + "@" + host
}
