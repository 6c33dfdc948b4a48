package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Delivery identifies one webhook delivery, so that it is acted on once.
type Delivery struct {
	// Source is the kind of sender: "github", "gitlab", "gitea" or
	// "generic".
	Source string
	// ID is the delivery id the sender gave, empty when it gave none.
	ID string
	// Repository is the configured repository the delivery is for.
	Repository string
	// Ref is the full ref that moved, such as refs/heads/main.
	Ref string
	// OldRevision is where the ref was before, empty for a new ref;
	// NewRevision where it is now.
	OldRevision string
	NewRevision string
}

// RecordDelivery records the changes a webhook delivery reports, in one
// transaction with the delivery itself. A delivery is a duplicate when an
// earlier one had the same source and id, or moved the same ref of the
// same repository from the same old revision to the same new one; a
// duplicate records nothing and duplicate is true, whether the earlier
// delivery is still being recorded by another master or was recorded long
// ago. Changes are recorded once per repository, branch and revision, as
// with polls, and one recorded already gets the details it lacks. New
// changes wake every master's schedulers.
func (s *Store) RecordDelivery(ctx context.Context, d Delivery, changes []Change) (
	added []Change, duplicate bool, err error) {
	if d.Source == "" || d.Repository == "" || d.Ref == "" || d.NewRevision == "" {
		return nil, false, fmt.Errorf("record webhook delivery: source, repository, ref "+
			"and new revision are required (got %+v)", d)
	}
	for _, c := range changes {
		if err := validChange(c); err != nil {
			return nil, false, fmt.Errorf("record webhook delivery %q: %w", d.ID, err)
		}
	}
	now := time.Now()
	err = s.tx(ctx, func(tx *sql.Tx) error {
		added, duplicate = nil, false
		var id int64
		err := tx.QueryRowContext(ctx, `INSERT INTO webhook_deliveries (source, delivery,
			repository, ref, old_revision, new_revision, changes, received_at)
			VALUES ($1, $2, $3, $4, $5, $6, 0, $7) ON CONFLICT DO NOTHING RETURNING id`,
			d.Source, d.ID, d.Repository, d.Ref, d.OldRevision, d.NewRevision, micros(now)).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			duplicate = true
			return nil
		}
		if err != nil {
			return fmt.Errorf("insert delivery: %w", err)
		}
		if added, err = recordChanges(ctx, tx, d.Repository, changes, now, fenceStamp{}); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET changes = $1 WHERE id = $2`,
			len(added), id); err != nil {
			return fmt.Errorf("count changes of delivery: %w", err)
		}
		if err := noteWebhook(ctx, tx, d.Repository, now); err != nil {
			return err
		}
		if len(added) > 0 {
			return s.notify(ctx, tx, TopicChange)
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("record webhook delivery %q for repository %q: %w", d.ID, d.Repository, err)
	}
	return added, duplicate, nil
}

// RememberDelivery remembers a webhook delivery that records no change
// (a ping, a branch no repository watches), by its source and id alone,
// so that the same delivery again is a duplicate; duplicate is true when
// it is one already. A delivery without an id cannot be told again and is
// not remembered. Its ref and revisions are not kept: a later delivery of
// the same move, once it makes a change, is not a duplicate of this one.
func (s *Store) RememberDelivery(ctx context.Context, d Delivery) (duplicate bool, err error) {
	if d.Source == "" || d.Repository == "" {
		return false, fmt.Errorf("remember webhook delivery: source and repository are required (got %+v)", d)
	}
	if d.ID == "" {
		return false, nil
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO webhook_deliveries (source, delivery,
		repository, ref, old_revision, new_revision, changes, received_at)
		VALUES ($1, $2, $3, '', '', '', 0, $4) ON CONFLICT DO NOTHING`,
		d.Source, d.ID, d.Repository, micros(time.Now()))
	if err != nil {
		return false, fmt.Errorf("remember webhook delivery %q for repository %q: %w", d.ID, d.Repository, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("remember webhook delivery %q: %w", d.ID, err)
	}
	return n == 0, nil
}

// WebhookDelivery is a recorded webhook delivery.
type WebhookDelivery struct {
	Delivery
	Changes    int       `json:"changes"`
	ReceivedAt time.Time `json:"received_at"`
}

// WebhookDeliveries lists the deliveries recorded for a repository,
// newest first, at most limit of them.
func (s *Store) WebhookDeliveries(ctx context.Context, repo string, limit int) ([]WebhookDelivery, error) {
	_, limit = ListOptions{Limit: limit}.bounds()
	rows, err := s.db.QueryContext(ctx, `SELECT source, delivery, repository, ref, old_revision,
		new_revision, changes, received_at FROM webhook_deliveries WHERE repository = $1
		ORDER BY id DESC LIMIT $2`, repo, limit)
	if err != nil {
		return nil, fmt.Errorf("list webhook deliveries of %q: %w", repo, err)
	}
	defer rows.Close()
	var out []WebhookDelivery
	for rows.Next() {
		var w WebhookDelivery
		var at int64
		if err := rows.Scan(&w.Source, &w.ID, &w.Repository, &w.Ref, &w.OldRevision,
			&w.NewRevision, &w.Changes, &at); err != nil {
			return nil, err
		}
		w.ReceivedAt = fromMicros(at)
		out = append(out, w)
	}
	return out, rows.Err()
}

// PruneWebhookDeliveries forgets, under fence f (housekeeping's), the
// deliveries received more than olderThan ago, and returns how many. A
// duplicate of a forgotten delivery still records nothing new: its
// changes are already recorded, once per repository, branch and revision.
func (s *Store) PruneWebhookDeliveries(ctx context.Context, f Fence, olderThan time.Duration) (int64, error) {
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.checkFence(ctx, tx, f); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM webhook_deliveries WHERE received_at < $1`,
			micros(time.Now().Add(-olderThan)))
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune webhook deliveries: %w", err)
	}
	return n, nil
}
