package store_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/regent-ci/regent/internal/store"
	"github.com/regent-ci/regent/internal/testutil/pgtest"
)

// Masters started together on an empty database all open it: the schema
// is created once, whichever of them gets there first, and none fails.
func TestMastersStartedTogetherOnAnEmptyDatabase(t *testing.T) {
	urls := map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return filepath.Join(t.TempDir(), "regent.db") },
		"postgres": func(t *testing.T) string { return pgtest.URL(t) },
	}
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			for round := range 3 {
				url := urls[name](t)
				const masters = 6
				var wg sync.WaitGroup
				errs := make([]error, masters)
				stores := make([]*store.Store, masters)
				start := make(chan struct{})
				for i := range masters {
					wg.Go(func() {
						<-start
						stores[i], errs[i] = store.Open(context.Background(), url)
					})
				}
				close(start)
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Errorf("round %d: master %d: open: %v", round, i, err)
						continue
					}
					stores[i].Close()
				}
			}
		})
	}
}
