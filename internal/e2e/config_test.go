package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/testutil/procs"
)

// applyConfig writes star into a new directory and applies it with the
// CLI to the cluster's database, returning the exit status and output.
func (c *cluster) applyConfig(star string) (int, string) {
	c.t.Helper()
	return configCLI(c.t, star, "apply", "--db", c.db, "--secrets-dir", c.secrets)
}

// names lists the names of an API list.
func (c *cluster) names(path string) []string {
	c.t.Helper()
	var l struct {
		Items []struct {
			Name string `json:"name"`
		} `json:"items"`
	}
	if code := getJSON(c.t, c.base+path, &l); code != http.StatusOK {
		c.t.Fatalf("GET %s: %d", path, code)
	}
	var out []string
	for _, it := range l.Items {
		out = append(out, it.Name)
	}
	return out
}

const unitConfig = `
w1 = worker(name = "w1", password = secret("w1"), max_builds = 2)
builder(name = %s, workers = [w1], previous_names = [%s], steps = [step.shell(command = "echo unit-ran")])
builder(name = "deploy", workers = [w1], steps = [step.shell(command = "sleep %s")])
scheduler.force(name = "force", builders = [%s, "deploy"])
`

func unitStar(name, previous, deploySleep string) string {
	prev := ""
	if previous != "" {
		prev = fmt.Sprintf("%q", previous)
	}
	return fmt.Sprintf(unitConfig, fmt.Sprintf("%q", name), prev, deploySleep, fmt.Sprintf("%q", name))
}

// Field case C01 against the real binary: a declared rename keeps the
// builds under the new name and shows no separate old builder.
func TestRenameThroughApplyC01(t *testing.T) {
	t.Parallel()
	c := startCluster(t, unitStar("unit", "", "0"), "")
	c.worker(t.TempDir())
	for range 3 {
		waitFinished(t, c.base, c.force("unit"), 60*time.Second)
	}
	if code, out := c.applyConfig(unitStar("unit-tests", "unit", "0")); code != 0 {
		t.Fatalf("apply rename: %d\n%s", code, out)
	}
	if got := c.names("/api/v1/builders"); strings.Join(got, ",") != "deploy,unit-tests" {
		t.Fatalf("builders = %v", got)
	}
	if got := c.names("/api/v1/builders?include=retired"); strings.Join(got, ",") != "deploy,unit-tests" {
		t.Fatalf("builders with retired = %v, want no separate unit", got)
	}
	var l buildList
	getJSON(t, c.base+"/api/v1/builds?builder=unit-tests", &l)
	if len(l.Items) != 3 {
		t.Fatalf("unit-tests shows %d builds, want the 3 old ones", len(l.Items))
	}
}

// Field case C02 against the real binary: removing a builder with queued
// work cancels every request with a reason within a second, and none is
// ever started.
func TestRemovalCancelsQueuedWorkC02(t *testing.T) {
	t.Parallel()
	c := startCluster(t, unitStar("unit", "", "0"), "")
	var sets []buildset
	for range 5 {
		sets = append(sets, c.forceOnly("deploy")) // no worker: they stay pending
	}
	star := strings.Replace(unitStar("unit", "", "0"), `builder(name = "deploy"`, `# builder(name = "deploy"`, 1)
	star = strings.Replace(star, `, "deploy"]`, `]`, 1)
	if code, out := c.applyConfig(star); code != 0 {
		t.Fatalf("apply removal: %d\n%s", code, out)
	}
	applied := time.Now()
	for _, bs := range sets {
		var cur buildset
		getJSON(t, fmt.Sprintf("%s/api/v1/buildsets/%d", c.base, bs.ID), &cur)
		r := cur.Requests[0]
		if r.State != "cancelled" || !strings.Contains(r.Reason, "removed") || r.Build != nil {
			t.Fatalf("request %d: state %s reason %q build %v", r.ID, r.State, r.Reason, r.Build)
		}
	}
	if time.Since(applied) > 5*time.Second {
		t.Fatalf("checking took %s", time.Since(applied))
	}
	if got := c.names("/api/v1/builders"); strings.Join(got, ",") != "unit" {
		t.Fatalf("builders = %v, want deploy hidden", got)
	}
	c.worker(t.TempDir())
	time.Sleep(2 * time.Second) // give a worker the chance it must not take
	if l := builds(t, c.base); len(l) != 0 {
		t.Fatalf("builds = %+v, want none: cancelled requests must never start", l)
	}
}

