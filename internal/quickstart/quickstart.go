// Package quickstart runs the embedded default: one master on SQLite and
// one local worker in one process, building a git repository on every new
// commit of its current branch. The worker is the ordinary worker talking
// to the master's worker API over loopback.
package quickstart

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/master"
	"github.com/regent-ci/regent/internal/schedule"
	"github.com/regent-ci/regent/internal/store"
	"github.com/regent-ci/regent/internal/worker"
)

// Options configures a quickstart run.
type Options struct {
	// Repo is a path or URL of a git repository; default: the repository
	// holding the current directory.
	Repo string
	// Command is run on each commit; default: chosen from the files the
	// repository holds.
	Command string
	// Listen is the master's HTTP address; it must be a loopback address.
	Listen string
	// Data is where the database, worker and caches live.
	Data string
	// Once exits after the first build.
	Once bool
	// PollInterval is how often the repository is polled; default 10s.
	PollInterval time.Duration
	Out          io.Writer
	Logger       *slog.Logger
}

// Exit statuses of Run, as the command line reports them.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitError   = 2
)

// Run starts the master and worker, forces a build of the current head,
// and then either keeps watching until ctx ends or, with Once, waits for
// that build and returns its exit status.
func Run(ctx context.Context, o Options) (int, error) {
	if err := o.fill(); err != nil {
		return ExitError, err
	}
	repo, err := inspect(ctx, o.Repo)
	if err != nil {
		return ExitError, err
	}
	if o.Command == "" {
		if o.Command, err = defaultCommand(repo.dir); err != nil {
			return ExitError, err
		}
	}
	password, err := setupData(o, repo)
	if err != nil {
		return ExitError, err
	}
	st, err := store.Open(ctx, filepath.Join(o.Data, "regent.db"))
	if err != nil {
		return ExitError, err
	}
	defer st.Close()

	m, err := master.New(master.Config{Store: st, Name: "quickstart", Listen: o.Listen,
		ConfigSource: filepath.Join(o.Data, "config"), Secrets: config.DirSecrets(o.Data),
		DataDir: filepath.Join(o.Data, "master"), Logger: o.Logger})
	if err != nil {
		return ExitError, err
	}
	if err := m.Start(ctx); err != nil {
		return ExitError, err
	}
	defer m.Stop()
	url := "http://" + m.Addr()

	w, err := worker.New(worker.Config{Masters: []string{url}, Name: "local", Password: password,
		Basedir: filepath.Join(o.Data, "worker"), Logger: o.Logger})
	if err != nil {
		return ExitError, err
	}
	if err := w.Start(ctx); err != nil {
		return ExitError, err
	}
	defer w.Stop()

	bs, err := schedule.Force(ctx, st, builderName, "quickstart: build the current head",
		map[string]string{"revision": repo.head, "branch": repo.branch, "repository": repo.url})
	if err != nil {
		return ExitError, fmt.Errorf("queue the first build: %w", err)
	}
	fmt.Fprintf(o.Out, "Regent is building %s (branch %s, command %q).\nWeb UI: %s/\n",
		repo.url, repo.branch, o.Command, url)
	if !o.Once {
		fmt.Fprintf(o.Out, "Watching for new commits every %s; press Ctrl-C to stop.\n", o.PollInterval)
		<-ctx.Done()
		return ExitOK, nil
	}
	return waitFirst(ctx, st, bs.ID, o.Out)
}

const builderName = "quickstart"

func (o *Options) fill() error {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 10 * time.Second
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:8010"
	}
	if err := checkLoopback(o.Listen); err != nil {
		return err
	}
	if o.Repo == "" {
		o.Repo = "."
	}
	if o.Data == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("choose a data directory (pass --data): %w", err)
		}
		o.Data = filepath.Join(dir, "regent", "quickstart")
	}
	abs, err := filepath.Abs(o.Data)
	if err != nil {
		return err
	}
	o.Data = abs
	return os.MkdirAll(o.Data, 0o755)
}

