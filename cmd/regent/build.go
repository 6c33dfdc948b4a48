package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/regent-ci/regent/internal/config"
)

const buildUsage = `Usage: regent build COMMAND ARGS [flags]

Commands:
  force BUILDER [-p NAME=VALUE]... [--reason TEXT] [--wait]
                   queue a build of BUILDER with properties
  cancel ID [--reason TEXT]
                   cancel a running build
  rebuild ID [--wait]
                   queue a new build of a build's builder, with its properties
  show ID [--json] show a build, its steps and properties
  logs ID [--step N] [--follow]
                   print the raw log of every step (or of step N); --follow
                   keeps printing until the build has finished

Every command goes through a master's REST API: --api URL (default
$REGENT_API, or http://127.0.0.1:8010) and, when the master requires an
admin token for actions, --token-file FILE.

Exit status: 0 on success; 1 when the build shown or waited for
(show, force --wait, rebuild --wait, logs --follow) finished with
failure, exception, cancelled or retry; 2 for usage or runtime errors
(such as an unknown builder or build, or a master that cannot be reached).
A build not finished yet counts as success for show.
`

func runBuild(ctx context.Context, args []string) int {
	cmds := map[string]func(context.Context, *apiClient, *flag.FlagSet, []string) int{
		"force": buildForce, "cancel": buildCancel, "rebuild": buildRebuild,
		"show": buildShow, "logs": buildLogs,
	}
	sub, args, code, ok := subcommand(os.Stderr, "regent build", buildUsage, args,
		"force", "cancel", "rebuild", "show", "logs")
	if !ok {
		return code
	}
	run := cmds[sub]
	fs := flag.NewFlagSet("regent build "+sub, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), buildUsage+"\nFlags of "+sub+":\n")
		fs.PrintDefaults()
	}
	api := fs.String("api", envOr("REGENT_API", "http://127.0.0.1:8010"), "URL of a master")
	tokenFile := fs.String("token-file", "", "file holding the master's admin token")
	timeout, ok := apiTimeout()
	if !ok {
		return fail("REGENT_API_TIMEOUT=%q is not a positive duration such as 30s", os.Getenv("REGENT_API_TIMEOUT"))
	}
	c := &apiClient{hc: apiHTTPClient(timeout)}
	return run(ctx, c.configure(api, tokenFile), fs, args)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// properties collects -p NAME=VALUE flags.
type properties map[string]string

func (p properties) String() string { return "" }

func (p properties) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want NAME=VALUE, not %q", v)
	}
	p[k] = val
	return nil
}

func buildForce(ctx context.Context, c *apiClient, fs *flag.FlagSet, args []string) int {
	props := properties{}
	fs.Var(props, "p", "a property of the build, NAME=VALUE (repeatable)")
	reason := fs.String("reason", "forced from the command line", "why the build is forced")
	wait := fs.Bool("wait", false, "wait for the build to finish and exit with its result")
	builder, code, ok := oneArg(fs, args, "a builder name")
	if !ok {
		return code
	}
	if err := config.CheckName(builder); err != nil {
		code, _ := usageError(fs, "no builder can be called so: %v", err)
		return code
	}
	if err := c.init(); err != nil {
		return fail("%v", err)
	}
	var bs apiBuildset
	body := map[string]any{"reason": *reason, "properties": props}
	if err := c.do(ctx, "POST", "/builders/"+url.PathEscape(builder)+"/force", body, &bs); err != nil {
		return fail("force %s: %v", builder, err)
	}
	return c.queued(ctx, bs, *wait)
}

func buildRebuild(ctx context.Context, c *apiClient, fs *flag.FlagSet, args []string) int {
	wait := fs.Bool("wait", false, "wait for the build to finish and exit with its result")
	id, code, ok := buildID(fs, args)
	if !ok {
		return code
	}
	if err := c.init(); err != nil {
		return fail("%v", err)
	}
	var bs apiBuildset
	if err := c.do(ctx, "POST", fmt.Sprintf("/builds/%d/rebuild", id), map[string]any{}, &bs); err != nil {
		return fail("rebuild build %d: %v", id, err)
	}
	return c.queued(ctx, bs, *wait)
}

