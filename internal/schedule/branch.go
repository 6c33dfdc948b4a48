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
// together.
const changeBatch = 1000

// runChanges gives a branch or any-branch scheduler without a tree-stable
// timer the changes it has not considered yet: one buildset per matching
// change. The buildsets of the changes read together are created in one
// transaction, so a builder that collapses requests keeps only the newest
// of them pending and builds a push of many commits once. A buildset is
// unique per scheduler and change, and the cursor is shared, so masters
// running the same scheduler at once build each change at most once.
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
		var ins []store.BuildsetInput
		var matched []store.Change
		for _, c := range changes {
			if f.matches(c) {
				ins = append(ins, changeBuildset(sc, repo, c))
				matched = append(matched, c)
			}
		}
		if err := s.createBuildsets(ctx, sc, ins, matched); err != nil {
			return err
		}
		cursor = changes[len(changes)-1].ID
		if err := s.cfg.Store.SetSchedulerCursor(ctx, sc.Name, cursor); err != nil {
			return err
		}
	}
}

// createBuildsets creates the buildsets ins for the changes cs together.
func (s *Service) createBuildsets(ctx context.Context, sc config.Scheduler, ins []store.BuildsetInput,
	cs []store.Change) error {
	if len(ins) == 0 {
		return nil
	}
	ids, created, err := s.cfg.Store.CreateBuildsets(ctx, ins)
	if err != nil {
		return err
	}
	n := 0
	for i, c := range cs {
		if created[i] {
			n++
			s.log.Info("buildset created", "buildset", ids[i], "scheduler", sc.Name,
				"change", c.ID, "revision", c.Revision)
		}
	}
	if n > 0 {
		s.cfg.Requests.Notify()
	}
	return nil
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

// changeBuildset describes the buildset that builds change c for sc.
func changeBuildset(sc config.Scheduler, repo config.Repo, c store.Change) store.BuildsetInput {
	id := c.ID
	return store.BuildsetInput{
		Reason:     fmt.Sprintf("scheduler %s: new commit %.12s on %s", sc.Name, c.Revision, c.Branch),
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
