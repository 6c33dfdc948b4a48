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

func runConfig(ctx context.Context, args []string) int {
	const usage = `Usage: regent config COMMAND SOURCE [flags]

SOURCE is a directory holding regent.star, or git+URL#REF:PATH.

Commands:
  check   evaluate and validate the configuration
  diff    show what applying it would change (--db DB or --api URL)
  apply   store it as the new active generation (--db DB or --api URL)

Run 'regent config COMMAND --help' for a command's flags.
`
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(os.Stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	sub, args := args[0], args[1:]
	if sub != "check" && sub != "diff" && sub != "apply" {
		fmt.Fprintf(os.Stderr, "regent config: unknown command %q\n\n%s", sub, usage)
		return 2
	}
	fs := flag.NewFlagSet("regent config "+sub, flag.ContinueOnError)
	secretsDir := fs.String("secrets-dir", "", "directory of secret files for secret(\"name\") (also REGENT_SECRET_NAME variables)")
	db, api, tokenFile, dryRun := new(string), new(string), new(string), new(bool)
	if sub != "check" {
		fs.StringVar(db, "db", "", "database: a SQLite file path or a postgres:// URL")
		fs.StringVar(api, "api", "", "URL of a running master to go through, e.g. http://127.0.0.1:8010; it evaluates with its own secrets")
		fs.StringVar(tokenFile, "token-file", "", "with --api: file holding the master's admin token")
	}
	if sub == "apply" {
		fs.BoolVar(dryRun, "dry-run", false, "show the plan without applying it")
	}
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(os.Stderr, "regent config %s: want exactly one configuration source (a directory or git+URL#REF:PATH)\n", sub)
		return 2
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
	if *api != "" && sub != "check" {
		return applyThroughAPI(ctx, *api, *tokenFile, root, source, sub == "diff" || *dryRun)
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
		return fail("config %s needs --db or --api", sub)
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
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fail("reach master: %v", err)
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
