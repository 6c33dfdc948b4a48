package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/user"
	"strings"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

const configUsage = `Usage: regent config COMMAND SOURCE [flags]

SOURCE is a directory holding regent.star, or git+URL#REF:PATH.

Commands:
  check   evaluate and validate the configuration
  diff    show what applying it would change (--db DB or --api URL)
  apply   store it as the new active generation (--db DB or --api URL)

Run 'regent config COMMAND --help' for a command's flags.
`

func runConfig(ctx context.Context, args []string) int {
	sub, args, code, ok := subcommand(os.Stderr, "regent config", configUsage, args, "check", "diff", "apply")
	if !ok {
		return code
	}
	fs := flag.NewFlagSet("regent config "+sub, flag.ContinueOnError)
	secretsDir := fs.String("secrets-dir", "", "directory of secret files for secret(\"name\") (also REGENT_SECRET_NAME variables)")
	db, api, tokenFile, dryRun := new(string), new(string), new(string), new(bool)
	if sub != "check" {
		fs.StringVar(db, "db", "", "database: a SQLite file path or a postgres:// URL")
		fs.StringVar(api, "api", "", "URL of a running master to go through, e.g. http://127.0.0.1:8010; "+
			"it evaluates with its own secrets (the master's admin token is needed, even to diff)")
		fs.StringVar(tokenFile, "token-file", "", "with --api: file holding the master's admin token")
	}
	if sub == "apply" {
		fs.BoolVar(dryRun, "dry-run", false, "show the plan without applying it")
	}
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		code, _ := usageError(fs, "want exactly one configuration source (a directory or git+URL#REF:PATH)")
		return code
	}
	if sub != "check" {
		if code, ok := configTarget(fs, *db, *api, *tokenFile, *secretsDir); !ok {
			return code
		}
	}
	if code, ok := existingDir(fs, "secrets-dir", *secretsDir); !ok {
		return code
	}
	readOnly := sub == "diff" || *dryRun
	tmp, err := os.MkdirTemp("", "regent-config-")
	if err != nil {
		return fail("%v", err)
	}
	defer os.RemoveAll(tmp)
	root, source, err := config.FetchSource(ctx, fs.Arg(0), tmp)
	if err != nil {
		return fail("%v", err)
	}
	if *api != "" && sub != "check" {
		return applyThroughAPI(ctx, *api, *tokenFile, root, source, readOnly)
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
	s, err := openConfigStore(ctx, *db, readOnly)
	if err != nil {
		return missingDatabase(*db, err)
	}
	defer s.Close()
	// The store compares passwords with their stored digests.
	plan, err := s.Plan(ctx, st)
	if err != nil {
		return fail("%v", err)
	}
	fmt.Print(plan.String())
	if readOnly {
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

// configTarget checks the flags saying where diff and apply go: a
// database or a master, not both, and only the flags that go with it.
func configTarget(fs *flag.FlagSet, db, api, tokenFile, secretsDir string) (int, bool) {
	switch {
	case db == "" && api == "":
		return usageError(fs, "give one of --db or --api")
	case db != "" && api != "":
		return usageError(fs, "give one of --db or --api, not both")
	case api != "" && secretsDir != "":
		return usageError(fs, "--secrets-dir does not go with --api: the master evaluates with its own secrets")
	case api == "" && tokenFile != "":
		return usageError(fs, "--token-file goes with --api only")
	case api != "":
		if err := checkHTTPURL(api); err != nil {
			return usageError(fs, "%s", badValue("api", api, err.Error()))
		}
	}
	return 0, true
}

// openConfigStore opens the database of diff and apply; one that only
// reads it creates no new database.
func openConfigStore(ctx context.Context, db string, readOnly bool) (*store.Store, error) {
	if readOnly {
		return store.Open(ctx, db, store.ExistingOnly())
	}
	return store.Open(ctx, db)
}

func appliedBy() string {
	host, _ := os.Hostname()
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return "cli:" + name + "@" + host
}

// applyThroughAPI sends the configuration's files to a master, which
// evaluates them with its own secrets and applies them (or, for a dry
// run, only answers the plan).
func applyThroughAPI(ctx context.Context, api, tokenFile, root, source string, dryRun bool) int {
	files, err := config.ReadFiles(root)
	if err != nil {
		return fail("%v", err)
	}
	body, _ := json.Marshal(map[string]any{"files": files, "source": source, "dry_run": dryRun})
	req, err := http.NewRequestWithContext(ctx, "POST", strings.TrimSuffix(api, "/")+"/api/v1/config/apply",
		bytes.NewReader(body))
	if err != nil {
		return fail("%v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if tokenFile != "" {
		token, err := readSecretFile(tokenFile)
		if err != nil {
			return fail("read admin token: %v", err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
	}
	timeout, ok := apiTimeout()
	if !ok {
		return fail("REGENT_API_TIMEOUT=%q is not a positive duration such as 30s", os.Getenv("REGENT_API_TIMEOUT"))
	}
	resp, err := apiHTTPClient(timeout).Do(req)
	if err != nil {
		return fail("reach master %s: %v", api, err)
	}
	defer resp.Body.Close()
	var out struct {
		Plan       string `json:"plan"`
		Generation int64  `json:"generation"`
		Created    bool   `json:"created"`
		Error      string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return fail("read the master's answer (status %d): %v", resp.StatusCode, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnprocessableEntity:
		fmt.Fprintln(os.Stderr, out.Error)
		return 1
	case resp.StatusCode != http.StatusOK:
		return fail("master answered %s: %s", resp.Status, out.Error)
	}
	fmt.Print(out.Plan)
	switch {
	case dryRun:
	case out.Created:
		fmt.Printf("applied generation %d\n", out.Generation)
	default:
		fmt.Printf("unchanged: generation %d is already this configuration\n", out.Generation)
	}
	return 0
}