// Field case C16: a configuration that fails validation deep inside is
// refused whole, with its position; the active generation, its builders
// and a running build are untouched, and the next valid one applies.
func TestInvalidConfigurationIsAllOrNothingC16(t *testing.T) {
	t.Parallel()
	c := startCluster(t, unitStar("unit", "", "20"), "")
	c.worker(t.TempDir())
	running := c.force("deploy")

	var b strings.Builder
	b.WriteString(unitStar("unit", "", "20"))
	for i := range 500 {
		worker := "w1"
		if i == 399 {
			worker = "ghost"
		}
		fmt.Fprintf(&b, "builder(name = \"gen-%03d\", workers = [%q], steps = [step.shell(command = \"true\")])\n", i, worker)
	}
	code, out := c.applyConfig(b.String())
	lines := strings.Count(unitStar("unit", "", "20"), "\n")
	wantPos := fmt.Sprintf("regent.star:%d:", lines+400)
	if code != 1 || !strings.Contains(out, wantPos) || !strings.Contains(out, "ghost") {
		t.Fatalf("apply: exit %d, want 1 with %s and the worker name:\n%s", code, wantPos, out)
	}
	if n := generations(t, c.base); n != 1 {
		t.Fatalf("%d generations, want 1", n)
	}
	if got := c.names("/api/v1/builders"); strings.Join(got, ",") != "deploy,unit" {
		t.Fatalf("builders = %v", got)
	}
	var rb apiBuild
	getJSON(t, fmt.Sprintf("%s/api/v1/builds/%d", c.base, running), &rb)
	if rb.State != "running" {
		t.Fatalf("running build is %s after the refused apply", rb.State)
	}
	if code, out := c.applyConfig(unitStar("unit-next", "unit", "20")); code != 0 {
		t.Fatalf("next valid apply: %d\n%s", code, out)
	}
	if n := generations(t, c.base); n != 2 {
		t.Fatalf("%d generations, want 2", n)
	}
	getJSON(t, fmt.Sprintf("%s/api/v1/builds/%d", c.base, running), &rb)
	if rb.State != "running" {
		t.Fatalf("running build is %s after an apply that kept its builder", rb.State)
	}
}

