package chaos

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// readFinal reads what the checker needs from the database at dbURL,
// straight through SQL, once the cluster has settled.
func readFinal(ctx context.Context, dbURL string) (Final, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return Final{}, fmt.Errorf("read the final state: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var f Final
	err = conn.QueryRow(ctx, `SELECT COALESCE(MAX(number), 0) FROM generations`).Scan(&f.Generation)
	if err != nil {
		return Final{}, fmt.Errorf("read generations: %w", err)
	}
	for _, q := range []struct {
		what string
		fn   func() error
	}{
		{"builders", func() (err error) {
			f.Builders, err = names(ctx, conn, `SELECT name FROM builders WHERE retired_generation IS NULL ORDER BY name`)
			return err
		}},
		{"workers", func() (err error) {
			f.Workers, err = names(ctx, conn, `SELECT name FROM workers WHERE retired_generation IS NULL ORDER BY name`)
			return err
		}},
		{"builds", func() (err error) { f.Builds, err = readBuilds(ctx, conn); return err }},
		{"requests", func() (err error) { f.Requests, err = readRequests(ctx, conn); return err }},
		{"changes", func() (err error) { f.Changes, err = readChanges(ctx, conn); return err }},
		{"buildsets", func() (err error) { f.Buildsets, err = readBuildsets(ctx, conn); return err }},
		{"services", func() (err error) { f.Services, err = readServices(ctx, conn); return err }},
		{"masters", func() (err error) { f.Masters, err = readMasters(ctx, conn); return err }},
		{"grants", func() (err error) { f.Grants, err = readGrants(ctx, conn); return err }},
		{"fenced rows", func() (err error) { f.Fenced, err = readFenced(ctx, conn); return err }},
		{"lock holders", func() error {
			return conn.QueryRow(ctx, `SELECT count(*) FROM lock_holders`).Scan(&f.LockHolds)
		}},
	} {
		if err := q.fn(); err != nil {
			return Final{}, fmt.Errorf("read %s: %w", q.what, err)
		}
	}
	return f, nil
}

func names(ctx context.Context, conn *pgx.Conn, sql string) ([]string, error) {
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func micros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us)
}

func readBuilds(ctx context.Context, conn *pgx.Conn) ([]Build, error) {
	rows, err := conn.Query(ctx, `SELECT bu.id, b.name, bu.number, bu.request_id, bu.state,
		COALESCE(bu.result, ''), bu.reason, COALESCE(bu.retry_of, 0), COALESCE(w.name, ''), bu.master,
		(SELECT count(*) FROM steps s WHERE s.build_id = bu.id), bu.created_at, COALESCE(bu.finished_at, 0)
		FROM builds bu JOIN builders b ON b.id = bu.builder_id
		LEFT JOIN workers w ON w.id = bu.worker_id ORDER BY bu.id`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Build, error) {
		var b Build
		var created, finished int64
		err := r.Scan(&b.ID, &b.Builder, &b.Number, &b.Request, &b.State, &b.Result, &b.Reason,
			&b.RetryOf, &b.Worker, &b.Master, &b.Steps, &created, &finished)
		b.CreatedAt, b.FinishedAt = micros(created), micros(finished)
		return b, err
	})
}

func readRequests(ctx context.Context, conn *pgx.Conn) ([]Request, error) {
	rows, err := conn.Query(ctx, `SELECT r.id, r.buildset_id, b.name, r.state, r.reason,
		COALESCE(r.build_id, 0), COALESCE(r.retry_of, 0), COALESCE(r.merged_into, 0), r.submitted_at
		FROM build_requests r JOIN builders b ON b.id = r.builder_id ORDER BY r.id`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Request, error) {
		var r Request
		var at int64
		err := row.Scan(&r.ID, &r.Buildset, &r.Builder, &r.State, &r.Reason, &r.Build, &r.RetryOf,
			&r.Merged, &at)
		r.At = micros(at)
		return r, err
	})
}

func readChanges(ctx context.Context, conn *pgx.Conn) ([]Change, error) {
	rows, err := conn.Query(ctx, `SELECT id, repository, branch, revision FROM changes ORDER BY id`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[Change])
}

func readBuildsets(ctx context.Context, conn *pgx.Conn) ([]Buildset, error) {
	rows, err := conn.Query(ctx, `SELECT id, scheduler, COALESCE(change_id, 0), reason, created_at
		FROM buildsets ORDER BY id`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Buildset, error) {
		var b Buildset
		var at int64
		err := row.Scan(&b.ID, &b.Scheduler, &b.Change, &b.Reason, &at)
		b.CreatedAt = micros(at)
		return b, err
	})
}

func readServices(ctx context.Context, conn *pgx.Conn) ([]Service, error) {
	rows, err := conn.Query(ctx, `SELECT s.name, s.state, COALESCE(m.name, ''), COALESCE(m.state, ''),
		s.token, s.retired_at IS NOT NULL
		FROM services s LEFT JOIN masters m ON m.id = s.owner ORDER BY s.name`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[Service])
}

func readMasters(ctx context.Context, conn *pgx.Conn) ([]Master, error) {
	rows, err := conn.Query(ctx, `SELECT id, name, state FROM masters ORDER BY id`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[Master])
}

func readGrants(ctx context.Context, conn *pgx.Conn) ([]Grant, error) {
	rows, err := conn.Query(ctx, `SELECT g.service, g.token, COALESCE(m.name, ''), g.granted_at
		FROM service_grants g LEFT JOIN masters m ON m.id = g.master ORDER BY g.service, g.token`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Grant, error) {
		var g Grant
		var at int64
		err := row.Scan(&g.Service, &g.Token, &g.Master, &at)
		g.At = micros(at)
		return g, err
	})
}

// readFenced reads every row that records the fence it was written under.
func readFenced(ctx context.Context, conn *pgx.Conn) ([]FencedRow, error) {
	rows, err := conn.Query(ctx, `
		SELECT 'change ' || id, fence_service, fence_token, fenced_at FROM changes
			WHERE fence_service IS NOT NULL
		UNION ALL SELECT 'buildset ' || id, fence_service, fence_token, fenced_at FROM buildsets
			WHERE fence_service IS NOT NULL
		UNION ALL SELECT 'scheduler state ' || scheduler || '/' || item, fence_service, fence_token,
			fenced_at FROM scheduler_state WHERE fence_service IS NOT NULL
		UNION ALL SELECT 'generation ' || number, fence_service, fence_token, fenced_at FROM generations
			WHERE fence_service IS NOT NULL
		ORDER BY 4`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (FencedRow, error) {
		var f FencedRow
		var at int64
		err := row.Scan(&f.Row, &f.Service, &f.Token, &at)
		f.At = micros(at)
		return f, err
	})
}
