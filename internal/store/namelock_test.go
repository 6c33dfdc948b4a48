package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/store"
)

// On SQLite a master's name is held by a lock file: a second process (here
// a second store) cannot take a live name, and once the holder is gone the
// name is free at once, without waiting out the time-to-live.
func TestSQLiteMasterNameIsFreeOnceItsHolderIsGone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "regent.db")
	open := func() *store.Store {
		s, err := store.Open(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	first, second := open(), open()
	defer second.Close()
	info := store.MasterInfo{Name: "m1", Host: "h"}
	if _, err := first.JoinMaster(ctx, info, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := second.JoinMaster(ctx, info, time.Hour); !errors.Is(err, store.ErrNameTaken) {
		t.Fatalf("second join while the first holds the name: %v, want ErrNameTaken", err)
	}
	first.Close() // as a killed process's locks go with it
	m, err := second.JoinMaster(ctx, info, time.Hour)
	if err != nil {
		t.Fatalf("join after the holder closed: %v", err)
	}
	masters, err := second.Masters(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	alive := 0
	for _, x := range masters {
		if x.State == store.MasterAlive {
			alive++
			if x.ID != m.ID {
				t.Fatalf("incarnation %d still alive beside the new %d", x.ID, m.ID)
			}
		}
	}
	if alive != 1 {
		t.Fatalf("%d live incarnations, want 1", alive)
	}
}
