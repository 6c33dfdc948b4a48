package store_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/regent-ci/regent/internal/store"
	"github.com/regent-ci/regent/internal/testutil/pgtest"
)

// ExistingOnly refuses a SQLite path with no file and creates nothing
// there, while it opens an existing database as Open does.
func TestOpenExistingOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()

	missing := filepath.Join(dir, "missing.db")
	if s, err := store.Open(ctx, missing, store.ExistingOnly()); !errors.Is(err, os.ErrNotExist) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("open a missing database: %v, want an error wrapping os.ErrNotExist", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		t.Fatalf("opening a missing database left %s behind", entries[0].Name())
	}

	existing := filepath.Join(dir, "regent.db")
	s, err := store.Open(ctx, existing)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, s, state())
	s.Close()
	s, err = store.Open(ctx, existing, store.ExistingOnly())
	if err != nil {
		t.Fatalf("open an existing database: %v", err)
	}
	defer s.Close()
	if _, active, err := s.ActiveState(ctx); err != nil || len(active.Builders) != 2 {
		t.Fatalf("active state of the reopened database: %v, %v", active, err)
	}
}

// ExistingOnly refuses a SQLite file that holds no Regent schema (empty,
// not a database, or another program's database) and writes nothing to it
// nor beside it.
func TestOpenExistingOnlyRefusesFilesNotRegents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	other := filepath.Join(dir, "other.db")
	db, err := sql.Open("sqlite", other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE notes (body TEXT)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	otherBytes, err := os.ReadFile(other)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"empty.db": nil, "text.db": []byte("not a database\n"), "other.db": otherBytes}
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := store.Open(ctx, path, store.ExistingOnly())
		if !errors.Is(err, store.ErrNotRegentDatabase) {
			if s != nil {
				s.Close()
			}
			t.Fatalf("open %s: %v, want ErrNotRegentDatabase", name, err)
		}
		if !bytes.Contains([]byte(err.Error()), []byte(path)) {
			t.Errorf("the error names not the path %s: %v", path, err)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, content) {
			t.Errorf("opening %s changed it: %d bytes before, %d after", name, len(content), len(got))
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != len(files) {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("files in the directory after the refusals: %v, want only %d", names, len(files))
	}
}

// ExistingOnly refuses an empty PostgreSQL database and creates no table
// in it.
func TestOpenExistingOnlyRefusesEmptyPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.URL(t)
	s, err := store.Open(ctx, dsn, store.ExistingOnly())
	if !errors.Is(err, store.ErrNotRegentDatabase) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("open an empty database: %v, want ErrNotRegentDatabase", err)
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var tables int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM information_schema.tables
		WHERE table_schema = current_schema()`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Fatalf("the refused open created %d tables", tables)
	}

	full, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	full.Close()
	s, err = store.Open(ctx, dsn, store.ExistingOnly())
	if err != nil {
		t.Fatalf("open a Regent database: %v", err)
	}
	s.Close()
}
