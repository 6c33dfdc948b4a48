package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// polledMarker is the ref of a row in repo_heads that every recorded poll
// writes. It tells "polled, and no branch was watched" apart from "never
// polled", which matters because a poller records no changes on its first
// run: without it, deleting a repository's only watched branch would make
// the next poll look like a first run and its re-creation would go unseen.
// No git ref has an empty name, so the marker cannot collide with a head.
const polledMarker = ""

// changeColumns lists the columns scanChange reads, in order.
const changeColumns = `id, repository, branch, revision, author, comments, files, when_at, created_at,
	category, properties`

// RepoHeads returns the branch heads recorded by the last poll of the
// repository named repo, as a map from full ref name (refs/heads/main) to
// revision. The map is nil when the repository has never been polled, and
// empty but not nil when it was polled while no watched branch existed.
func (s *Store) RepoHeads(ctx context.Context, repo string) (map[string]string, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT ref, revision FROM repo_heads WHERE repository = $1`, repo)
	if err != nil {
		return nil, fmt.Errorf("read heads of repository %q: %w", repo, err)
	}
	defer rows.Close()
	var heads map[string]string
	for rows.Next() {
		var ref, rev string
		if err := rows.Scan(&ref, &rev); err != nil {
			return nil, fmt.Errorf("read heads of repository %q: %w", repo, err)
		}
		if heads == nil {
			heads = make(map[string]string)
		}
		if ref != polledMarker {
			heads[ref] = rev
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read heads of repository %q: %w", repo, err)
	}
	return heads, nil
}

// RecordPoll stores the outcome of one poll of the repository named repo,
// in one transaction: the recorded heads become exactly heads (refs
// missing from it are forgotten), and each change is inserted unless the
// same revision of the same branch of the repository is already recorded,
// in which case the recorded change gets the details it lacks (author,
// comments, files) from it.
// It returns the changes that were new, with their ids and creation
// times, in the order given. However many pollers or retries record the
// same commit, it is recorded once.
func (s *Store) RecordPoll(ctx context.Context, repo string, heads map[string]string, changes []Change) ([]Change, error) {
	return s.RecordFencedPoll(ctx, Fence{}, repo, heads, changes)
}

// RecordFencedPoll is RecordPoll made by the clustered service that holds
// fence f: nothing is written, and the error wraps [ErrFenced], once the
// service has moved to another owner. New changes wake every master's
// schedulers.
func (s *Store) RecordFencedPoll(ctx context.Context, f Fence, repo string, heads map[string]string, changes []Change) ([]Change, error) {
	for _, c := range changes {
		if err := validChange(c); err != nil {
			return nil, fmt.Errorf("record poll of repository %q: %w", repo, err)
		}
	}
	now := time.Now()
	var added []Change
	err := s.tx(ctx, func(tx *sql.Tx) error {
		added = added[:0]
		stamp, err := s.stampFence(ctx, tx, f)
		if err != nil {
			return err
		}
		if err := replaceHeads(ctx, tx, repo, heads, now); err != nil {
			return err
		}
		if added, err = recordChanges(ctx, tx, repo, changes, now, stamp); err != nil {
			return err
		}
		if len(added) > 0 {
			return s.notify(ctx, tx, TopicChange)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("record poll of repository %q: %w", repo, err)
	}
	return added, nil
}

// replaceHeads makes the recorded heads of repo exactly heads, plus the
// polled marker. A head's updated_at moves only when its revision does.
func replaceHeads(ctx context.Context, tx *sql.Tx, repo string, heads map[string]string, now time.Time) error {
	rows, err := tx.QueryContext(ctx, `SELECT ref FROM repo_heads WHERE repository = $1 ORDER BY ref`, repo)
	if err != nil {
		return fmt.Errorf("read heads: %w", err)
	}
	var stale []string
	for rows.Next() {
		var ref string
		if err := rows.Scan(&ref); err != nil {
			rows.Close()
			return fmt.Errorf("read heads: %w", err)
		}
		if _, keep := heads[ref]; !keep && ref != polledMarker {
			stale = append(stale, ref)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read heads: %w", err)
	}

	for _, ref := range stale {
		_, err := tx.ExecContext(ctx,
			`DELETE FROM repo_heads WHERE repository = $1 AND ref = $2`, repo, ref)
		if err != nil {
			return fmt.Errorf("forget head %s: %w", ref, err)
		}
	}

	upsert := func(ref, rev string, always bool) error {
		q := `INSERT INTO repo_heads (repository, ref, revision, updated_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (repository, ref) DO UPDATE SET revision = excluded.revision,
			updated_at = excluded.updated_at`
		if !always {
			q += ` WHERE repo_heads.revision <> excluded.revision`
		}
		_, err := tx.ExecContext(ctx, q, repo, ref, rev, micros(now))
		return err
	}
	// Rows are written in ref order, so that two pollers recording the
	// same repository at once take their row locks in the same order
	// and cannot deadlock.
	for _, ref := range slices.Sorted(maps.Keys(heads)) {
		rev := heads[ref]
		if ref == polledMarker {
			return fmt.Errorf("record head: empty ref name for revision %s", rev)
		}
		if err := upsert(ref, rev, false); err != nil {
			return fmt.Errorf("record head %s: %w", ref, err)
		}
	}
	if err := upsert(polledMarker, "", true); err != nil {
		return fmt.Errorf("mark repository polled: %w", err)
	}
	return nil
}

// recordChanges records changes of repo, in order, each unless the same
// revision of the same branch is already recorded, and returns those that
// were new. A change already recorded gets the details it lacks (author,
// comments, files) from the one given, as when a webhook that described
// nothing came first and a poll brings the commit's details.
func recordChanges(ctx context.Context, tx *sql.Tx, repo string, changes []Change, now time.Time,
	stamp fenceStamp) ([]Change, error) {
	var added, known []Change
	for _, c := range changes {
		c.Repository = repo
		stored, isNew, err := insertChange(ctx, tx, c, now, stamp)
		if err != nil {
			return nil, err
		}
		if isNew {
			added = append(added, stored)
		} else {
			known = append(known, c)
		}
	}
	// Filling in locks the row of a change that another poll or delivery
	// may be filling in too, and two of them may list the commits of a
	// merge in different orders: taking the locks in one order keeps them
	// from deadlocking.
	slices.SortFunc(known, func(a, b Change) int {
		return cmp.Or(cmp.Compare(a.Branch, b.Branch), cmp.Compare(a.Revision, b.Revision))
	})
	for _, c := range known {
		if _, _, err := fillChange(ctx, tx, c); err != nil {
			return nil, err
		}
	}
	return added, nil
}

// fillChange gives the recorded change of c's repository, branch and
// revision the details it lacks and c has: an empty author, comments or
// list of files is filled in, one already recorded is never replaced. It
// returns the change as stored afterwards and whether anything was filled
// in. The change keeps the fence it was first written under; a fenced
// writer has checked its fence in the same transaction.
func fillChange(ctx context.Context, tx *sql.Tx, c Change) (Change, bool, error) {
	files, err := json.Marshal(nonNil(c.Files))
	if err != nil {
		return Change{}, false, fmt.Errorf("encode files of change %s: %w", c.Revision, err)
	}
	args := []any{c.Repository, c.Branch, c.Revision}
	var sets, gaps []string
	fill := func(column, empty string, value any) {
		args = append(args, value)
		sets = append(sets, fmt.Sprintf("%s = CASE WHEN %s = %s THEN $%d ELSE %s END",
			column, column, empty, len(args), column))
		gaps = append(gaps, column+" = "+empty)
	}
	if c.Author != "" {
		fill("author", "''", c.Author)
	}
	if c.Comments != "" {
		fill("comments", "''", c.Comments)
	}
	if len(c.Files) > 0 {
		fill("files", "'[]'", string(files))
	}
	if len(sets) == 0 {
		return Change{}, false, nil
	}
	row := tx.QueryRowContext(ctx, `UPDATE changes SET `+strings.Join(sets, ", ")+`
		WHERE repository = $1 AND branch = $2 AND revision = $3
		AND (`+strings.Join(gaps, " OR ")+`) RETURNING `+changeColumns, args...)
	stored, err := scanChange(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Change{}, false, nil
	}
	if err != nil {
		return Change{}, false, fmt.Errorf("fill in details of change %s on %s: %w", c.Revision, c.Branch, err)
	}
	return stored, true, nil
}

// insertChange inserts c, stamped with the fence it is written under,
// unless its (repository, branch, revision) is already recorded. It
// returns the stored change and whether it is new; an existing change is
// returned as stored.
func insertChange(ctx context.Context, tx *sql.Tx, c Change, now time.Time, stamp fenceStamp) (Change, bool, error) {
	files, err := json.Marshal(nonNil(c.Files))
	if err != nil {
		return Change{}, false, fmt.Errorf("encode files of change %s: %w", c.Revision, err)
	}
	props, err := json.Marshal(nonNilMap(c.Properties))
	if err != nil {
		return Change{}, false, fmt.Errorf("encode properties of change %s: %w", c.Revision, err)
	}
	var id int64
	err = tx.QueryRowContext(ctx, `INSERT INTO changes (repository, branch, revision, author,
		comments, files, when_at, created_at, category, properties, fence_service, fence_token,
		fenced_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
		ON CONFLICT (repository, branch, revision) DO NOTHING RETURNING id`,
		c.Repository, c.Branch, c.Revision, c.Author, c.Comments, string(files),
		micros(c.When), micros(now), c.Category, string(props),
		stamp.service, stamp.token, stamp.at).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		row := tx.QueryRowContext(ctx, `SELECT `+changeColumns+` FROM changes
			WHERE repository = $1 AND branch = $2 AND revision = $3`,
			c.Repository, c.Branch, c.Revision)
		old, err := scanChange(row)
		if err != nil {
			return Change{}, false, fmt.Errorf("read existing change %s on %s: %w", c.Revision, c.Branch, err)
		}
		return old, false, nil
	}
	if err != nil {
		return Change{}, false, fmt.Errorf("insert change %s on %s: %w", c.Revision, c.Branch, err)
	}
	c.ID = id
	c.Files = nonNil(c.Files)
	if len(c.Properties) == 0 {
		c.Properties = nil
	}
	c.When = fromMicros(micros(c.When))
	c.CreatedAt = fromMicros(micros(now))
	return c, true, nil
}

// AddChange records one change, as a webhook delivery reports it. It
// returns the stored change and true when it is new; when the same
// revision of the same branch of the repository is already recorded, it
// returns that change and false, having filled in the details it lacked
// and c has (author, comments, files), and written nothing else.
func (s *Store) AddChange(ctx context.Context, c Change) (Change, bool, error) {
	if err := validChange(c); err != nil {
		return Change{}, false, fmt.Errorf("add change: %w", err)
	}
	if c.Repository == "" {
		return Change{}, false, errors.New("add change: no repository")
	}
	var out Change
	var isNew bool
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		out, isNew, err = insertChange(ctx, tx, c, time.Now(), fenceStamp{})
		if err != nil || isNew {
			return err
		}
		filled, ok, err := fillChange(ctx, tx, c)
		if ok {
			out = filled
		}
		return err
	})
	if err != nil {
		return Change{}, false, fmt.Errorf("add change: %w", err)
	}
	return out, isNew, nil
}

// Changes lists recorded changes newest first, one page as o describes.
func (s *Store) Changes(ctx context.Context, o ListOptions) ([]Change, error) {
	before, limit := o.bounds()
	rows, err := s.db.QueryContext(ctx, `SELECT `+changeColumns+` FROM changes
		WHERE id < $1 AND ($2 = 0 OR id = $2) ORDER BY id DESC LIMIT $3`, before, o.ID, limit)
	if err != nil {
		return nil, fmt.Errorf("list changes: %w", err)
	}
	defer rows.Close()
	var out []Change
	for rows.Next() {
		c, err := scanChange(rows)
		if err != nil {
			return nil, fmt.Errorf("list changes: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list changes: %w", err)
	}
	return out, nil
}

// Change returns the change with the given id, or an error wrapping
// [ErrNotFound].
func (s *Store) Change(ctx context.Context, id int64) (Change, error) {
	row := s.db.QueryRowContext(ctx, `SELECT `+changeColumns+` FROM changes WHERE id = $1`, id)
	c, err := scanChange(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Change{}, fmt.Errorf("change %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Change{}, fmt.Errorf("read change %d: %w", id, err)
	}
	return c, nil
}

// scanChange reads one row selected with changeColumns.
func scanChange(row interface{ Scan(...any) error }) (Change, error) {
	var c Change
	var files, props string
	var when, created int64
	err := row.Scan(&c.ID, &c.Repository, &c.Branch, &c.Revision, &c.Author, &c.Comments,
		&files, &when, &created, &c.Category, &props)
	if err != nil {
		return Change{}, err
	}
	if err := json.Unmarshal([]byte(files), &c.Files); err != nil {
		return Change{}, fmt.Errorf("decode files of change %d: %w", c.ID, err)
	}
	if err := json.Unmarshal([]byte(props), &c.Properties); err != nil {
		return Change{}, fmt.Errorf("decode properties of change %d: %w", c.ID, err)
	}
	if len(c.Properties) == 0 {
		c.Properties = nil
	}
	c.Files = nonNil(c.Files)
	c.When = fromMicros(when)
	c.CreatedAt = fromMicros(created)
	return c, nil
}

// validChange checks what every stored change must have.
func validChange(c Change) error {
	switch {
	case c.Branch == "":
		return fmt.Errorf("change %s has no branch", c.Revision)
	case c.Revision == "":
		return fmt.Errorf("change on branch %s has no revision", c.Branch)
	}
	return nil
}
