package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// The environment that make chaos and make test set.
const (
	envSeed     = "REGENT_CHAOS_SEED"      // the seed; random if empty
	envDuration = "REGENT_CHAOS_DURATION"  // the campaign's length; TestCampaign runs only if set
	envBounded  = "REGENT_CHAOS_BOUNDED"   // TestCampaignBounded runs only if set
	envKeep     = "REGENT_CHAOS_KEEP"      // keep the history and logs even when the campaign passes
	envFaultGap = "REGENT_CHAOS_FAULT_GAP" // mean time between faults; 5s if empty
)

// boundedSeeds are the campaigns make test runs, each boundedDuration
// long: seeds that together inject every kind of fault.
var boundedSeeds = []int64{3, 78}

// The bounded campaigns' length and mean time between faults.
const (
	boundedDuration = 40 * time.Second
	boundedFaultGap = 3 * time.Second
)

// TestCampaign is make chaos: one campaign of the seed and duration the
// environment gives.
func TestCampaign(t *testing.T) {
	durText := os.Getenv(envDuration)
	if durText == "" {
		t.Skipf("make chaos runs this campaign; set %s (and %s) to run it here", envDuration, envSeed)
	}
	d, err := time.ParseDuration(durText)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration such as 2m", envDuration, durText)
	}
	seed := time.Now().UnixNano() % 1_000_000
	if s := os.Getenv(envSeed); s != "" {
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("%s=%q: want an integer", envSeed, s)
		}
	}
	var gap time.Duration
	if s := os.Getenv(envFaultGap); s != "" {
		if gap, err = time.ParseDuration(s); err != nil || gap <= 0 {
			t.Fatalf("%s=%q: want a positive duration", envFaultGap, s)
		}
	}
	t.Logf("chaos: seed %d, duration %s", seed, d)
	runCampaign(t, Config{Options: Options{Seed: seed, Duration: d, FaultGap: gap, LongOutages: true}})
}

// TestCampaignBounded is the short campaign make test runs: fixed seeds,
// four workers, a fault every few seconds.
func TestCampaignBounded(t *testing.T) {
	if os.Getenv(envBounded) == "" {
		t.Skipf("make test runs the bounded campaign; set %s=1 to run it here", envBounded)
	}
	for _, seed := range boundedSeeds {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			runCampaign(t, Config{Options: Options{Seed: seed, Duration: boundedDuration, Workers: 4,
				FaultGap: boundedFaultGap}, Settle: 90 * time.Second})
		})
	}
}

// runCampaign runs one campaign in a subtest, so that its processes are
// gone before the check, then checks the history. A failure names the
// seed, shows a trace for each violation, and keeps the history and every
// process's log.
func runCampaign(t *testing.T, cfg Config) {
	out, err := os.MkdirTemp("", fmt.Sprintf("regent-chaos-%d-", cfg.Seed))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Out = out
	cfg.Logf = t.Logf
	var h *History
	if !t.Run("run", func(t *testing.T) { h = Run(t, cfg) }) || h == nil {
		t.Fatalf("chaos: seed %d: the campaign could not run; logs in %s", cfg.Seed, out)
	}
	if err := h.Save(filepath.Join(out, "history.json")); err != nil {
		t.Error(err)
	}
	t.Logf("chaos: %s", Summary(h))
	if vs := Check(h); len(vs) > 0 {
		t.Fatalf("%s\nhistory and logs kept in %s", Report(h, vs), out)
	}
	if os.Getenv(envKeep) != "" {
		t.Logf("chaos: seed %d passed; history and logs in %s", cfg.Seed, out)
		return
	}
	_ = os.RemoveAll(out)
	t.Logf("chaos: seed %d passed", cfg.Seed)
}
