package e2e

import (
	"fmt"
	"testing"
	"time"
)

// A generation applied through the API stands when the configuration
// watcher starts afresh on a master (here the same master, restarted; in a
// cluster, another master taking the service over) while the watched
// directory is unchanged: the watcher applies its source when the source
// changes, not because it is new to the master.
func TestAPIApplyStandsWhenTheWatcherStartsAfresh(t *testing.T) {
	t.Parallel()
	f := newFarm(t, oneBuilder("true"), farmOptions{workers: []string{"w1"}})
	f.apply(oneBuilder("echo watched")) // a generation the watcher applies
	watched := f.generation()

	code, out := configCLI(t, oneBuilder("echo through the api"), "apply", "--api", f.url(0))
	if code != 0 {
		t.Fatalf("config apply --api: exit %d\n%s", code, out)
	}
	viaAPI := f.generation()
	if viaAPI != watched+1 {
		t.Fatalf("after the API apply the generation is %d, want %d", viaAPI, watched+1)
	}

	f.kill(0)
	f.restart(0)
	restarted := time.Now()
	eventually(t, 30*time.Second, func() error {
		h := f.watcherHealth()
		if h.LastSuccess == nil || !h.LastSuccess.After(restarted.Add(2*time.Second)) {
			return fmt.Errorf("the restarted master's watcher has not run twice yet (last success %v)",
				h.LastSuccess)
		}
		return nil
	})
	if g := f.generation(); g != viaAPI {
		t.Fatalf("the restarted watcher moved the generation from %d to %d, undoing the API apply",
			viaAPI, g)
	}
}
