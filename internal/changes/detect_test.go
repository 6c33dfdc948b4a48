package changes

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestManyCommitsFoldIntoOneSummaryChange(t *testing.T) {
	t.Parallel()
	const limit = 20
	h := newHarness(t, func(c *PollerConfig) { c.MaxChangesPerPoll = limit })
	h.poll()

	revs := h.remote.commitMany(300)
	h.remote.push()
	h.poll()

	got := h.taken()
	if len(got) != limit {
		t.Fatalf("a poll of 300 commits made %d changes, want %d", len(got), limit)
	}
	if want := on("main", revs[:limit-1]...); !reflect.DeepEqual(refsOf(got[:limit-1]), want) {
		t.Fatalf("first changes = %v, want the oldest %d commits", refsOf(got[:limit-1]), limit-1)
	}
	summary := got[limit-1]
	if summary.Revision != revs[299] {
		t.Fatalf("summary revision = %s, want the newest %s", summary.Revision, revs[299])
	}
	if !strings.HasPrefix(summary.Comments, "bulk commit 299\n\n") ||
		!strings.Contains(summary.Comments, "stands for 281 commits") {
		t.Fatalf("summary comments = %q", summary.Comments)
	}
	if len(summary.Files) != 281 || summary.Files[0] != "many/100" || !slices.Contains(summary.Files, "many/19") ||
		slices.Contains(summary.Files, "many/18") {
		t.Fatalf("summary files = %d paths %v..., want many/19 to many/299", len(summary.Files), summary.Files[:3])
	}
	if !summary.When.Equal(commitTime(301)) {
		t.Fatalf("summary time = %v, want the newest commit's", summary.When)
	}
	if head := h.heads()["refs/heads/main"]; head != revs[299] {
		t.Fatalf("recorded head = %s, want %s", head, revs[299])
	}

	// Exactly the cap: no summary.
	revs = h.remote.commitMany(limit)
	h.remote.push()
	h.poll()
	if got := refsOf(h.taken()); !reflect.DeepEqual(got, on("main", revs...)) {
		t.Fatalf("a poll of %d commits made %v", limit, got)
	}
}

// TestForcePushC14 is field case C14: the only branch is rewritten, then
// grows again.
func TestForcePushC14(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.remote.commit("first try", map[string]string{"a": "1"})
	h.remote.push()
	h.poll()
	h.taken()

	h.remote.tick++
	h.remote.git("commit", "--quiet", "--amend", "-m", "second try")
	amended := h.remote.git("rev-parse", "HEAD")
	h.remote.push()
	h.poll()
	if got := refsOf(h.taken()); !reflect.DeepEqual(got, on("main", amended)) {
		t.Fatalf("changes after amend and force-push = %v, want %v", got, on("main", amended))
	}
	if head := h.heads()["refs/heads/main"]; head != amended {
		t.Fatalf("recorded head = %s, want %s", head, amended)
	}

	later := h.remote.commit("later", map[string]string{"b": "2"})
	h.remote.push()
	h.poll()
	if got := refsOf(h.taken()); !reflect.DeepEqual(got, on("main", later)) {
		t.Fatalf("changes after a further push = %v, want %v", got, on("main", later))
	}

	// A rebase that rewrites two commits makes a change for each.
	h.remote.git("reset", "--quiet", "--hard", "HEAD~2")
	x := h.remote.commit("rewritten x", map[string]string{"x": "x"})
	y := h.remote.commit("rewritten y", map[string]string{"y": "y"})
	h.remote.push()
	h.poll()
	if got := refsOf(h.taken()); !reflect.DeepEqual(got, on("main", x, y)) {
		t.Fatalf("changes after a rewrite of two commits = %v, want %v", got, on("main", x, y))
	}

	// Moving the branch back to a commit it had is recorded, and makes no
	// second change for that commit.
	h.remote.git("reset", "--quiet", "--hard", x)
	h.remote.push()
	h.poll()
	if got := h.taken(); len(got) != 0 {
		t.Fatalf("moving back made changes %v", refsOf(got))
	}
	if head := h.heads()["refs/heads/main"]; head != x {
		t.Fatalf("recorded head after moving back = %s, want %s", head, x)
	}
	if hl := h.poller.Health(); hl.Failing() {
		t.Fatalf("health = %+v, want no error", hl)
	}
}

