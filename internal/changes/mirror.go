package changes

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// mirror is a bare repository that holds a copy of a remote's branches.
// It lives in mirror.git under the poller's directory, beside an empty
// home directory for git. Only one git command runs on it at a time: the
// poller holds the directory's lock around each poll.
type mirror struct {
	dir  string // the poller's directory
	path string // the bare repository
	git  *gitRunner
}

// newMirror returns the mirror kept under dir.
func newMirror(dir string, timeout time.Duration, env []string) *mirror {
	path := filepath.Join(dir, "mirror.git")
	return &mirror{
		dir:  dir,
		path: path,
		git:  newGitRunner(path, filepath.Join(dir, "home"), timeout, env),
	}
}

// prepare creates the mirror on first use and removes what an interrupted
// git command may have left behind.
func (m *mirror) prepare(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Join(m.dir, "home"), 0o700); err != nil {
		return fmt.Errorf("create poller directory: %w", err)
	}
	if _, err := os.Stat(filepath.Join(m.path, "HEAD")); err == nil {
		return m.removeStaleLocks()
	}

	// Initialise beside the final place and rename, so that a crash
	// during init never leaves a half-made repository behind.
	os.RemoveAll(m.path)
	tmp, err := os.MkdirTemp(m.dir, "mirror.git.init-")
	if err != nil {
		return fmt.Errorf("create mirror: %w", err)
	}
	defer os.RemoveAll(tmp)
	init := &gitRunner{gitDir: tmp, env: m.git.env, timeout: m.git.timeout}
	if _, err := init.run(ctx, nil, "init", "--bare", "--quiet", tmp); err != nil {
		return fmt.Errorf("create mirror: %w", err)
	}
	if err := os.Rename(tmp, m.path); err != nil {
		return fmt.Errorf("create mirror: %w", err)
	}
	return nil
}

// removeStaleLocks deletes lock files and partial packs that a git
// command killed mid-way (a cancelled poll, a crashed master) leaves
// behind; git would refuse to update those refs until they are gone. It
// is safe because the caller holds the directory's lock, so no git
// command is running on the mirror.
func (m *mirror) removeStaleLocks() error {
	var stale []string
	top, err := os.ReadDir(m.path)
	if err != nil {
		return fmt.Errorf("read mirror: %w", err)
	}
	for _, e := range top {
		if strings.HasSuffix(e.Name(), ".lock") {
			stale = append(stale, filepath.Join(m.path, e.Name()))
		}
	}
	err = filepath.WalkDir(filepath.Join(m.path, "refs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".lock") {
			stale = append(stale, p)
		}
		return err
	})
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("look for stale locks: %w", err)
	}
	packs, _ := filepath.Glob(filepath.Join(m.path, "objects", "pack", "tmp_*"))
	stale = append(stale, packs...)
	for _, p := range stale {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("remove stale %s: %w", p, err)
		}
	}
	return nil
}

// fetch makes the mirror's branches, and its tags when tags is set, those
// of the repository at url: new and moved refs are fetched, rewritten ones
// replaced, deleted ones removed. env is added to git's environment for
// this fetch alone, such as the credentials of the repository.
func (m *mirror) fetch(ctx context.Context, url string, tags bool, env []string) error {
	args := []string{
		// Garbage collection that fetch may start runs in the
		// foreground, under the fetch's timeout and cancellation, never
		// as a detached process that outlives the poll.
		"-c", "gc.autoDetach=false", "-c", "maintenance.autoDetach=false",
		"fetch", "--quiet", "--prune", "--force", "--no-tags", "--no-write-fetch-head",
		"--", url, "+refs/heads/*:refs/heads/*"}
	if tags {
		args = append(args, "+refs/tags/*:refs/tags/*")
	}
	_, err := m.git.runWith(ctx, env, nil, args...)
	return err
}

// heads returns every branch and tag of the mirror as a map from full ref
// name to revision. An annotated tag maps to the commit it tags.
func (m *mirror) heads(ctx context.Context) (map[string]string, error) {
	out, err := m.git.run(ctx, nil, "for-each-ref", "--format=%(objectname) %(refname) %(*objectname)",
		"refs/heads/", "refs/tags/")
	if err != nil {
		return nil, err
	}
	heads := make(map[string]string)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || len(f) > 3 {
			return nil, fmt.Errorf("git for-each-ref: unexpected line %q", sc.Text())
		}
		rev := f[0]
		if len(f) == 3 {
			rev = f[2] // the commit an annotated tag points to
		}
		heads[f[1]] = rev
	}
	return heads, sc.Err()
}