func buildCancel(ctx context.Context, c *apiClient, fs *flag.FlagSet, args []string) int {
	reason := fs.String("reason", "cancelled from the command line", "why the build is cancelled")
	id, code, ok := buildID(fs, args)
	if !ok {
		return code
	}
	if err := c.init(); err != nil {
		return fail("%v", err)
	}
	if err := c.do(ctx, "POST", fmt.Sprintf("/builds/%d/cancel", id),
		map[string]any{"reason": *reason}, nil); err != nil {
		return fail("cancel build %d: %v", id, err)
	}
	fmt.Printf("build %d: cancel requested\n", id)
	return 0
}

func buildShow(ctx context.Context, c *apiClient, fs *flag.FlagSet, args []string) int {
	asJSON := fs.Bool("json", false, "print the build and its steps as JSON")
	id, code, ok := buildID(fs, args)
	if !ok {
		return code
	}
	if err := c.init(); err != nil {
		return fail("%v", err)
	}
	var b apiBuildView
	if err := c.do(ctx, "GET", fmt.Sprintf("/builds/%d", id), nil, &b); err != nil {
		return fail("show build %d: %v", id, err)
	}
	steps, err := c.steps(ctx, id)
	if err != nil {
		return fail("show build %d: %v", id, err)
	}
	if *asJSON {
		var raw map[string]any
		_ = c.do(ctx, "GET", fmt.Sprintf("/builds/%d", id), nil, &raw)
		raw["steps"] = steps
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(raw)
	} else {
		printBuild(os.Stdout, b, steps)
	}
	return exitFor(b)
}

func buildLogs(ctx context.Context, c *apiClient, fs *flag.FlagSet, args []string) int {
	step := fs.Int("step", 0, "print only this step's log (steps are numbered from 1; default: every step)")
	follow := fs.Bool("follow", false, "keep printing as the build runs, until it has finished")
	id, code, ok := buildID(fs, args)
	if !ok {
		return code
	}
	if err := c.init(); err != nil {
		return fail("%v", err)
	}
	l := logPrinter{c: c, id: id, follow: *follow, only: *step, out: os.Stdout}
	b, err := l.run(ctx)
	if err != nil {
		return fail("logs of build %d: %v", id, err)
	}
	if *follow {
		return exitFor(b)
	}
	return 0
}

// oneArg returns the single positional argument, or the exit status of a
// usage error.
func oneArg(fs *flag.FlagSet, args []string, what string) (string, int, bool) {
	if code, ok := parse(fs, args); !ok {
		return "", code, false
	}
	if fs.NArg() != 1 {
		code, _ := usageError(fs, "want %s", what)
		return "", code, false
	}
	return fs.Arg(0), 0, true
}

func buildID(fs *flag.FlagSet, args []string) (int64, int, bool) {
	arg, code, ok := oneArg(fs, args, "a build id")
	if !ok {
		return 0, code, false
	}
	id, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || id <= 0 {
		code, _ := usageError(fs, "%q is not a build id: want a positive number", arg)
		return 0, code, false
	}
	return id, 0, true
}

// exitFor is the exit status for a build: 1 when it finished badly.
func exitFor(b apiBuildView) int {
	if b.State != "finished" || b.Result == nil {
		return 0
	}
	switch *b.Result {
	case "success", "warnings", "skipped":
		return 0
	}
	return 1
}

// apiBuildset is a buildset as the API answers a force or a rebuild.
type apiBuildset struct {
	ID       int64 `json:"id"`
	Requests []struct {
		ID      int64  `json:"id"`
		Builder string `json:"builder"`
		State   string `json:"state"`
		Build   *int64 `json:"build"`
	} `json:"requests"`
}

// apiBuildView is what the commands read of a build.
type apiBuildView struct {
	ID         int64             `json:"id"`
	Builder    string            `json:"builder"`
	Number     int64             `json:"number"`
	State      string            `json:"state"`
	Result     *string           `json:"result"`
	Reason     string            `json:"reason"`
	Properties map[string]string `json:"properties"`
	RetryOf    *int64            `json:"retry_of"`
	Worker     *string           `json:"worker"`
	Master     string            `json:"master"`
	CreatedAt  *time.Time        `json:"created_at"`
	StartedAt  *time.Time        `json:"started_at"`
	FinishedAt *time.Time        `json:"finished_at"`
}

