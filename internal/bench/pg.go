package bench

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regent-ci/regent/internal/testutil/pgtest"
)

// envPostgresURL names the variable holding the admin URL of a running
// PostgreSQL server; scripts/with-postgres.sh sets it.
const envPostgresURL = "REGENT_TEST_POSTGRES_URL"

// postgres is the PostgreSQL server the workloads make their databases
// on: the one named by REGENT_TEST_POSTGRES_URL, or a throwaway one the
// harness starts (durability off, as for the tests; both systems share
// it, so the comparison stays fair).
type postgres struct {
	admin string
	dir   string // set if the harness started the server

	mu  sync.Mutex
	dbs []string
	seq int
}

// startPostgres finds or starts the server.
func startPostgres(workDir string) (*postgres, error) {
	if u := os.Getenv(envPostgresURL); u != "" {
		return &postgres{admin: u}, nil
	}
	dir := filepath.Join(workDir, "postgres")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("start PostgreSQL: %w", err)
	}
	admin, err := pgtest.StartDetached(dir)
	if err != nil {
		return nil, fmt.Errorf("start PostgreSQL: %w", err)
	}
	return &postgres{admin: admin, dir: dir}, nil
}

// newDatabase creates an empty database and returns its URL.
func (p *postgres) newDatabase(ctx context.Context, label string) (string, error) {
	p.mu.Lock()
	p.seq++
	name := fmt.Sprintf("bench_%s_%d_%d", label, time.Now().Unix(), p.seq)
	p.mu.Unlock()
	conn, err := pgx.Connect(ctx, p.admin)
	if err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	p.mu.Lock()
	p.dbs = append(p.dbs, name)
	p.mu.Unlock()
	u, err := url.Parse(p.admin)
	if err != nil {
		return "", fmt.Errorf("create database %s: parse the admin URL: %w", name, err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// sqlAlchemyURL turns a postgres:// URL into the form Buildbot's
// SQLAlchemy takes.
func sqlAlchemyURL(dbURL string) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", fmt.Errorf("database URL: %w", err)
	}
	u.Scheme = "postgresql+psycopg2"
	u.RawQuery = ""
	return u.String(), nil
}

// close drops the databases made and stops the server if the harness
// started it.
func (p *postgres) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if p.dir != "" {
		return pgtest.StopDetached(p.dir)
	}
	conn, err := pgx.Connect(ctx, p.admin)
	if err != nil {
		return fmt.Errorf("drop benchmark databases: %w", err)
	}
	defer conn.Close(ctx)
	for _, name := range p.dbs {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
	}
	return nil
}
