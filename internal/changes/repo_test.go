package changes

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testRemote is a bare repository standing for a git server, and a work
// repository that commits and pushes to it. Commits get a fixed author
// and increasing commit times from commitEpoch on.
type testRemote struct {
	t    *testing.T
	bare string
	work string
	home string
	tick int
}

// commitEpoch is the commit time of a testRemote's first commit.
var commitEpoch = time.Date(2024, 1, 2, 3, 4, 0, 0, time.UTC)

// newTestRemote makes a remote whose main branch holds one commit.
func newTestRemote(t *testing.T) *testRemote {
	t.Helper()
	dir := t.TempDir()
	r := &testRemote{
		t:    t,
		bare: filepath.Join(dir, "remote.git"),
		work: filepath.Join(dir, "work"),
		home: filepath.Join(dir, "home"),
	}
	if err := os.Mkdir(r.home, 0o700); err != nil {
		t.Fatal(err)
	}
	r.gitIn(dir, "init", "--quiet", "--bare", "--initial-branch=main", r.bare)
	r.gitIn(dir, "init", "--quiet", "--initial-branch=main", r.work)
	r.git("remote", "add", "origin", r.bare)
	r.commit("initial commit", map[string]string{"README": "hello\n"})
	r.git("push", "--quiet", "origin", "main")
	return r
}

// URL returns the remote's file:// URL.
func (r *testRemote) URL() string { return "file://" + r.bare }

// git runs git in the work repository and returns its trimmed output.
func (r *testRemote) git(args ...string) string {
	r.t.Helper()
	return r.gitIn(r.work, args...)
}

func (r *testRemote) gitIn(dir string, args ...string) string {
	r.t.Helper()
	out, err := r.gitInput(dir, nil, args...)
	if err != nil {
		r.t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// gitInput runs git in dir with stdin, without the user's configuration.
func (r *testRemote) gitInput(dir string, stdin []byte, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(stdin)
	when := commitEpoch.Add(time.Duration(r.tick) * time.Minute).Format(time.RFC3339)
	cmd.Env = append(gitEnv(r.home, nil),
		"GIT_AUTHOR_NAME=Ada Lovelace", "GIT_AUTHOR_EMAIL=ada@example.com",
		"GIT_COMMITTER_NAME=Ada Lovelace", "GIT_COMMITTER_EMAIL=ada@example.com",
		"GIT_AUTHOR_DATE="+when, "GIT_COMMITTER_DATE="+when)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// commit writes files (an empty content deletes the file), commits them
// with message on the current branch and returns the new revision.
func (r *testRemote) commit(message string, files map[string]string) string {
	r.t.Helper()
	for name, content := range files {
		p := filepath.Join(r.work, name)
		if content == "" {
			r.git("rm", "--quiet", "--", name)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
		r.git("add", "--", name)
	}
	r.tick++
	r.git("commit", "--quiet", "--allow-empty", "-m", message)
	return r.git("rev-parse", "HEAD")
}

// commitTime returns the commit time of the n-th commit made, counting
// from 1 for the initial one.
func commitTime(n int) time.Time { return commitEpoch.Add(time.Duration(n) * time.Minute) }

// commitMany adds n commits to the current branch at once with git
// fast-import, commit i changing file "many/i", and returns their
// revisions oldest first.
func (r *testRemote) commitMany(n int) []string {
	r.t.Helper()
	branch := r.git("symbolic-ref", "HEAD")
	var in bytes.Buffer
	for i := range n {
		r.tick++
		when := commitEpoch.Add(time.Duration(r.tick) * time.Minute).Unix()
		msg := fmt.Sprintf("bulk commit %d", i)
		fmt.Fprintf(&in, "commit %s\nmark :%d\n", branch, i+1)
		fmt.Fprintf(&in, "author Ada Lovelace <ada@example.com> %d +0000\n", when)
		fmt.Fprintf(&in, "committer Ada Lovelace <ada@example.com> %d +0000\n", when)
		fmt.Fprintf(&in, "data %d\n%s\n", len(msg), msg)
		if i == 0 {
			fmt.Fprintf(&in, "from %s^0\n", branch)
		}
		content := fmt.Sprintf("%d\n", i)
		fmt.Fprintf(&in, "M 100644 inline many/%d\ndata %d\n%s\n", i, len(content), content)
	}
	if _, err := r.gitInput(r.work, in.Bytes(), "fast-import", "--quiet", "--force"); err != nil {
		r.t.Fatalf("fast-import: %v", err)
	}
	r.git("reset", "--quiet", "--hard")
	revs := strings.Fields(r.git("rev-list", "--reverse", fmt.Sprintf("-%d", n), "HEAD"))
	if len(revs) != n {
		r.t.Fatalf("fast-import made %d commits, want %d", len(revs), n)
	}
	return revs
}

// push pushes the current branch, or the given refspecs, to the remote.
func (r *testRemote) push(refspecs ...string) {
	r.t.Helper()
	if len(refspecs) == 0 {
		refspecs = []string{"HEAD"}
	}
	r.git(append([]string{"push", "--quiet", "--force", "origin"}, refspecs...)...)
}

// deleteBranch removes branch from the remote, even its default branch.
func (r *testRemote) deleteBranch(branch string) {
	r.t.Helper()
	r.gitIn(r.bare, "update-ref", "-d", "refs/heads/"+branch)
}