// apiStepView is what the commands read of a step.
type apiStepView struct {
	Number  int     `json:"number"`
	Name    string  `json:"name"`
	State   string  `json:"state"`
	Result  *string `json:"result"`
	Reason  string  `json:"reason,omitempty"`
	LogSize int64   `json:"log_size"`
}

// queued prints what a force or rebuild queued and, with wait, waits for
// its build and exits as show does.
func (c *apiClient) queued(ctx context.Context, bs apiBuildset, wait bool) int {
	for _, r := range bs.Requests {
		fmt.Printf("buildset %d: request %d for builder %s (%s)\n", bs.ID, r.ID, r.Builder, r.State)
	}
	if !wait {
		return 0
	}
	code := 0
	for _, r := range bs.Requests {
		b, err := c.waitBuild(ctx, r.ID)
		if err != nil {
			return fail("wait for request %d: %v", r.ID, err)
		}
		fmt.Printf("build %d (%s #%d): %s%s\n", b.ID, b.Builder, b.Number, deref(b.Result),
			reasonText(b.Reason))
		code = max(code, exitFor(b))
	}
	return code
}

// waitBuild waits until a request's build has finished; a request
// cancelled before it ran is an error.
func (c *apiClient) waitBuild(ctx context.Context, request int64) (apiBuildView, error) {
	var b apiBuildView
	for {
		var r struct {
			State  string `json:"state"`
			Reason string `json:"reason"`
			Build  *int64 `json:"build"`
		}
		if err := c.do(ctx, "GET", fmt.Sprintf("/requests/%d", request), nil, &r); err != nil {
			return b, err
		}
		if r.State == "cancelled" {
			return b, fmt.Errorf("the request was cancelled: %s", r.Reason)
		}
		if r.Build != nil {
			if err := c.do(ctx, "GET", fmt.Sprintf("/builds/%d", *r.Build), nil, &b); err != nil {
				return b, err
			}
			if b.State == "finished" {
				return b, nil
			}
		}
		if err := pause(ctx, 500*time.Millisecond); err != nil {
			return b, err
		}
	}
}

func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func printBuild(w io.Writer, b apiBuildView, steps []apiStepView) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "build\t%d (%s #%d)\n", b.ID, b.Builder, b.Number)
	state := b.State
	if b.Result != nil {
		state += ": " + *b.Result
	}
	fmt.Fprintf(tw, "state\t%s%s\n", state, reasonText(b.Reason))
	if b.RetryOf != nil {
		fmt.Fprintf(tw, "retry of\tbuild %d\n", *b.RetryOf)
	}
	fmt.Fprintf(tw, "worker\t%s\n", dashIfEmpty(deref(b.Worker)))
	fmt.Fprintf(tw, "master\t%s\n", dashIfEmpty(b.Master))
	for _, t := range []struct {
		name string
		at   *time.Time
	}{{"created", b.CreatedAt}, {"started", b.StartedAt}, {"finished", b.FinishedAt}} {
		v := "-"
		if t.at != nil {
			v = t.at.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\n", t.name, v)
	}
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tNAME\tSTATE\tLOG\tREASON")
	for _, s := range steps {
		st := s.State
		if s.Result != nil {
			st = *s.Result
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d B\t%s\n", s.Number, s.Name, st, s.LogSize, dashIfEmpty(s.Reason))
	}
	tw.Flush()

	if len(b.Properties) > 0 {
		fmt.Fprintln(w, "\nproperties:")
		keys := make([]string, 0, len(b.Properties))
		for k := range b.Properties {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "  %s = %s\n", k, b.Properties[k])
		}
	}
}

