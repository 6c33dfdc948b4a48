package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cancelling a running build through the API reaches the step's process
// within the propagation bound (one second; the test allows a multiple),
// the build ends cancelled with the reason, and the worker takes the next
// build. On PostgreSQL the cancel goes through another master than the one
// the worker polls.
func TestCancelReachesTheStep(t *testing.T) {
	t.Parallel()
	for _, pg := range []bool{false, true} {
		name := map[bool]string{false: "sqlite", true: "postgres-two-masters"}[pg]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			termed := filepath.Join(t.TempDir(), "termed")
			pid := pidFile(t)
			step := fmt.Sprintf(`trap 'date +%%s%%N > %s; exit 143' TERM; echo $$ > %s; echo started; `+
				`while true; do sleep 0.05; done`, termed, pid)
			masters := 1
			if pg {
				masters = 2
			}
			f := newFarm(t, oneBuilder(step), farmOptions{postgres: pg, masters: masters,
				workers: []string{"w1"}})
			f.worker("w1", t.TempDir(), masters-1)
			var took []time.Duration
			for range 3 {
				id := f.buildOf(f.forceOn(0, "b"), 30*time.Second)
				f.waitLog(id, 1, "started", 30*time.Second)
				os.Remove(termed)
				sent := time.Now()
				code := postJSON(t, fmt.Sprintf("%s/api/v1/builds/%d/cancel", f.url(0), id),
					`{"reason": "stop now"}`, nil)
				if code/100 != 2 {
					t.Fatalf("cancel: status %d", code)
				}
				var at time.Time
				eventually(t, 30*time.Second, func() error {
					b, err := os.ReadFile(termed)
					if err != nil || len(b) == 0 {
						return fmt.Errorf("the step has not had SIGTERM yet")
					}
					ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
					if err != nil {
						return err
					}
					at = time.Unix(0, ns)
					return nil
				})
				b := f.waitFinished(id, 30*time.Second)
				if result(b) != "cancelled" || !strings.Contains(b.Reason, "stop now") {
					t.Fatalf("build %d: %s (%q), want cancelled with the reason", id, result(b), b.Reason)
				}
				took = append(took, at.Sub(sent))
			}
			t.Logf("cancel to SIGTERM in the step: %v", took)
			for _, d := range took {
				if d > 3*time.Second {
					t.Fatalf("a cancel took %s to reach the step", d)
				}
			}
		})
	}
}
