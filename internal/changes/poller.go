package changes

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// Defaults for the zero values of [PollerConfig].
const (
	DefaultPollInterval      = time.Minute
	DefaultMaxChangesPerPoll = 100
	DefaultGitTimeout        = 10 * time.Minute
)

// Errors that callers branch on.
var (
	// ErrStarted means Start was called on a poller already started.
	ErrStarted = errors.New("poller already started")
	// ErrStopped means Start was called on a poller already stopped.
	ErrStopped = errors.New("poller stopped")
)

// ChangeStore is the storage a poller needs; [*store.Store] is one.
type ChangeStore interface {
	// RepoHeads returns the recorded heads of the repository, nil if it
	// was never polled.
	RepoHeads(ctx context.Context, repo string) (map[string]string, error)
	// RecordPoll replaces the recorded heads and records the changes not
	// recorded yet, in one transaction, returning those that were new.
	RecordPoll(ctx context.Context, repo string, heads map[string]string, changes []store.Change) ([]store.Change, error)
}

// PollerConfig configures a [Poller].
type PollerConfig struct {
	// Repo is the repository to watch: its name (which changes carry),
	// URL, branches (exact names or path.Match patterns; none means all)
	// and poll interval (DefaultPollInterval when zero).
	Repo config.Repo
	// Store records heads and changes.
	Store ChangeStore
	// Dir is a directory for this poller alone, created if missing. It
	// holds a bare mirror of the repository that is kept between polls
	// and restarts, so that each fetch brings only what is new.
	Dir string
	// MaxChangesPerPoll caps the changes one poll records for a branch;
	// the newest commits beyond the cap are folded into one summary
	// change (see the package documentation). DefaultMaxChangesPerPoll
	// when zero.
	MaxChangesPerPoll int
	// GitTimeout bounds each git command. DefaultGitTimeout when zero.
	GitTimeout time.Duration
	// GitEnv is added to git's environment, after Regent's own settings,
	// for example GIT_SSH_COMMAND naming a key file.
	GitEnv []string
	// Logger receives the poller's logs; slog.Default() when nil.
	Logger *slog.Logger
	// OnChanges, when set, is called with the changes a poll recorded,
	// after they are committed, from the polling goroutine. It should
	// return quickly: the next poll waits for it.
	OnChanges func([]store.Change)
	// Secrets resolves the repository's credentials, when it names
	// some; the value is read at each poll and never stored or logged.
	Secrets config.SecretProvider
	// Health, when set, receives a report after each poll of the loop
	// that Start begins, with the time of the next poll, under the name
	// Master; [*store.Store] is one.
	Health HealthRecorder
	Master string
	// OnPoll, when set, is called after each poll that was not cancelled,
	// with its error (nil when it succeeded), from the polling goroutine,
	// for example to report the poller's health to the cluster.
	OnPoll func(err error)
	// Now tells the time for health reports; time.Now when nil.
	Now func() time.Time
}

// HealthRecorder stores poll reports, so that every master can show how
// a repository's polling goes.
type HealthRecorder interface {
	RecordPollHealth(ctx context.Context, r store.PollReport) error
}

// Health is what a poller reports about itself.
type Health struct {
	// LastSuccess is when a poll last completed.
	LastSuccess time.Time `json:"last_success"`
	// LastError is the error of the last failed poll, kept after later
	// successes; compare LastErrorAt with LastSuccess.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at"`
	// NextPoll is when the loop started by Start polls next.
	NextPoll time.Time `json:"next_poll"`
}

// Failing reports whether the last poll failed.
func (h Health) Failing() bool {
	return !h.LastErrorAt.IsZero() && h.LastErrorAt.After(h.LastSuccess)
}