func reasonText(r string) string {
	if r == "" {
		return ""
	}
	return " (" + r + ")"
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// logPrinter prints a build's step logs, following them while it runs.
type logPrinter struct {
	c      *apiClient
	id     int64
	follow bool
	only   int // 0: every step
	out    io.Writer
	done   map[int]bool
}

// run prints the logs and returns the build as it was at the end.
func (l *logPrinter) run(ctx context.Context) (apiBuildView, error) {
	l.done = map[int]bool{}
	for {
		var b apiBuildView
		if err := l.c.do(ctx, "GET", fmt.Sprintf("/builds/%d", l.id), nil, &b); err != nil {
			return b, err
		}
		steps, err := l.c.steps(ctx, l.id)
		if err != nil {
			return b, err
		}
		if l.only > 0 && (!l.follow || b.State == "finished") && !hasStep(steps, l.only) {
			return b, fmt.Errorf("build %d has no step %d", l.id, l.only)
		}
		for _, s := range steps {
			if l.done[s.Number] || (l.only > 0 && s.Number != l.only) {
				continue
			}
			if err := l.step(ctx, s); err != nil {
				return b, err
			}
		}
		// Only a finished build has all its steps: look once more at it.
		if !l.follow || (b.State == "finished" && l.allDone(steps)) {
			return b, nil
		}
		if err := pause(ctx, 500*time.Millisecond); err != nil {
			return b, err
		}
	}
}

func hasStep(steps []apiStepView, n int) bool {
	for _, s := range steps {
		if s.Number == n {
			return true
		}
	}
	return false
}

func (l *logPrinter) allDone(steps []apiStepView) bool {
	for _, s := range steps {
		if !l.done[s.Number] && (l.only == 0 || s.Number == l.only) {
			return false
		}
	}
	return l.only == 0 || l.done[l.only]
}

// step prints one step's log, to its end when following.
func (l *logPrinter) step(ctx context.Context, s apiStepView) error {
	if l.only == 0 {
		fmt.Fprintf(l.out, "==> step %d: %s <==\n", s.Number, s.Name)
	}
	path := fmt.Sprintf("/builds/%d/steps/%d/log", l.id, s.Number)
	if l.follow {
		path += "?follow=1"
	}
	body, err := l.c.stream(ctx, path)
	if err != nil {
		return err
	}
	defer body.Close()
	last := &lastByte{w: l.out}
	if _, err := io.Copy(last, body); err != nil {
		return fmt.Errorf("read the log of step %d: %w", s.Number, err)
	}
	if l.only == 0 && last.b != '\n' && last.n > 0 {
		fmt.Fprintln(l.out)
	}
	l.done[s.Number] = true
	return nil
}

// lastByte passes writes through and remembers the last byte written.
type lastByte struct {
	w io.Writer
	b byte
	n int64
}

func (l *lastByte) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	if n > 0 {
		l.b, l.n = p[n-1], l.n+int64(n)
	}
	return n, err
}

// apiClient calls a master's REST API.
type apiClient struct {
	hc        *http.Client
	base      string
	token     string
	api       *string
	tokenFile *string
}

// configure records where the flags will be parsed into; init reads them.
func (c *apiClient) configure(api, tokenFile *string) *apiClient {
	c.api, c.tokenFile = api, tokenFile
	return c
}

func (c *apiClient) init() error {
	if err := checkHTTPURL(*c.api); err != nil {
		return errors.New(badValue("api", *c.api, err.Error()))
	}
	c.base = strings.TrimSuffix(*c.api, "/") + "/api/v1"
	if *c.tokenFile != "" {
		t, err := readSecretFile(*c.tokenFile)
		if err != nil {
			return fmt.Errorf("read admin token: %w", err)
		}
		c.token = t
	}
	return nil
}

// do sends a JSON request and decodes a JSON answer into out (if not nil).
// An answer other than 2xx is an error carrying the master's message.
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("read the master's answer: %w", err)
	}
	return nil
}

// stream answers the body of a GET, for the caller to read and close.
func (c *apiClient) stream(ctx context.Context, path string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// send makes the request; a non-2xx answer is turned into an error.
func (c *apiClient) send(req *http.Request) (*http.Response, error) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil, err
		}
		return nil, fmt.Errorf("reach the master at %s: %w", *c.api, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	var e struct {
		Error string `json:"error"`
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(data, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(data))
	}
	return nil, errors.New(e.Error + " (" + resp.Status + ")")
}

func (c *apiClient) steps(ctx context.Context, id int64) ([]apiStepView, error) {
	var l struct {
		Items []apiStepView `json:"items"`
	}
	if err := c.do(ctx, "GET", fmt.Sprintf("/builds/%d/steps", id), nil, &l); err != nil {
		return nil, err
	}
	sort.Slice(l.Items, func(i, j int) bool { return l.Items[i].Number < l.Items[j].Number })
	return l.Items, nil
}
