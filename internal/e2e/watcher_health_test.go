package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// watcherHealth is the configuration watcher's service as the API shows it.
type watcherHealth struct {
	Name        string     `json:"name"`
	LastSuccess *time.Time `json:"last_success"`
	LastError   string     `json:"last_error"`
	LastErrorAt *time.Time `json:"last_error_at"`
}

// watcherHealth returns the configuration watcher's service, or the zero
// value while the supervisor has not placed it yet.
func (f *farm) watcherHealth() watcherHealth {
	f.t.Helper()
	var l struct{ Items []watcherHealth }
	if code := getJSON(f.t, f.url(0)+"/api/v1/services", &l); code != http.StatusOK {
		f.t.Fatalf("GET services: %d", code)
	}
	for _, s := range l.Items {
		if s.Name == "config-watcher" {
			return s
		}
	}
	return watcherHealth{}
}

// While the configuration source stays refused, the watcher's last success
// stays where it was and its last error keeps being renewed, so nobody
// reading the two times concludes the problem went away; once the source
// is fixed, the success moves past the error.
func TestConfigWatcherHealthWhileTheSourceIsRefused(t *testing.T) {
	t.Parallel()
	star := oneBuilder("true")
	f := newFarm(t, star, farmOptions{workers: []string{"w1"}})
	var before watcherHealth
	eventually(t, 30*time.Second, func() error {
		if before = f.watcherHealth(); before.LastSuccess == nil {
			return fmt.Errorf("the watcher has not succeeded yet")
		}
		return nil
	})

	writeFile(t, filepath.Join(f.cfgDir, "regent.star"), star+`builder(name = "ghost", workers = ["nobody"], steps = [step.shell("true")])`+"\n")
	var first watcherHealth
	eventually(t, 30*time.Second, func() error {
		if first = f.watcherHealth(); !strings.Contains(first.LastError, `unknown worker "nobody"`) {
			return fmt.Errorf("last error %q does not name the unknown worker", first.LastError)
		}
		return nil
	})
	eventually(t, 30*time.Second, func() error {
		h := f.watcherHealth()
		if h.LastErrorAt == nil || !h.LastErrorAt.After(*first.LastErrorAt) {
			return fmt.Errorf("the refusal at %v was not recorded again", first.LastErrorAt)
		}
		if h.LastSuccess == nil || !h.LastSuccess.Equal(*first.LastSuccess) {
			return fmt.Errorf("last success moved from %v to %v while the source is refused",
				first.LastSuccess, h.LastSuccess)
		}
		return nil
	})
	if h := f.watcherHealth(); !h.LastSuccess.Equal(*first.LastSuccess) {
		t.Fatalf("last success moved from %v to %v while the source is refused", first.LastSuccess,
			h.LastSuccess)
	}

	writeFile(t, filepath.Join(f.cfgDir, "regent.star"), star)
	eventually(t, 30*time.Second, func() error {
		h := f.watcherHealth()
		if h.LastSuccess == nil || h.LastErrorAt == nil || !h.LastSuccess.After(*h.LastErrorAt) {
			return fmt.Errorf("after the fix: last success %v, last error at %v", h.LastSuccess, h.LastErrorAt)
		}
		return nil
	})
}
