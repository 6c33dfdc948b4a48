package changes

import (
	"context"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/regent-ci/regent/internal/store"
)

// branchPrefix is the ref prefix of branches; changes name branches
// without it.
const branchPrefix = "refs/heads/"

// watched returns the heads of the branches that match one of branches
// (no pattern at all watches every branch) and of the tags that match one
// of tags (no pattern watches no tag).
func watched(heads map[string]string, branches, tags []string) map[string]string {
	out := make(map[string]string)
	for ref, rev := range heads {
		if branch, ok := strings.CutPrefix(ref, branchPrefix); ok && matchBranch(branch, branches) {
			out[ref] = rev
		}
		if tag, ok := strings.CutPrefix(ref, tagRefPrefix); ok && len(tags) > 0 && matchBranch(tag, tags) {
			out[ref] = rev
		}
	}
	return out
}

// tagsMarker is a head recorded, with an empty revision, for a repository
// whose tags are watched, so that the first poll watching tags can be told
// from a later one. No tag has an empty name, so it cannot collide.
const tagsMarker = tagRefPrefix

// matchBranch reports whether branch is named by one of patterns: an
// exact name or a path.Match pattern, where "*" does not cross a "/".
func matchBranch(branch string, patterns []string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, branch); ok || p == branch {
			return true
		}
	}
	return false
}

// detect turns the move from the recorded heads old to the current heads
// cur into changes, branch by branch in name order:
//
//   - a branch that moved forward gives its new commits, oldest first;
//   - a branch whose history was rewritten (force-push) gives the commits
//     that no recorded head reaches, or at least its new head;
//   - a branch that was not recorded gives its head commit only;
//   - a branch that is gone gives nothing: it is forgotten;
//   - a tag that is new or moved gives the commit it tags, under its full
//     ref (refs/tags/NAME) with category tag, except at the first poll
//     that sees tags, which only records them.
//
// A branch with more new commits than maxChanges gives maxChanges
// changes, the last of which stands for the newest commits together.
func detect(ctx context.Context, m *mirror, repo string, old, cur map[string]string, maxChanges int) ([]store.Change, error) {
	oldRevs := make([]string, 0, len(old))
	for ref, rev := range old {
		if ref != tagsMarker {
			oldRevs = append(oldRevs, rev)
		}
	}
	sort.Strings(oldRevs)
	oldRevs = slices.Compact(oldRevs)
	present, err := m.commitsPresent(ctx, oldRevs)
	if err != nil {
		return nil, fmt.Errorf("look up recorded heads: %w", err)
	}

	refs := make([]string, 0, len(cur))
	for ref := range cur {
		refs = append(refs, ref)
	}
	sort.Strings(refs)
	// The first poll that sees tags records them without changes, as the
	// first poll of a repository does its branches: starting to watch
	// tags does not build every old release.
	_, tagsKnown := old[tagsMarker]
	var out []store.Change
	for _, ref := range refs {
		if ref == tagsMarker {
			continue
		}
		if strings.HasPrefix(ref, tagRefPrefix) {
			if !tagsKnown || old[ref] == cur[ref] {
				continue
			}
			cs, err := describe(ctx, m, repo, ref, []string{cur[ref]}, maxChanges)
			if err != nil {
				return nil, fmt.Errorf("describe tag %s: %w", ref, err)
			}
			for i := range cs {
				cs[i].Category = store.CategoryTag
			}
			out = append(out, cs...)
			continue
		}
		revs, err := newCommits(ctx, m, old[ref], cur[ref], oldRevs, present)
		if err != nil {
			return nil, fmt.Errorf("find new commits on %s: %w", ref, err)
		}
		branch := strings.TrimPrefix(ref, branchPrefix)
		cs, err := describe(ctx, m, repo, branch, revs, maxChanges)
		if err != nil {
			return nil, fmt.Errorf("describe new commits on %s: %w", branch, err)
		}
		out = append(out, cs...)
	}
	return out, nil
}

// newCommits returns the commits that moving a branch from old (empty
// when the branch was not recorded) to rev brought, oldest first.
func newCommits(ctx context.Context, m *mirror, old, rev string, known []string, present map[string]bool) ([]string, error) {
	switch {
	case old == rev:
		return nil, nil
	case old == "":
		return []string{rev}, nil
	}
	if present[old] {
		forward, err := m.isAncestor(ctx, old, rev)
		if err != nil {
			return nil, err
		}
		if forward {
			return m.revList(ctx, rev, []string{old})
		}
	}

	// History was rewritten, or the old head is unknown to this mirror.
	// Without any recorded head to stand on, everything would look new:
	// take the head alone.
	var exclude []string
	for _, k := range known {
		if present[k] {
			exclude = append(exclude, k)
		}
	}
	if len(exclude) == 0 {
		return []string{rev}, nil
	}
	revs, err := m.revList(ctx, rev, exclude)
	if err != nil || len(revs) > 0 {
		return revs, err
	}
	return []string{rev}, nil
}

// describe makes one change per commit of revs on branch. When revs holds
// more than maxChanges commits, the first maxChanges-1 get a change each
// and one summary change stands for the rest: it carries the newest
// revision, its author, time and message, a note saying how many commits
// it folds, and the files of all of them.
func describe(ctx context.Context, m *mirror, repo, branch string, revs []string, maxChanges int) ([]store.Change, error) {
	if len(revs) == 0 {
		return nil, nil
	}
	if len(revs) <= maxChanges {
		commits, err := m.commits(ctx, revs)
		if err != nil {
			return nil, err
		}
		out := make([]store.Change, len(commits))
		for i, c := range commits {
			out[i] = toChange(repo, branch, c)
		}
		return out, nil
	}

	single, folded := revs[:maxChanges-1], revs[maxChanges-1:]
	head := folded[len(folded)-1]
	commits, err := m.commits(ctx, append(slices.Clip(single), head))
	if err != nil {
		return nil, err
	}
	files, err := filesOf(ctx, m, folded)
	if err != nil {
		return nil, err
	}
	out := make([]store.Change, 0, maxChanges)
	for _, c := range commits[:len(single)] {
		out = append(out, toChange(repo, branch, c))
	}
	summary := toChange(repo, branch, commits[len(commits)-1])
	summary.Files = files
	summary.Comments += fmt.Sprintf("\n\n[Regent] This change stands for %d commits, %s..%s: "+
		"%d new commits arrived on %s in one poll, more than the %d changes a poll records "+
		"for a branch. Its files are those of all %d.",
		len(folded), short(folded[0]), short(head), len(revs), branch, maxChanges, len(folded))
	return append(out, summary), nil
}

// filesOf returns the paths that revs change, sorted, each once.
func filesOf(ctx context.Context, m *mirror, revs []string) ([]string, error) {
	commits, err := m.commits(ctx, revs)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, c := range commits {
		files = append(files, c.Files...)
	}
	sort.Strings(files)
	return slices.Compact(files), nil
}

// toChange makes the change for commit c on branch.
func toChange(repo, branch string, c commit) store.Change {
	return store.Change{
		Repository: repo,
		Branch:     branch,
		Revision:   c.Revision,
		Author:     c.Author,
		Comments:   c.Message,
		Files:      c.Files,
		When:       c.Time,
	}
}

// short abbreviates a revision for messages.
func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}
