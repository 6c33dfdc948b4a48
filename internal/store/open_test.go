package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/regent-ci/regent/internal/store"
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
