package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/testutil/procs"
)

// apiBuildset is a buildset as the REST API lists it.
type apiBuildset struct {
	ID        int64     `json:"id"`
	Scheduler string    `json:"scheduler"`
	ChangeID  *int64    `json:"change"`
	CreatedAt time.Time `json:"created_at"`
}

// buildsetsOf lists the buildsets of scheduler, oldest first.
func buildsetsOf(t *testing.T, base, scheduler string) []apiBuildset {
	t.Helper()
	var l struct{ Items []apiBuildset }
	if code := getJSON(t, base+"/api/v1/buildsets?limit=500", &l); code != http.StatusOK {
		t.Fatalf("GET buildsets: %d", code)
	}
	var out []apiBuildset
	for _, bs := range l.Items {
		if bs.Scheduler == scheduler {
			out = append(out, bs)
		}
	}
	slices.Reverse(out)
	return out
}

// apiRepo is a repository as /api/v1/repos shows it.
type apiRepo struct {
	LastSuccess *time.Time `json:"last_success"`
	LastError   string     `json:"last_error"`
	Failing     bool       `json:"failing"`
	Stale       bool       `json:"stale"`
}

// fastCommits adds n commits to branch main of the repository at dir at
// once, each touching its own file, and returns the new head.
func fastCommits(t *testing.T, dir string, n int) string {
	t.Helper()
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, "commit refs/heads/main\ncommitter Test <test@example.com> %d +0000\n"+
			"data 9\ncommit %02d\n", 1700000000+i, i%100)
		if i == 0 {
			in.WriteString("from refs/heads/main^0\n")
		}
		fmt.Fprintf(&in, "M 644 inline many/%d.txt\ndata 2\n%d\n\n", i, i%10)
	}
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(in.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git fast-import: %v\n%s", err, out)
	}
	gitRun(t, dir, "reset", "-q", "--hard", "main")
	return gitRun(t, dir, "rev-parse", "HEAD")
}

// Must-show 2 and field case C05 against the real binary: a push of 300
// commits makes at most 100 changes (the cap per poll) and, the builders
// collapsing requests, exactly one build per builder; then the repository
// becomes unreachable: the API shows the poller failing with its error
// and flags it stale, and it recovers by itself when the repository is
// back, building the next commit.
func TestManyCommitsAndAnUnreachableRepository(t *testing.T) {
	t.Parallel()
	repo := newRepo(t)
	commit(t, repo, "a.txt", "0\n")
	c := startCluster(t, fmt.Sprintf(`
r = git_repo(name = "app", url = %q, branches = ["main"], poll_interval = "1s")
w1 = worker(name = "w1", password = secret("w1"), max_builds = 2)
builder(name = "unit", workers = [w1], collapse_requests = True, steps = [step.shell(command = "true")])
builder(name = "lint", workers = [w1], collapse_requests = True, steps = [step.shell(command = "true")])
scheduler.branch(name = "on-main", repo = r, branch = "main", builders = ["unit", "lint"])
`, repo), "")
	var r apiRepo
	eventually(t, 20*time.Second, func() error {
		getJSON(t, c.base+"/api/v1/repos/app", &r)
		if r.LastSuccess == nil {
			return fmt.Errorf("not polled yet: %+v", r)
		}
		return nil
	})

	head := fastCommits(t, repo, 300)
	eventually(t, 20*time.Second, func() error {
		if n := len(buildsetsOf(t, c.base, "on-main")); n == 0 {
			return fmt.Errorf("no buildsets yet")
		}
		return nil
	})
	c.worker(t.TempDir())
	var built []apiBuild
	eventually(t, 60*time.Second, func() error {
		built = nil
		for _, b := range builds(t, c.base) {
			if b.State == "finished" {
				built = append(built, b)
			}
		}
		if len(built) < 2 {
			return fmt.Errorf("finished builds: %d", len(built))
		}
		return nil
	})
	time.Sleep(2 * time.Second) // a second build per builder would start by now
	var changes struct{ Items []struct{} }
	getJSON(t, c.base+"/api/v1/changes?limit=500", &changes)
	all := builds(t, c.base)
	if n := len(changes.Items); n > 100 || n < 2 {
		t.Fatalf("%d changes for 300 commits, want at most 100", n)
	}
	if len(all) != 2 || all[0].Properties["revision"] != head || all[1].Properties["revision"] != head {
		t.Fatalf("builds = %+v, want one per builder, of the head %s", all, head)
	}

	// The repository goes away.
	hidden := repo + ".away"
	if err := os.Rename(repo, hidden); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		r = apiRepo{}
		getJSON(t, c.base+"/api/v1/repos/app", &r)
		if !r.Failing || !r.Stale || r.LastError == "" || r.LastSuccess == nil {
			return fmt.Errorf("repository shown as %+v, want failing, stale, with the error", r)
		}
		return nil
	})
	if page := getText(t, c.base+"/repos"); !strings.Contains(page, "stale") {
		t.Fatalf("the repositories page does not flag the poller:\n%s", page)
	}
	if err := os.Rename(hidden, repo); err != nil {
		t.Fatal(err)
	}
	next := commit(t, repo, "b.txt", "1\n")
	eventually(t, 30*time.Second, func() error {
		for _, b := range builds(t, c.base) {
			if b.Properties["revision"] == next && b.State == "finished" {
				return nil
			}
		}
		return fmt.Errorf("the commit after recovery is not built")
	})
	getJSON(t, c.base+"/api/v1/repos/app", &r)
	if r.Failing || r.Stale {
		t.Fatalf("after recovery the repository is shown as %+v", r)
	}
}