// commitsPresent returns the subset of revs that are commits in the
// mirror. A revision can be missing when the mirror is new (another
// master recorded the heads) and the commit was rewritten away since.
func (m *mirror) commitsPresent(ctx context.Context, revs []string) (map[string]bool, error) {
	present := make(map[string]bool)
	if len(revs) == 0 {
		return present, nil
	}
	in := strings.Join(revs, "\n") + "\n"
	out, err := m.git.run(ctx, strings.NewReader(in),
		"cat-file", "--batch-check=%(objectname) %(objecttype)")
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(revs) {
		return nil, fmt.Errorf("git cat-file: %d answers for %d revisions", len(lines), len(revs))
	}
	for i, line := range lines {
		if strings.HasSuffix(line, " commit") {
			present[revs[i]] = true
		}
	}
	return present, nil
}

// isAncestor reports whether old is an ancestor of rev (or rev itself).
func (m *mirror) isAncestor(ctx context.Context, old, rev string) (bool, error) {
	_, err := m.git.run(ctx, nil, "merge-base", "--is-ancestor", old, rev)
	if err == nil {
		return true, nil
	}
	if exitCode(err) == 1 {
		return false, nil
	}
	return false, err
}

// revList returns the commits reachable from tip and from none of
// exclude, oldest first, parents before children.
func (m *mirror) revList(ctx context.Context, tip string, exclude []string) ([]string, error) {
	var in strings.Builder
	in.WriteString(tip + "\n")
	for _, x := range exclude {
		in.WriteString("^" + x + "\n")
	}
	out, err := m.git.run(ctx, strings.NewReader(in.String()),
		"rev-list", "--reverse", "--topo-order", "--stdin")
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(out)), nil
}

// commit is what a change needs to know about one commit.
type commit struct {
	Revision string
	Author   string // "Name <email>"
	Message  string
	Files    []string
	Time     time.Time
}

// commits describes revs, in the order given. A merge's files are those
// changed against its first parent; a rename shows as both paths.
func (m *mirror) commits(ctx context.Context, revs []string) ([]commit, error) {
	if len(revs) == 0 {
		return nil, nil
	}
	// With -z, each commit is its NUL-separated header fields, then its
	// file names, each ended by NUL, the first one after a newline.
	out, err := m.git.run(ctx, strings.NewReader(strings.Join(revs, "\n")+"\n"),
		"log", "--no-walk=unsorted", "--stdin", "-z", "--no-renames",
		"--diff-merges=first-parent", "--name-only", "--format=%H%x00%an <%ae>%x00%ct%x00%B")
	if err != nil {
		return nil, err
	}
	return parseLog(out, revs)
}

// parseLog splits the output of the git log that commits runs. File
// names may hold any byte but NUL, so a commit's list of files ends where
// the next expected revision appears: no file can be named after the
// commit that follows it, whose hash covers that file's name.
func parseLog(out []byte, revs []string) ([]commit, error) {
	tok := strings.Split(string(out), "\x00")
	i := 0
	var list []commit
	for n, rev := range revs {
		if i+4 > len(tok) || tok[i] != rev {
			return nil, fmt.Errorf("git log: output does not describe %s", rev)
		}
		secs, err := strconv.ParseInt(tok[i+2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("git log: commit time of %s: %w", rev, err)
		}
		c := commit{
			Revision: rev,
			Author:   clean(tok[i+1]),
			Time:     time.Unix(secs, 0).UTC(),
			Message:  clean(strings.TrimRight(tok[i+3], "\n")),
			Files:    []string{},
		}
		i += 4
		next := ""
		if n+1 < len(revs) {
			next = revs[n+1]
		}
		for first := true; i < len(tok) && tok[i] != next; i++ {
			name := tok[i]
			if first {
				name, first = strings.TrimPrefix(name, "\n"), false
			}
			if name != "" {
				c.Files = append(c.Files, clean(name))
			}
		}
		list = append(list, c)
	}
	return list, nil
}

// clean makes s valid UTF-8, which the database requires of text; git
// keeps names and messages as bytes.
func clean(s string) string {
	return strings.ToValidUTF8(s, "\uFFFD")
}
