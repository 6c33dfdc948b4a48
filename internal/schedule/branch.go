package schedule

import (
	"context"
	"fmt"
	"maps"
	"strings"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// changeBatch is how many changes a scheduler reads at a time. Changes
// recorded by one poll or delivery (at most the per-poll cap) are read
// together, so that they are built together.
const changeBatch = 1000

// runChanges gives a branch or any-branch scheduler without a tree-stable
// timer the changes it has not considered yet. The changes of one branch
// that it reads together are built together: one buildset for the newest,
// whose reason counts the others. A buildset is unique per scheduler and
// change, and the cursor is shared, so masters running the same scheduler
// at once build each change at most once.
func (s *Service) runChanges(ctx context.Context, sc config.Scheduler, repo config.Repo) error {
	cursor, err := s.cfg.Store.SchedulerCursor(ctx, sc.Name)
	if err != nil {
		return err
	}
	f := newFilter(sc)
	for {
		changes, err := s.cfg.Store.ChangesAfter(ctx, cursor, changeBatch)
		if err != nil || len(changes) == 0 {
			return err
		}
		newest, counts, order := newestPerBranch(f, changes)
		for _, branch := range order {
			if err := s.buildChange(ctx, sc, repo, newest[branch], counts[branch]); err != nil {
				return err
			}
		}
		cursor = changes[len(changes)-1].ID
		if err := s.cfg.Store.SetSchedulerCursor(ctx, sc.Name, cursor); err != nil {
			return err
		}
	}
}

// newestPerBranch returns, for each branch with changes that f matches,
// its newest change and how many matched, and the branches in the order
// of their newest changes.
func newestPerBranch(f filter, changes []store.Change) (map[string]store.Change, map[string]int, []string) {
	newest := map[string]store.Change{}
	counts := map[string]int{}
	for _, c := range changes {
		if f.matches(c) {
			newest[c.Branch] = c
			counts[c.Branch]++
		}
	}
	var order []string
	for _, c := range changes {
		if n, ok := newest[c.Branch]; ok && n.ID == c.ID {
			order = append(order, c.Branch)
		}
	}
	return newest, counts, order
}

// buildChange creates the scheduler's buildset for change c, standing for
// n changes of its branch.
func (s *Service) buildChange(ctx context.Context, sc config.Scheduler, repo config.Repo, c store.Change, n int) error {
	bs, created, err := s.cfg.Store.CreateBuildset(ctx, changeBuildset(sc, repo, c, n))
	if err != nil {
		return err
	}
	if created {
		s.log.Info("buildset created", "buildset", bs.ID, "scheduler", sc.Name,
			"change", c.ID, "revision", c.Revision, "changes", n)
		s.cfg.Requests.Notify()
	}
	return nil
}

// changeBuildset describes the buildset that builds change c for sc,
// standing for n changes of its branch.
func changeBuildset(sc config.Scheduler, repo config.Repo, c store.Change, n int) store.BuildsetInput {
	id := c.ID
	reason := fmt.Sprintf("scheduler %s: new commit %.12s on %s", sc.Name, c.Revision, c.Branch)
	if n > 1 {
		reason += fmt.Sprintf(" (the newest of %d changes)", n)
	}
	return store.BuildsetInput{
		Reason:     reason,
		Scheduler:  sc.Name,
		ChangeID:   &id,
		Properties: changeProperties(sc, repo, c),
		Builders:   sc.Builders,
	}
}

// changeProperties are the properties of a build of change c started by
// sc, later sources winning: the scheduler's properties, what the change's
// source knew (a pull request's number, say), then the change itself.
func changeProperties(sc config.Scheduler, repo config.Repo, c store.Change) map[string]string {
	p := map[string]string{}
	maps.Copy(p, sc.Properties)
	maps.Copy(p, c.Properties)
	p["scheduler"] = sc.Name
	p["revision"] = c.Revision
	p["branch"] = strings.TrimPrefix(c.Branch, "refs/heads/")
	p["repository"] = repo.URL
	p["change_id"] = fmt.Sprint(c.ID)
	if c.Author != "" {
		p["author"] = c.Author
	}
	if c.Category != "" {
		p["category"] = c.Category
	}
	return p
}