// waitFirst waits for the build of a one-builder buildset and reports its
// outcome. A build retried after a lost worker is followed to its retry.
func waitFirst(ctx context.Context, st *store.Store, buildset int64, out io.Writer) (int, error) {
	for {
		reqs, err := st.Requests(ctx, store.RequestFilter{Buildset: buildset})
		if err != nil {
			return ExitError, err
		}
		for _, r := range reqs {
			if r.State == store.RequestCancelled {
				fmt.Fprintf(out, "The build request was cancelled: %s\n", r.Reason)
				return ExitError, nil
			}
			if r.Build == nil {
				continue
			}
			b, err := st.BuildByID(ctx, *r.Build)
			if err != nil {
				return ExitError, err
			}
			if b.State == build.StateFinished && r.State != store.RequestPending {
				return report(ctx, st, b, out)
			}
		}
		select {
		case <-ctx.Done():
			return ExitError, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// report prints a finished build's result and, on failure, the failing
// step's name and the tail of its log.
func report(ctx context.Context, st *store.Store, b store.Build, out io.Writer) (int, error) {
	result := *b.Result
	fmt.Fprintf(out, "Build %s #%d: %s\n", b.Builder, b.Number, result)
	if build.OK(result) {
		return ExitOK, nil
	}
	if b.Reason != "" {
		fmt.Fprintf(out, "Reason: %s\n", b.Reason)
	}
	steps, err := st.Steps(ctx, b.ID)
	if err != nil {
		return ExitError, err
	}
	for _, s := range steps {
		if s.Result == nil || build.OK(*s.Result) {
			continue
		}
		fmt.Fprintf(out, "Failing step %d: %s (%s)\n", s.Number, s.Name, *s.Result)
		var tail strings.Builder
		st.WriteLog(ctx, &tail, b.ID, s.Number, max(s.LogSize-4096, 0), -1)
		fmt.Fprintf(out, "--- last lines of the log ---\n%s\n", lastLines(tail.String(), 20))
		break
	}
	if result == build.Failure {
		return ExitFailure, nil
	}
	return ExitError, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// repoInfo is what quickstart needs to know about the repository.
type repoInfo struct {
	url    string // what the poller fetches
	dir    string // a local checkout to choose the default command from
	branch string
	head   string
}

// inspect resolves the repository, its current branch and head.
func inspect(ctx context.Context, repo string) (repoInfo, error) {
	if fi, err := os.Stat(repo); err == nil && fi.IsDir() {
		top, err := git(ctx, repo, "rev-parse", "--show-toplevel")
		if err != nil {
			return repoInfo{}, fmt.Errorf("%s is not inside a git repository (pass --repo PATH_OR_URL): %w", repo, err)
		}
		branch, err := git(ctx, top, "symbolic-ref", "--short", "HEAD")
		if err != nil {
			return repoInfo{}, fmt.Errorf("repository %s has no current branch (detached HEAD?): %w", top, err)
		}
		head, err := git(ctx, top, "rev-parse", "HEAD")
		if err != nil {
			return repoInfo{}, fmt.Errorf("repository %s has no commits yet: %w", top, err)
		}
		return repoInfo{url: top, dir: top, branch: branch, head: head}, nil
	}
	// A URL: ask the remote for its default branch and head.
	out, err := git(ctx, "", "ls-remote", "--symref", repo, "HEAD")
	if err != nil {
		return repoInfo{}, fmt.Errorf("cannot read repository %s: %w", repo, err)
	}
	info := repoInfo{url: repo}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "ref:" {
			info.branch = strings.TrimPrefix(f[1], "refs/heads/")
		} else if len(f) == 2 && f[1] == "HEAD" {
			info.head = f[0]
		}
	}
	if info.branch == "" || info.head == "" {
		return repoInfo{}, fmt.Errorf("repository %s has no default branch", repo)
	}
	return info, nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("git %s: %s", strings.Join(args, " "), strings.TrimSpace(string(ee.Stderr)))
		}
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// defaultCommand picks a build command from what the repository holds.
func defaultCommand(dir string) (string, error) {
	candidates := []struct{ file, command string }{
		{"go.mod", "go build ./... && go vet ./..."},
		{"Makefile", "make"},
		{"Cargo.toml", "cargo build"},
		{"package.json", "npm ci && npm test"},
		{"pyproject.toml", "python3 -m pytest"},
	}
	for _, c := range candidates {
		if dir == "" {
			break
		}
		if _, err := os.Stat(filepath.Join(dir, c.file)); err == nil {
			return c.command, nil
		}
	}
	return "", errors.New("cannot choose a build command for this repository: pass --command CMD")
}

// setupData writes the generated configuration and the local worker's
// password into the data directory. The password is kept so that a
// second run reuses the same worker.
func setupData(o Options, repo repoInfo) (string, error) {
	pwFile := filepath.Join(o.Data, "worker-password")
	pw, err := os.ReadFile(pwFile)
	if err != nil {
		b := make([]byte, 24)
		rand.Read(b)
		pw = []byte(hex.EncodeToString(b))
		if err := os.WriteFile(pwFile, pw, 0o600); err != nil {
			return "", fmt.Errorf("write worker password: %w", err)
		}
	}
	cfgDir := filepath.Join(o.Data, "config")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		return "", err
	}
	star := fmt.Sprintf(`# Generated by regent quickstart; rewritten at every start.
repo = git_repo(name = "repo", url = %s, branches = [%s], poll_interval = %s)
local = worker(name = "local", password = secret("worker-password"), max_builds = 1)
builder(
    name = %q,
    workers = [local],
    steps = [
        step.git(repo = repo),
        step.shell(command = %s, name = "build", timeout = "1h"),
    ],
)
scheduler.branch(name = "on-commit", repo = repo, branch = %s, builders = [%q])
scheduler.force(name = "force", builders = [%q])
`, strconv.Quote(repo.url), strconv.Quote(repo.branch), strconv.Quote(o.PollInterval.String()),
		builderName, strconv.Quote(o.Command), strconv.Quote(repo.branch), builderName, builderName)
	if err := os.WriteFile(filepath.Join(cfgDir, "regent.star"), []byte(star), 0o644); err != nil {
		return "", fmt.Errorf("write configuration: %w", err)
	}
	return string(pw), nil
}

func checkLoopback(addr string) error {
	host := addr
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		host = addr[:i]
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" || host == "::1" || strings.HasPrefix(host, "127.") {
		return nil
	}
	return fmt.Errorf("quickstart listens on loopback only; %q is not a loopback address", addr)
}
