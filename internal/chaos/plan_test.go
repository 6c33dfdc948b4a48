package chaos

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// The same seed always gives the same plan, so a failing campaign can be
// replayed; another seed gives another.
func TestPlanIsReproducible(t *testing.T) {
	o := Options{Seed: 42, Duration: 2 * time.Minute}
	a, b := NewPlan(o), NewPlan(o)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two plans of seed 42 differ")
	}
	o.Seed = 43
	if c := NewPlan(o); reflect.DeepEqual(a.Faults, c.Faults) {
		t.Fatal("seeds 42 and 43 give the same faults")
	}
}

// A plan keeps the campaign survivable: at most one master under a fault
// at a time, no master fault while PostgreSQL is down, every fault over
// before the end.
func TestPlanKeepsTwoMastersWorking(t *testing.T) {
	for seed := range int64(50) {
		p := NewPlan(Options{Seed: seed, Duration: 3 * time.Minute})
		var busyUntil time.Duration
		for _, f := range p.Faults {
			if f.At+f.For >= p.Duration {
				t.Fatalf("seed %d: %s at %s lasts past the end", seed, f.Kind, f.At)
			}
			if f.Kind.onMaster() || f.Kind == PostgresRestart {
				if f.At < busyUntil {
					t.Fatalf("seed %d: %s at %s overlaps another master or PostgreSQL fault", seed, f.Kind, f.At)
				}
				busyUntil = f.At + f.For
			}
		}
	}
}

// The bounded campaigns of make test inject every kind of fault between
// them, and apply configurations that rename and remove builders.
func TestBoundedSeedsCoverEveryFault(t *testing.T) {
	seen := map[FaultKind]bool{}
	renamed, removed := false, false
	for _, seed := range boundedSeeds {
		p := NewPlan(Options{Seed: seed, Duration: boundedDuration, Workers: 4, FaultGap: boundedFaultGap})
		for _, f := range p.Faults {
			seen[f.Kind] = true
		}
		for i := 1; i < len(p.Layouts); i++ {
			prev, cur := p.Layouts[i-1].Names(), p.Layouts[i].Names()
			for _, b := range p.Layouts[i].Builders {
				renamed = renamed || b.Previous != ""
			}
			removed = removed || len(cur) < len(prev)
		}
	}
	var missing []string
	for _, k := range AllFaults {
		if !seen[k] {
			missing = append(missing, string(k))
		}
	}
	if len(missing) > 0 || !renamed || !removed {
		t.Fatalf("bounded seeds %v miss faults %s; rename %v, removal %v", boundedSeeds,
			strings.Join(missing, ", "), renamed, removed)
	}
}

// Every layout renders a configuration naming each of its builders, and
// a renamed builder names its previous name.
func TestLayoutRenders(t *testing.T) {
	p := NewPlan(Options{Seed: 3, Duration: 2 * time.Minute})
	e := renderEnv{RepoURL: "file:///repo", MarkDir: "/marks", Workers: p.Workers, Spare: p.SpareWorker}
	for i, l := range p.Layouts {
		star := l.Render(e)
		for _, b := range l.Builders {
			if !strings.Contains(star, `builder(name = "`+b.Name()+`"`) {
				t.Errorf("layout %d lacks builder %s:\n%s", i, b.Name(), star)
			}
			if b.Previous != "" && !strings.Contains(star, `previous_names = ["`+b.Previous+`"]`) {
				t.Errorf("layout %d: %s does not name %s as previous:\n%s", i, b.Name(), b.Previous, star)
			}
		}
		if strings.Contains(star, `"wx"`) != l.Spare {
			t.Errorf("layout %d: spare worker %v, rendered:\n%s", i, l.Spare, star)
		}
	}
}