// Must-show 3 with real processes: a tree-stable timer of 5 s, three
// pushes 2 s apart, then the master owning the scheduler is killed:
// exactly one buildset, for the last push, made about 5 s after it was
// recorded, by the master that took the scheduler over.
func TestTreeStableTimerSurvivesItsOwnersDeath(t *testing.T) {
	t.Parallel()
	repo := newRepo(t)
	commit(t, repo, "a.txt", "0\n")
	c := newPGCluster(t, fmt.Sprintf(`
r = git_repo(name = "app", url = %q, branches = ["main"], poll_interval = "1s")
w1 = worker(name = "w1", password = secret("w1"))
builder(name = "unit", workers = [w1], steps = [step.shell(command = "true")])
scheduler.branch(name = "stable", repo = r, branch = "main", builders = ["unit"], tree_stable_timer = "5s")
`, repo))
	c.start("m1", false)
	c.start("m2", false)
	owner := c.owner("scheduler:stable", 20*time.Second)
	c.waitPolled("poller:app")

	var last string
	for i := range 3 {
		if i > 0 {
			time.Sleep(2 * time.Second)
		}
		last = commit(t, repo, fmt.Sprintf("p%d.txt", i), "x\n")
		c.waitRecorded(last, 10*time.Second)
	}
	recorded := time.Now()
	if err := c.masters[owner].proc.Kill(); err != nil {
		t.Fatal(err)
	}
	other := c.api(owner)
	heir := c.owner("scheduler:stable", 20*time.Second, owner)

	var sets []apiBuildset
	eventually(t, 20*time.Second, func() error {
		if sets = buildsetsOf(t, other.base(), "stable"); len(sets) == 0 {
			return fmt.Errorf("no buildset yet")
		}
		return nil
	})
	time.Sleep(3 * time.Second) // a second buildset would show by now
	sets = buildsetsOf(t, other.base(), "stable")
	if len(sets) != 1 {
		t.Fatalf("%d buildsets, want 1", len(sets))
	}
	var ch struct {
		Revision  string    `json:"revision"`
		CreatedAt time.Time `json:"created_at"`
	}
	if sets[0].ChangeID == nil {
		t.Fatalf("buildset %+v has no change", sets[0])
	}
	getJSON(t, fmt.Sprintf("%s/api/v1/changes/%d", other.base(), *sets[0].ChangeID), &ch)
	after := sets[0].CreatedAt.Sub(ch.CreatedAt)
	if ch.Revision != last || after < 4900*time.Millisecond || after > 9*time.Second {
		t.Fatalf("buildset for %.8s made %v after it was recorded; want %.8s, about 5s after", ch.Revision, after, last)
	}
	if !sets[0].CreatedAt.After(recorded) || heir == owner {
		t.Fatalf("the buildset was not made by the new owner %s", heir)
	}
}

// Must-show 4 with a real process: a periodic scheduler every 5 s whose
// only master is stopped for 20 s runs once when it comes back, not four
// times, then on schedule.
func TestPeriodicAfterTheOnlyMasterWasDown(t *testing.T) {
	t.Parallel()
	c := startCluster(t, `
w1 = worker(name = "w1", password = secret("w1"))
builder(name = "unit", workers = [w1], steps = [step.shell(command = "true")])
scheduler.periodic(name = "every5s", builders = ["unit"], interval = "5s")
`, "")
	eventually(t, 20*time.Second, func() error {
		if n := len(buildsetsOf(t, c.base, "every5s")); n == 0 {
			return fmt.Errorf("no periodic buildset yet")
		}
		return nil
	})
	if err := c.master.Kill(); err != nil {
		t.Fatal(err)
	}
	before := len(buildsetsOf(t, c.restarted(t, 20*time.Second), "every5s"))

	var sets []apiBuildset
	eventually(t, 30*time.Second, func() error {
		if sets = buildsetsOf(t, c.base, "every5s"); len(sets) < before+2 {
			return fmt.Errorf("%d buildsets since the restart", len(sets)-before)
		}
		return nil
	})
	catchUp, next := sets[before], sets[before+1]
	if gap := next.CreatedAt.Sub(catchUp.CreatedAt); gap < 4*time.Second || gap > 7*time.Second {
		t.Fatalf("the run after the catch-up came %v later, want about 5s (one catch-up run, not four)", gap)
	}
}

// restarted waits for down, then starts the cluster's master again on the
// same database and configuration, and returns its base URL. The
// buildsets counted right after it answers are those made before it was
// down, since its services are not assigned yet.
func (c *cluster) restarted(t *testing.T, down time.Duration) string {
	t.Helper()
	if err := c.master.Wait(10 * time.Second); err != nil && !c.master.Exited() {
		t.Fatal(err)
	}
	time.Sleep(down)
	addr := strings.TrimPrefix(c.base, "http://")
	c.master = procs.Start(t, procs.Spec{Name: "master-again", Path: procs.Regent(t), Args: []string{
		"master", "--db", c.db, "--config", c.cfgDir, "--secrets-dir", c.secrets,
		"--listen", addr, "--data-dir", filepath.Join(t.TempDir(), "data"), "--name", "m1"}})
	if _, err := c.master.WaitForLine("master started", 30*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, c.master.Stderr())
	}
	return c.base
}