// TestForcePushToUnknownHistoryMakesOneChange covers a mirror that never
// saw the recorded heads (a new master's cache after a force-push):
// rewritten history cannot be told apart from old history, so only the
// new head becomes a change.
func TestForcePushToUnknownHistoryMakesOneChange(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.poll()
	h.remote.commit("to be lost", nil)
	h.remote.push()
	h.poll()
	h.taken()
	h.poller = h.newPoller(h.store, nil) // its mirror starts empty
	h.remote.git("reset", "--quiet", "--hard", "HEAD~1")
	h.remote.commit("one", nil)
	head := h.remote.commit("two", nil)
	h.remote.push()

	h.poll()
	if got := refsOf(h.taken()); !reflect.DeepEqual(got, on("main", head)) {
		t.Fatalf("changes = %v, want only the new head", got)
	}
}

// TestDeletedBranchForgottenRecreatedDetectedC14 is the second half of
// field case C14, for the only watched branch and for one of several.
func TestDeletedBranchForgottenRecreatedDetectedC14(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *PollerConfig) { c.Repo.Branches = []string{"main", "feature/*"} })
	h.poll()

	h.remote.git("checkout", "--quiet", "-b", "feature/x")
	fx := h.remote.commit("feature work", nil)
	h.remote.push("feature/x")
	h.poll()
	if got := refsOf(h.taken()); !reflect.DeepEqual(got, on("feature/x", fx)) {
		t.Fatalf("a new branch made %v, want its head only", got)
	}

	for _, branch := range []string{"feature/x", "main"} {
		h.remote.deleteBranch(branch)
		h.poll()
		if _, ok := h.heads()["refs/heads/"+branch]; ok {
			t.Fatalf("deleted branch %s is still recorded", branch)
		}
	}
	if heads := h.heads(); heads == nil || len(heads) != 0 {
		t.Fatalf("heads with every branch deleted = %#v, want empty", heads)
	}

	h.remote.git("checkout", "--quiet", "main")
	again := h.remote.commit("main again", nil)
	h.remote.push("main")
	h.poll()
	if got := refsOf(h.taken()); !reflect.DeepEqual(got, on("main", again)) {
		t.Fatalf("re-created main made %v, want %v", got, on("main", again))
	}
	if hl := h.poller.Health(); hl.Failing() {
		t.Fatalf("health = %+v, want no error", hl)
	}
}

func TestOnlyWatchedBranchesMakeChanges(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *PollerConfig) { c.Repo.Branches = []string{"main", "release/*"} })
	h.poll()

	var want []string
	for _, branch := range []string{"release/1.0", "release/x/hotfix", "other", "main"} {
		h.remote.git("checkout", "--quiet", "-B", branch, "main")
		rev := h.remote.commit("on "+branch, nil)
		h.remote.push(branch)
		if branch == "main" || branch == "release/1.0" {
			want = append(want, branch+"@"+rev)
		}
	}
	h.poll()
	slices.Sort(want) // branches are polled in name order
	if got := refsOf(h.taken()); !reflect.DeepEqual(got, want) {
		t.Fatalf("changes = %v, want %v", got, want)
	}
	if heads := h.heads(); len(heads) != 2 {
		t.Fatalf("recorded heads = %v, want main and release/1.0", heads)
	}
}

func TestMatchBranch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		branch   string
		patterns []string
		want     bool
	}{
		{"main", nil, true},
		{"a/b", nil, true},
		{"main", []string{"main"}, true},
		{"mainly", []string{"main"}, false},
		{"release/1", []string{"release/*"}, true},
		{"release/1/x", []string{"release/*"}, false},
		{"v2", []string{"main", "v?"}, true},
		{"[weird]", []string{"[weird]"}, true},
	}
	for _, tt := range tests {
		if got := matchBranch(tt.branch, tt.patterns); got != tt.want {
			t.Errorf("matchBranch(%q, %q) = %v, want %v", tt.branch, tt.patterns, got, tt.want)
		}
	}
}
