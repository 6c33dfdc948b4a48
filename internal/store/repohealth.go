package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// RepoHealth is how the change sources of one repository are doing, as
// the last poller to poll it and the last webhook delivery left it. Every
// master reads the same rows, whichever master polls.
type RepoHealth struct {
	Repository string `json:"repository"`
	// Master is the master that polled last.
	Master      string     `json:"master"`
	LastPoll    *time.Time `json:"last_poll"`
	LastSuccess *time.Time `json:"last_success"`
	// LastError is the error of the last failed poll, kept after later
	// successes; FailingSince is set while polls fail, from the first
	// failure after the last success.
	LastError    string     `json:"last_error"`
	LastErrorAt  *time.Time `json:"last_error_at"`
	FailingSince *time.Time `json:"failing_since"`
	NextPoll     *time.Time `json:"next_poll"`
	LastWebhook  *time.Time `json:"last_webhook"`
}

// PollReport is the outcome of one poll, for [Store.RecordPollHealth].
type PollReport struct {
	Repository string
	Master     string
	At         time.Time
	// Err is the poll's error, empty when it succeeded.
	Err string
	// NextPoll is when the poller polls next; zero when unknown.
	NextPoll time.Time
}

// RecordPollHealth records the outcome of a poll of a repository.
func (s *Store) RecordPollHealth(ctx context.Context, r PollReport) error {
	var next any
	if !r.NextPoll.IsZero() {
		next = micros(r.NextPoll)
	}
	at := micros(r.At)
	var err error
	if r.Err == "" {
		_, err = s.db.ExecContext(ctx, `INSERT INTO repo_health (repository, master, last_poll,
			last_success, next_poll) VALUES ($1, $2, $3, $3, $4)
			ON CONFLICT (repository) DO UPDATE SET master = excluded.master,
			last_poll = excluded.last_poll, last_success = excluded.last_success,
			next_poll = excluded.next_poll, failing_since = NULL`,
			r.Repository, r.Master, at, next)
	} else {
		_, err = s.db.ExecContext(ctx, `INSERT INTO repo_health (repository, master, last_poll,
			last_error, last_error_at, failing_since, next_poll) VALUES ($1, $2, $3, $4, $3, $3, $5)
			ON CONFLICT (repository) DO UPDATE SET master = excluded.master,
			last_poll = excluded.last_poll, last_error = excluded.last_error,
			last_error_at = excluded.last_error_at, next_poll = excluded.next_poll,
			failing_since = COALESCE(repo_health.failing_since, excluded.failing_since)`,
			r.Repository, r.Master, at, r.Err, next)
	}
	if err != nil {
		return fmt.Errorf("record poll health of repository %q: %w", r.Repository, err)
	}
	return nil
}

// noteWebhook records that a webhook delivery for repo arrived.
func noteWebhook(ctx context.Context, tx *sql.Tx, repo string, at time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO repo_health (repository, last_webhook) VALUES ($1, $2)
		ON CONFLICT (repository) DO UPDATE SET last_webhook = excluded.last_webhook`,
		repo, micros(at))
	if err != nil {
		return fmt.Errorf("note webhook of repository %q: %w", repo, err)
	}
	return nil
}

// ReposHealth returns the health of every repository that was polled or
// received a webhook delivery, by name.
func (s *Store) ReposHealth(ctx context.Context) (map[string]RepoHealth, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT repository, master, last_poll, last_success,
		last_error, last_error_at, failing_since, next_poll, last_webhook FROM repo_health`)
	if err != nil {
		return nil, fmt.Errorf("read repository health: %w", err)
	}
	defer rows.Close()
	out := map[string]RepoHealth{}
	for rows.Next() {
		var h RepoHealth
		var poll, success, errAt, failing, next, hook sql.NullInt64
		if err := rows.Scan(&h.Repository, &h.Master, &poll, &success, &h.LastError, &errAt,
			&failing, &next, &hook); err != nil {
			return nil, fmt.Errorf("read repository health: %w", err)
		}
		h.LastPoll, h.LastSuccess, h.LastErrorAt = nullTime(poll), nullTime(success), nullTime(errAt)
		h.FailingSince, h.NextPoll, h.LastWebhook = nullTime(failing), nullTime(next), nullTime(hook)
		out[h.Repository] = h
	}
	return out, rows.Err()
}
