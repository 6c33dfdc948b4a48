package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/testutil/procs"
)

// quickstart starts `regent quickstart` on repo with the given extra flags.
func quickstart(t *testing.T, repo, data string, args ...string) *procs.Proc {
	t.Helper()
	all := append([]string{"quickstart", "--repo", repo, "--data", data, "--listen", freeAddr(t)}, args...)
	return procs.Start(t, procs.Spec{Name: "quickstart", Path: procs.Regent(t), Args: all})
}

// readOnlyMaster starts a master on an existing SQLite database, without
// a configuration source, and returns its base URL.
func readOnlyMaster(t *testing.T, db string) string {
	t.Helper()
	addr := freeAddr(t)
	m := procs.Start(t, procs.Spec{Name: "master", Path: procs.Regent(t),
		Args: []string{"master", "--db", db, "--listen", addr, "--data-dir", t.TempDir()}})
	if _, err := m.WaitForLine("master started", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

// Must-show 1: a passing quickstart --once exits 0, and a master started
// later on its database shows the successful build and its log.
func TestQuickstartOncePasses(t *testing.T) {
	t.Parallel()
	repo := newRepo(t)
	commit(t, repo, "a.txt", "one\n")
	head := commit(t, repo, "b.txt", "two\n")
	data := t.TempDir()

	qs := quickstart(t, repo, data, "--once", "--command", "echo regent-built-$(cat b.txt)")
	if err := qs.Wait(2 * time.Minute); err != nil {
		t.Fatalf("quickstart: %v\n%s", err, qs.Stdout())
	}
	if code := qs.ExitCode(); code != 0 {
		t.Fatalf("exit status %d, want 0\nstdout:\n%s\nstderr:\n%s", code, qs.Stdout(), qs.Stderr())
	}
	if !strings.Contains(qs.Stdout(), "success") {
		t.Fatalf("stdout does not report success:\n%s", qs.Stdout())
	}

	base := readOnlyMaster(t, filepath.Join(data, "regent.db"))
	list := builds(t, base)
	if len(list) != 1 || list[0].State != "finished" || result(list[0]) != "success" {
		t.Fatalf("builds = %+v, want one successful build", list)
	}
	if rev := list[0].Properties["revision"]; rev != head {
		t.Fatalf("revision property %q, want %q", rev, head)
	}
	var steps stepList
	getJSON(t, fmt.Sprintf("%s/api/v1/builds/%d/steps", base, list[0].ID), &steps)
	var found bool
	for _, s := range steps.Items {
		log := getText(t, fmt.Sprintf("%s/api/v1/builds/%d/steps/%d/log", base, list[0].ID, s.Number))
		found = found || strings.Contains(log, "regent-built-two")
	}
	if !found {
		t.Fatalf("no step log holds the command's output; steps %+v", steps.Items)
	}
}

// Must-show 2: a failing command exits 1 and names the failing step.
func TestQuickstartOnceFails(t *testing.T) {
	t.Parallel()
	repo := newRepo(t)
	commit(t, repo, "a.txt", "one\n")
	commit(t, repo, "b.txt", "two\n")
	data := t.TempDir()

	qs := quickstart(t, repo, data, "--once", "--command", "echo about-to-fail; exit 3")
	if err := qs.Wait(2 * time.Minute); errors.Is(err, procs.ErrTimeout) {
		t.Fatalf("quickstart: %v", err)
	}
	if code := qs.ExitCode(); code != 1 {
		t.Fatalf("exit status %d, want 1\nstdout:\n%s\nstderr:\n%s", code, qs.Stdout(), qs.Stderr())
	}
	out := qs.Stdout()
	if !strings.Contains(out, "Failing step") || !strings.Contains(out, "build") ||
		!strings.Contains(out, "about-to-fail") {
		t.Fatalf("stdout does not name the failing step with its log tail:\n%s", out)
	}
	base := readOnlyMaster(t, filepath.Join(data, "regent.db"))
	if list := builds(t, base); len(list) != 1 || result(list[0]) != "failure" {
		t.Fatalf("builds = %+v, want one failed build", list)
	}
}

// Must-show 3: with quickstart running, a new commit is built within the
// poll interval plus five seconds, with its revision as property.
func TestQuickstartBuildsNewCommits(t *testing.T) {
	t.Parallel()
	repo := newRepo(t)
	commit(t, repo, "a.txt", "one\n")
	commit(t, repo, "b.txt", "two\n")
	data := t.TempDir()
	qs := quickstart(t, repo, data, "--command", "cat *.txt", "--poll-interval", "1s")
	line, err := qs.WaitForLine("Web UI: ", 60*time.Second)
	if err != nil {
		t.Fatalf("%v\n%s", err, qs.Stderr())
	}
	base := strings.TrimSuffix(strings.TrimSpace(line[strings.Index(line, "http"):]), "/")

	eventually(t, 60*time.Second, func() error {
		if l := builds(t, base); len(l) != 1 || l[0].State != "finished" {
			return fmt.Errorf("first build not finished: %+v", l)
		}
		return nil
	})
	third := commit(t, repo, "c.txt", "three\n")
	pushed := time.Now()
	var second apiBuild
	eventually(t, 1*time.Second+5*time.Second+10*time.Second, func() error {
		for _, b := range builds(t, base) {
			if b.Properties["revision"] == third {
				second = b
				return nil
			}
		}
		return fmt.Errorf("no build of %s yet", third)
	})
	t.Logf("build of the new commit appeared %s after the commit", time.Since(pushed))
	b := waitFinished(t, base, second.ID, 60*time.Second)
	if result(b) != "success" {
		t.Fatalf("second build result %s", result(b))
	}
	if code := getJSON(t, base+"/api/v1/builders", nil); code != http.StatusOK {
		t.Fatalf("builders: %d", code)
	}
}
