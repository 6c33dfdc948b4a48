package schedule

import (
	"path"
	"regexp"
	"strings"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// filter decides which changes a change-driven scheduler builds.
type filter struct {
	sc      config.Scheduler
	pattern *regexp.Regexp // any-branch schedulers with a branch pattern
}

// newFilter compiles the change filter of sc, a branch or any-branch
// scheduler. A pattern that does not compile (which validation refuses)
// matches nothing.
func newFilter(sc config.Scheduler) filter {
	f := filter{sc: sc}
	if sc.Kind == config.SchedulerAnyBranch && sc.BranchPattern != "" {
		re, err := regexp.Compile(`^(?:` + sc.BranchPattern + `)$`)
		if err != nil {
			re = regexp.MustCompile(`$.^`)
		}
		f.pattern = re
	}
	return f
}

// Matches reports whether the branch or any-branch scheduler sc builds
// change c. See [filter.matches].
func Matches(sc config.Scheduler, c store.Change) bool { return newFilter(sc).matches(c) }

// matches reports whether the scheduler builds c:
//
//   - c is a change of the scheduler's repository;
//   - a branch scheduler wants its branch; an any-branch scheduler without
//     a pattern wants every branch but not tags ("refs/tags/NAME") nor pull
//     requests ("refs/pull/N/head"), and one with a pattern wants the
//     branches, tags and pull requests whose whole name matches it;
//   - with path filters, c touches a file matching one of them: a pattern
//     ending in "/" is a directory prefix, one without "/" is also matched
//     against each file's base name ("*.go" matches "cmd/main.go"), any
//     other is a path.Match pattern on the whole path; pull requests,
//     whose files are not known, pass;
//   - with author filters, c's author contains one of them, in any case.
func (f filter) matches(c store.Change) bool {
	sc := f.sc
	if c.Repository != sc.Repo {
		return false
	}
	branch := strings.TrimPrefix(c.Branch, "refs/heads/")
	switch sc.Kind {
	case config.SchedulerBranch:
		if branch != sc.Branch {
			return false
		}
	case config.SchedulerAnyBranch:
		if f.pattern == nil && strings.HasPrefix(branch, "refs/") {
			return false
		}
		if f.pattern != nil && !f.pattern.MatchString(branch) {
			return false
		}
	default:
		return false
	}
	return f.pathsMatch(c) && f.authorMatches(c)
}

func (f filter) pathsMatch(c store.Change) bool {
	if len(f.sc.Paths) == 0 || c.Category == store.CategoryPullRequest {
		return true
	}
	for _, file := range c.Files {
		for _, p := range f.sc.Paths {
			if pathMatches(p, file) {
				return true
			}
		}
	}
	return false
}

// pathMatches reports whether file matches the path filter p.
func pathMatches(p, file string) bool {
	if strings.HasSuffix(p, "/") {
		return strings.HasPrefix(file, p)
	}
	if ok, _ := path.Match(p, file); ok {
		return true
	}
	if !strings.Contains(p, "/") {
		ok, _ := path.Match(p, path.Base(file))
		return ok
	}
	return false
}

func (f filter) authorMatches(c store.Change) bool {
	if len(f.sc.Authors) == 0 {
		return true
	}
	author := strings.ToLower(c.Author)
	for _, a := range f.sc.Authors {
		if strings.Contains(author, strings.ToLower(a)) {
			return true
		}
	}
	return false
}
