package e2e

import (
	"errors"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/testutil/procs"
)

type generationList struct {
	Items []struct {
		Number int64 `json:"number"`
	} `json:"items"`
}

func generations(t *testing.T, base string) int {
	t.Helper()
	var l generationList
	if code := getJSON(t, base+"/api/v1/config/generations", &l); code != http.StatusOK {
		t.Fatalf("generations: status %d", code)
	}
	return len(l.Items)
}

// Must-show 6: an invalid configuration is refused with file:line:col and
// the active generation stays; a wrong worker password gets 401.
func TestBadInputIsRefused(t *testing.T) {
	t.Parallel()
	c := startCluster(t, slowConfig, "")
	if n := generations(t, c.base); n != 1 {
		t.Fatalf("%d generations after start, want 1", n)
	}
	pos := regexp.MustCompile(`regent\.star:\d+:\d+`)
	cases := []struct {
		name, star, line string
	}{
		{"syntax error", slowConfig + "\nbuilder(name = \"broken\"\n", "regent.star:"},
		{"unknown worker", slowConfig + "\nbuilder(name = \"orphan\", workers = [\"nobody\"], steps = [step.shell(command = \"true\")])\n", "nobody"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "regent.star"), tc.star)
			check := procs.Start(t, procs.Spec{Name: "check", Path: procs.Regent(t),
				Args: []string{"config", "apply", dir, "--db", c.db, "--secrets-dir", c.secrets}})
			if err := check.Wait(30 * time.Second); errors.Is(err, procs.ErrTimeout) {
				t.Fatal(err)
			}
			if code := check.ExitCode(); code != 1 {
				t.Fatalf("config apply exit %d, want 1; stderr:\n%s", code, check.Stderr())
			}
			if !pos.MatchString(check.Stderr()) || !strings.Contains(check.Stderr(), tc.line) {
				t.Fatalf("error lacks file:line:col or %q:\n%s", tc.line, check.Stderr())
			}
		})
	}

	// The watched source turns invalid: the master refuses it and logs
	// where, and keeps generation 1.
	writeFile(t, filepath.Join(c.cfgDir, "regent.star"), cases[1].star)
	if _, err := c.master.WaitForMatch(pos, 30*time.Second); err != nil {
		t.Fatalf("master did not report the bad configuration: %v\n%s", err, c.master.Stderr())
	}
	if n := generations(t, c.base); n != 1 {
		t.Fatalf("%d generations after invalid configurations, want 1", n)
	}
	var bl struct {
		Items []struct {
			Name string `json:"name"`
		} `json:"items"`
	}
	getJSON(t, c.base+"/api/v1/builders", &bl)
	if len(bl.Items) != 2 {
		t.Fatalf("builders = %+v, want the 2 of generation 1", bl.Items)
	}

	// A wrong worker password is refused and starts no session.
	req, _ := http.NewRequest("POST", c.base+"/api/worker/v1/sessions", nil)
	req.SetBasicAuth("w1", "wrong")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: status %d, want 401", resp.StatusCode)
	}
	var wl struct {
		Items []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"items"`
	}
	getJSON(t, c.base+"/api/v1/workers", &wl)
	if len(wl.Items) != 1 || wl.Items[0].State != "offline" {
		t.Fatalf("workers = %+v, want w1 offline", wl.Items)
	}
}
