package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
	"github.com/regent-ci/regent/internal/testutil/pgtest"
)

// largeState builds a configuration of 1,000 builders, 200 workers, each
// with its own password, and 300 schedulers. shift renames, removes and adds 10 of each kind: builders
// 0-9 renamed (declared), 10-19 removed, 10 new ones added; likewise
// workers and schedulers (removed and added).
func largeState(shift bool) *config.State {
	st := &config.State{}
	for i := range 200 {
		if shift && i >= 10 && i < 20 {
			continue
		}
		st.Workers = append(st.Workers, config.Worker{Name: fmt.Sprintf("w%03d", i),
			Password: fmt.Sprintf("pw-%03d", i), MaxBuilds: 2})
	}
	if shift {
		for i := range 10 {
			st.Workers = append(st.Workers, config.Worker{Name: fmt.Sprintf("wnew%02d", i),
				Password: fmt.Sprintf("pw-new%02d", i), MaxBuilds: 1})
		}
	}
	for i := range 1000 {
		if shift && i >= 10 && i < 20 {
			continue
		}
		b := config.Builder{Name: fmt.Sprintf("b%04d", i), Workers: []string{fmt.Sprintf("w%03d", 20+i%180)},
			Steps: []config.Step{{Kind: config.StepShell, Name: "test", Command: "make test"}}}
		if shift && i < 10 {
			b.PreviousNames = []string{b.Name}
			b.Name = fmt.Sprintf("renamed%04d", i)
		}
		st.Builders = append(st.Builders, b)
	}
	if shift {
		for i := range 10 {
			st.Builders = append(st.Builders, config.Builder{Name: fmt.Sprintf("bnew%02d", i),
				Workers: []string{"w020"}, Steps: []config.Step{{Kind: config.StepShell, Name: "x", Command: "true"}}})
		}
	}
	for i := range 300 {
		if shift && i < 10 {
			continue
		}
		st.Schedulers = append(st.Schedulers, config.Scheduler{Name: fmt.Sprintf("s%03d", i),
			Kind: config.SchedulerForce, Builders: []string{fmt.Sprintf("b%04d", 100+i)}})
	}
	if shift {
		for i := range 10 {
			st.Schedulers = append(st.Schedulers, config.Scheduler{Name: fmt.Sprintf("snew%02d", i),
				Kind: config.SchedulerForce, Builders: []string{"b0500"}})
		}
	}
	return st
}

// BenchmarkApply measures applying the large configuration to an empty
// database (first) and then alternating between it and its shifted
// variant (change), on both databases.
func BenchmarkApply(b *testing.B) {
	for _, db := range []string{"sqlite", "postgres"} {
		open := func(b *testing.B) *store.Store {
			dsn := filepath.Join(b.TempDir(), "regent.db")
			if db == "postgres" {
				dsn = pgtest.URL(b)
			}
			s, err := store.Open(context.Background(), dsn)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}
		base, shifted := largeState(false), largeState(true)
		b.Run(db+"/first", func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				s := open(b)
				b.StartTimer()
				if _, err := s.Apply(context.Background(), base, "bench", "bench"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(db+"/change", func(b *testing.B) {
			s := open(b)
			if _, err := s.Apply(context.Background(), base, "bench", "bench"); err != nil {
				b.Fatal(err)
			}
			states := []*config.State{shifted, base}
			i := 0
			for b.Loop() {
				res, err := s.Apply(context.Background(), states[i%2], "bench", "bench")
				if err != nil || !res.Created {
					b.Fatalf("apply: %v (created %v)", err, res.Created)
				}
				i++
			}
		})
	}
}