// Poller watches the branches of one git repository and records each new
// commit as a change. Polls run one at a time, whether they come from the
// loop that Start begins or from PollNow.
type Poller struct {
	cfg    PollerConfig
	log    *slog.Logger
	mirror *mirror
	// polling holds a token while a poll runs; a channel, so that waiting
	// for a running poll can be cancelled.
	polling chan struct{}

	mu      sync.Mutex
	health  Health
	started bool
	stopped bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewPoller checks cfg, fills its defaults and returns a poller that does
// nothing until Start or PollNow.
func NewPoller(cfg PollerConfig) (*Poller, error) {
	r := cfg.Repo
	switch {
	case r.Name == "":
		return nil, errors.New("poller: repository has no name")
	case r.URL == "":
		return nil, fmt.Errorf("poller for %s: repository has no url", r.Name)
	case cfg.Store == nil:
		return nil, fmt.Errorf("poller for %s: no store", r.Name)
	case cfg.Dir == "":
		return nil, fmt.Errorf("poller for %s: no directory for the mirror", r.Name)
	case cfg.MaxChangesPerPoll < 0:
		return nil, fmt.Errorf("poller for %s: max changes per poll %d is negative", r.Name, cfg.MaxChangesPerPoll)
	}
	for _, p := range r.Branches {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("poller for %s: branch pattern %q: %w", r.Name, p, err)
		}
	}
	if _, err := exec.LookPath("git"); err != nil {
		return nil, fmt.Errorf("poller for %s: git is needed: %w", r.Name, err)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("poller for %s: directory: %w", r.Name, err)
	}
	cfg.Dir = dir
	if cfg.Repo.PollInterval <= 0 {
		cfg.Repo.PollInterval = config.Duration(DefaultPollInterval)
	}
	if cfg.MaxChangesPerPoll == 0 {
		cfg.MaxChangesPerPoll = DefaultMaxChangesPerPoll
	}
	if cfg.GitTimeout <= 0 {
		cfg.GitTimeout = DefaultGitTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Poller{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "poller", "repo", r.Name),
		mirror:  newMirror(dir, cfg.GitTimeout, cfg.GitEnv),
		polling: make(chan struct{}, 1),
	}, nil
}

// Start begins polling: at once, then every poll interval with a little
// jitter, until ctx ends or Stop is called. It returns at once.
func (p *Poller) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.stopped:
		return ErrStopped
	case p.started:
		return ErrStarted
	}
	ctx, p.cancel = context.WithCancel(ctx)
	p.done = make(chan struct{})
	p.started = true
	go p.loop(ctx, p.done)
	return nil
}