// Issue 3, must-show 2: a worker's old password is refused on its very
// next request once a new one is applied; the new one works.
func TestPasswordChangeRefusesOldPassword(t *testing.T) {
	t.Parallel()
	c := startCluster(t, unitStar("unit", "", "0"), "")
	login := func(pw string) int {
		req, _ := http.NewRequest("POST", c.base+"/api/worker/v1/sessions", nil)
		req.SetBasicAuth("w1", pw)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := login("secret-one"); code != http.StatusOK {
		t.Fatalf("login with the configured password: %d", code)
	}
	writeFile(t, filepath.Join(c.secrets, "w1"), "secret-two\n")
	if code, out := c.applyConfig(unitStar("unit", "", "0")); code != 0 {
		t.Fatalf("apply new password: %d\n%s", code, out)
	}
	if code := login("secret-one"); code != http.StatusUnauthorized {
		t.Fatalf("old password after the change: %d, want 401", code)
	}
	if code := login("secret-two"); code != http.StatusOK {
		t.Fatalf("new password: %d, want 200", code)
	}
}

// Field case C13: a commit pushed just before a reconfiguration is
// recorded and built exactly once.
func TestPushThenReconfigureC13(t *testing.T) {
	t.Parallel()
	repo := newRepo(t)
	commit(t, repo, "a.txt", "one\n")
	star := func(cmd string) string {
		return fmt.Sprintf(`
r = git_repo(name = "app", url = %q, branches = ["main"], poll_interval = "1s")
w1 = worker(name = "w1", password = secret("w1"))
builder(name = "ci", workers = [w1], steps = [step.git(repo = r), step.shell(command = %q)])
scheduler.branch(name = "on-main", repo = r, branch = "main", builders = ["ci"])
`, repo, cmd)
	}
	c := startCluster(t, star("cat a.txt"), "")
	c.worker(t.TempDir())
	// The first poll records the heads without building them.
	if _, err := c.master.WaitForLine("first poll recorded branch heads", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	rev := commit(t, repo, "b.txt", "two\n")
	if code, out := c.applyConfig(star("cat a.txt b.txt")); code != 0 {
		t.Fatalf("apply: %d\n%s", code, out)
	}
	var built []apiBuild
	eventually(t, 60*time.Second, func() error {
		built = built[:0]
		for _, b := range builds(t, c.base) {
			if b.Properties["revision"] == rev {
				built = append(built, b)
			}
		}
		if len(built) == 0 || built[0].State != "finished" {
			return fmt.Errorf("no finished build of %s yet", rev)
		}
		return nil
	})
	// Several more poll intervals must not build it again.
	time.Sleep(3 * time.Second)
	var changes struct {
		Items []struct {
			Revision string `json:"revision"`
		} `json:"items"`
	}
	getJSON(t, c.base+"/api/v1/changes", &changes)
	n := 0
	for _, ch := range changes.Items {
		if ch.Revision == rev {
			n++
		}
	}
	all := 0
	for _, b := range builds(t, c.base) {
		if b.Properties["revision"] == rev {
			all++
		}
	}
	if n != 1 || all != 1 {
		t.Fatalf("commit %s: %d changes and %d builds, want exactly 1 of each", rev, n, all)
	}
}

// `regent config diff|apply --api` goes through a running master, which
// evaluates the files with its own secrets.
func TestApplyThroughAPI(t *testing.T) {
	t.Parallel()
	c := startCluster(t, unitStar("unit", "", "0"), "")
	run := func(args ...string) (int, string) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "regent.star"), args[0])
		writeFile(t, filepath.Join(dir, "lib.star"), "x = 1\n")
		p := procs.Start(t, procs.Spec{Name: "apply", Path: procs.Regent(t),
			Args: append([]string{"config", args[1], dir, "--api", c.base}, args[2:]...)})
		if err := p.Wait(60 * time.Second); errors.Is(err, procs.ErrTimeout) {
			t.Fatal(err)
		}
		return p.ExitCode(), p.Stdout() + p.Stderr()
	}
	renamed := unitStar("unit-tests", "unit", "0")
	if code, out := run(renamed, "diff"); code != 0 || !strings.Contains(out, "unit-tests") {
		t.Fatalf("diff: %d\n%s", code, out)
	}
	if n := generations(t, c.base); n != 1 {
		t.Fatalf("diff made a generation: %d", n)
	}
	if code, out := run(renamed, "apply"); code != 0 || !strings.Contains(out, "applied generation 2") {
		t.Fatalf("apply: %d\n%s", code, out)
	}
	if code, out := run(renamed, "apply"); code != 0 || !strings.Contains(out, "unchanged") {
		t.Fatalf("second apply: %d\n%s", code, out)
	}
	bad := renamed + "\nbuilder(name = \"x\", workers = [\"ghost\"], steps = [step.shell(command = \"true\")])\n"
	code, out := run(bad, "apply")
	if code != 1 || !regexp.MustCompile(`regent\.star:\d+:\d+`).MatchString(out) || !strings.Contains(out, "ghost") {
		t.Fatalf("invalid apply: %d, want 1 with file:line:col\n%s", code, out)
	}
	if n := generations(t, c.base); n != 2 {
		t.Fatalf("%d generations, want 2", n)
	}
}
