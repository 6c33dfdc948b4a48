package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// configWatcher applies the configuration source whenever its content
// changes: differs from what the watcher last applied, on any master, so
// that a generation applied meanwhile through the API or the CLI stands
// until the source changes again. An invalid configuration is refused,
// logged once per distinct error, and kept as the last error; the active
// generation is untouched.
type configWatcher struct {
	store   *store.Store
	source  string
	secrets config.SecretProvider
	dir     string
	by      string
	log     *slog.Logger

	// onApply is called after each new generation.
	onApply func()

	mu         sync.Mutex
	lastSource string
	lastErr    string
}

func newConfigWatcher(st *store.Store, source string, secrets config.SecretProvider, dir, by string, log *slog.Logger) *configWatcher {
	return &configWatcher{store: st, source: source, secrets: secrets, dir: dir, by: by,
		log: log.With("component", "config-watcher")}
}

// check reads the source and applies it if it changed since the last
// check, as the configuration watcher service holding fence f (the zero
// Fence for the apply a master makes on an empty database at start). It
// returns an error for an invalid configuration or an unreadable source,
// and one wrapping store.ErrFenced, without applying anything, once
// another master owns the watcher.
func (w *configWatcher) check(ctx context.Context, f store.Fence) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return err
	}
	root, source, err := config.FetchSource(ctx, w.source, w.dir)
	if err != nil {
		return w.fail(fmt.Errorf("read configuration source %s: %w", w.source, err))
	}
	if w.lastSource == "" && f.Service != "" {
		// New to this master: what the watcher last applied, on whichever
		// master, is the source to compare with.
		if w.lastSource, err = w.store.LastSourceAppliedBy(ctx, f.Service); err != nil {
			return w.fail(err)
		}
	}
	if source == w.lastSource && w.lastErr == "" {
		return w.store.ServiceSucceeded(ctx, f)
	}
	st, err := config.Load(ctx, root, config.Options{Secrets: w.secrets})
	if err != nil {
		return w.fail(fmt.Errorf("configuration %s refused; generation unchanged:\n%w", w.source, err))
	}
	res, err := w.store.ApplyFenced(ctx, st, source, w.by, f)
	if errors.Is(err, store.ErrFenced) {
		return err
	}
	if err != nil {
		return w.fail(err)
	}
	w.lastSource, w.lastErr = source, ""
	if res.Created {
		w.log.Info("generation applied", "generation", res.Generation.Number, "source", source,
			"cancelled_requests", res.CancelledRequests, "revoked_sessions", res.RevokedSessions)
		if w.onApply != nil {
			w.onApply()
		}
	}
	return nil
}

// fail records err and returns it. A repeat of the last error comes back
// marked as a repeat, so that a broken configuration is logged once rather
// than every interval, yet every run still counts as a failure.
func (w *configWatcher) fail(err error) error {
	if err.Error() == w.lastErr {
		return repeatedError{err}
	}
	w.lastErr = err.Error()
	return err
}

// repeatedError is a refusal the same as the one before it.
type repeatedError struct{ error }

func (e repeatedError) Unwrap() error { return e.error }

// LastError returns the last refusal, empty when the source applied.
func (w *configWatcher) LastError() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}