// Stop ends polling, cancelling a poll in progress (git is killed), and
// waits for the loop to return. It may be called more than once, and
// before Start.
func (p *Poller) Stop() {
	p.mu.Lock()
	p.stopped = true
	cancel, done := p.cancel, p.done
	p.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// Health returns the poller's latest health report.
func (p *Poller) Health() Health {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.health
}

// loop polls until ctx ends.
func (p *Poller) loop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	for {
		p.PollNow(ctx) // the outcome is in Health and the log
		if ctx.Err() != nil {
			return
		}
		wait := p.interval()
		p.mu.Lock()
		p.health.NextPoll = p.cfg.Now().Add(wait)
		h := p.health
		p.mu.Unlock()
		p.report(ctx, h)

		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// interval returns the poll interval give or take 5%, so that pollers
// started together do not keep fetching at the same moment.
func (p *Poller) interval() time.Duration {
	d := p.cfg.Repo.PollInterval.D()
	return d - d/20 + rand.N(d/10+1)
}

// PollNow polls once: it fetches the repository, compares its branches
// with the recorded heads and records the new changes. It waits for a poll
// already running to finish first. The outcome is also kept in Health.
func (p *Poller) PollNow(ctx context.Context) error {
	select {
	case p.polling <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.polling }()

	start := time.Now()
	n, err := p.poll(ctx)
	if p.cfg.OnPoll != nil && ctx.Err() == nil {
		p.cfg.OnPoll(err)
	}
	now := p.cfg.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case err == nil:
		p.health.LastSuccess = now
		p.log.Debug("polled", "changes", n, "duration", time.Since(start))
	case ctx.Err() != nil:
		// Cancelled by Stop or a reconfiguration: not a failure.
		p.log.Debug("poll cancelled", "error", err)
	default:
		p.health.LastError, p.health.LastErrorAt = err.Error(), now
		p.log.Warn("poll failed", "url", redact(p.cfg.Repo.URL), "error", err)
	}
	return err
}

// poll does the work of PollNow and returns the number of new changes.
func (p *Poller) poll(ctx context.Context) (int, error) {
	repo := p.cfg.Repo
	if err := os.MkdirAll(p.cfg.Dir, 0o700); err != nil {
		return 0, fmt.Errorf("create poller directory: %w", err)
	}
	unlock, err := lockDir(ctx, p.cfg.Dir)
	if err != nil {
		return 0, err
	}
	defer unlock()

	if err := p.mirror.prepare(ctx); err != nil {
		return 0, err
	}
	env, err := p.credentials()
	if err != nil {
		return 0, err
	}
	if err := p.mirror.fetch(ctx, repo.URL, len(repo.Tags) > 0, env); err != nil {
		return 0, fmt.Errorf("fetch %s: %w", redact(repo.URL), err)
	}
	all, err := p.mirror.heads(ctx)
	if err != nil {
		return 0, fmt.Errorf("read branches: %w", err)
	}
	cur := watched(all, repo.Branches, repo.Tags)
	if len(repo.Tags) > 0 {
		cur[tagsMarker] = ""
	}

	old, err := p.cfg.Store.RepoHeads(ctx, repo.Name)
	if err != nil {
		return 0, err
	}
	if old == nil {
		// The first poll of a repository starts from its present state
		// instead of recording its whole history as changes.
		if _, err := p.cfg.Store.RecordPoll(ctx, repo.Name, cur, nil); err != nil {
			return 0, err
		}
		p.log.Info("first poll recorded branch heads", "branches", len(cur))
		return 0, nil
	}

	found, err := detect(ctx, p.mirror, repo.Name, old, cur, p.cfg.MaxChangesPerPoll)
	if err != nil {
		return 0, err
	}
	if len(found) == 0 && maps.Equal(old, cur) {
		return 0, nil
	}
	added, err := p.cfg.Store.RecordPoll(ctx, repo.Name, cur, found)
	if err != nil {
		return 0, err
	}
	p.logMoves(old, cur, len(found), len(added))
	if len(added) > 0 && p.cfg.OnChanges != nil {
		p.cfg.OnChanges(added)
	}
	return len(added), nil
}

// logMoves logs the branches that appeared, moved and went away.
func (p *Poller) logMoves(old, cur map[string]string, found, added int) {
	var created, moved, deleted []string
	for ref, rev := range cur {
		if ref == tagsMarker {
			continue
		}
		switch was, ok := old[ref]; {
		case !ok:
			created = append(created, ref)
		case was != rev:
			moved = append(moved, ref)
		}
	}
	for ref := range old {
		if _, ok := cur[ref]; !ok {
			deleted = append(deleted, ref)
		}
	}
	p.log.Info("recorded branch heads", "created", created, "moved", moved, "deleted", deleted,
		"changes_found", found, "changes_recorded", added)
}

// redact hides a password written into a repository URL.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}

// report stores the health after a poll of the loop, when a recorder is
// set. A failure to store it is logged: polling goes on.
func (p *Poller) report(ctx context.Context, h Health) {
	if p.cfg.Health == nil {
		return
	}
	r := store.PollReport{Repository: p.cfg.Repo.Name, Master: p.cfg.Master, NextPoll: h.NextPoll}
	if h.Failing() {
		r.At, r.Err = h.LastErrorAt, h.LastError
	} else {
		r.At = h.LastSuccess
	}
	if err := p.cfg.Health.RecordPollHealth(ctx, r); err != nil && ctx.Err() == nil {
		p.log.Warn("cannot record poll health", "err", err)
	}
}

// credentials returns the environment that makes git present the
// repository's credentials, or nothing when it names none. The secret
// holds "USER:PASSWORD", or a token alone, sent with the user name
// x-access-token (GitHub's; GitLab and Gitea accept any user name with a
// token). It is sent as an HTTP Authorization header scoped to the
// repository's URL through git's environment configuration, so it never
// appears in a command line, a URL or a log.
func (p *Poller) credentials() ([]string, error) {
	repo := p.cfg.Repo
	if repo.Credentials == "" {
		return nil, nil
	}
	u, err := url.Parse(repo.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("credentials of repository %s: they are sent over HTTP(S) only, "+
			"and %s is not an http:// or https:// URL", repo.Name, redact(repo.URL))
	}
	if p.cfg.Secrets == nil {
		return nil, fmt.Errorf("credentials of repository %s: this master has no secrets provider", repo.Name)
	}
	v, err := p.cfg.Secrets.Secret(repo.Credentials)
	if err != nil {
		return nil, fmt.Errorf("credentials of repository %s: %w", repo.Name, err)
	}
	if !strings.Contains(v, ":") {
		v = "x-access-token:" + v
	}
	u.User = nil
	header := "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(v))
	return []string{
		"GIT_CONFIG_COUNT=1",
		"GIT_CONFIG_KEY_0=http." + u.String() + ".extraHeader",
		"GIT_CONFIG_VALUE_0=" + header,
	}, nil
}
