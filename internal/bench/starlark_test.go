package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/regent-ci/regent/internal/config"
)

// The workloads' configurations evaluate to the sizes their figures
// claim.
func TestConfigurationsDeclareWhatTheySay(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                                string
		star                                string
		workers, builders, schedulers       int
		hasBuilder, lacksBuilder, renamedTo string
	}{
		{"uniform", uniformStar(4, 1000, "true", false), 4, 1000, 1, "b0010", "renamed0000", ""},
		{"uniform shifted", uniformStar(4, 1000, "true", true), 4, 1000, 1, "new0009", "b0010", "renamed0000"},
		{"large", largeStar(false), 200, 1000, 300, "b0999", "bnew00", ""},
		{"large shifted", largeStar(true), 200, 1000, 300, "bnew09", "b0015", "renamed0009"},
		{"poller", pollerStar("/tmp/repo.git"), 0, 0, 0, "", "", ""},
		{"log", logStar(logKinds[0], 1<<20), 1, 1, 0, "b0000", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fsys := fstest.MapFS{"regent.star": {Data: []byte(tc.star)}}
			st, err := config.LoadFS(context.Background(), fsys, config.Options{InProcess: true})
			if err != nil {
				t.Fatalf("load:\n%s\n%v", tc.star, err)
			}
			if len(st.Workers) != tc.workers || len(st.Builders) != tc.builders || len(st.Schedulers) != tc.schedulers {
				t.Errorf("%d workers, %d builders, %d schedulers; want %d, %d, %d", len(st.Workers),
					len(st.Builders), len(st.Schedulers), tc.workers, tc.builders, tc.schedulers)
			}
			names := map[string]config.Builder{}
			for _, b := range st.Builders {
				names[b.Name] = b
			}
			if _, ok := names[tc.hasBuilder]; tc.hasBuilder != "" && !ok {
				t.Errorf("no builder %s", tc.hasBuilder)
			}
			if _, ok := names[tc.lacksBuilder]; ok {
				t.Errorf("builder %s declared", tc.lacksBuilder)
			}
			if tc.renamedTo != "" {
				b := names[tc.renamedTo]
				if want := "b" + tc.renamedTo[len("renamed"):]; !slices.Contains(b.PreviousNames, want) {
					t.Errorf("builder %s has previous names %v, want %s", tc.renamedTo, b.PreviousNames, want)
				}
			}
		})
	}
}

// A log above Regent's per-step limit is printed by several steps, each
// within it, that print the whole size between them.
func TestLogStarSplitsAtTheStepLimit(t *testing.T) {
	t.Parallel()
	n := int64(maxStepLog*2 + 100)
	fsys := fstest.MapFS{"regent.star": {Data: []byte(logStar(logKinds[1], n))}}
	st, err := config.LoadFS(context.Background(), fsys, config.Options{InProcess: true})
	if err != nil {
		t.Fatal(err)
	}
	steps := st.Builders[0].Steps
	want := []string{fmt.Sprintf("head -c %d", maxStepLog), fmt.Sprintf("head -c %d", maxStepLog), "head -c 100"}
	if len(steps) != len(want) {
		t.Fatalf("%d steps, want %d", len(steps), len(want))
	}
	for i, s := range steps {
		if !strings.HasSuffix(s.Command, want[i]) {
			t.Errorf("step %d runs %q, want it to end with %q", i+1, s.Command, want[i])
		}
	}
}

// Each worker of the large apply's configuration has its own password, so
// that the apply hashes as many distinct passwords as there are workers.
func TestLargeStarGivesEachWorkerItsOwnPassword(t *testing.T) {
	t.Parallel()
	for _, shift := range []bool{false, true} {
		fsys := fstest.MapFS{"regent.star": {Data: []byte(largeStar(shift))}}
		st, err := config.LoadFS(context.Background(), fsys, config.Options{InProcess: true})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]string{}
		for _, w := range st.Workers {
			if other, ok := seen[w.Password]; ok {
				t.Fatalf("shift %v: workers %s and %s share a password", shift, other, w.Name)
			}
			seen[w.Password] = w.Name
		}
	}
}
