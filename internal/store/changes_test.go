package store_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/store"
)

func testChange(branch, rev string) store.Change {
	return store.Change{
		Branch:   branch,
		Revision: rev,
		Author:   "Ada <ada@example.com>",
		Comments: "subject " + rev + "\n\nbody",
		Files:    []string{"a.go", "dir/b c.txt"},
		When:     time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC),
	}
}

func TestRepoHeadsNeverPolledIsNil(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		heads, err := s.RepoHeads(context.Background(), "app")
		if err != nil {
			t.Fatal(err)
		}
		if heads != nil {
			t.Fatalf("heads of a repository never polled = %v, want nil", heads)
		}
	})
}

func TestRecordPollReplacesHeads(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		steps := []map[string]string{
			{"refs/heads/main": "aaa", "refs/heads/dev": "bbb"},
			{"refs/heads/main": "ccc"},
			{},
			{"refs/heads/main": "ddd"},
		}
		for i, want := range steps {
			if _, err := s.RecordPoll(ctx, "app", want, nil); err != nil {
				t.Fatalf("step %d: record poll: %v", i, err)
			}
			got, err := s.RepoHeads(ctx, "app")
			if err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			if got == nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("step %d: heads = %#v, want %#v", i, got, want)
			}
		}

		other, err := s.RepoHeads(ctx, "other")
		if err != nil || other != nil {
			t.Fatalf("heads of another repository = %v, %v; want nil, nil", other, err)
		}
	})
}

func TestRecordPollRecordsEachChangeOnce(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		heads := map[string]string{"refs/heads/main": "r2"}

		first := []store.Change{testChange("main", "r1"), testChange("main", "r2")}
		added, err := s.RecordPoll(ctx, "app", heads, first)
		if err != nil {
			t.Fatal(err)
		}
		if len(added) != 2 || added[0].ID == 0 || added[1].ID <= added[0].ID {
			t.Fatalf("added = %+v, want two changes with increasing ids", added)
		}
		want := first[0]
		want.ID, want.Repository, want.CreatedAt = added[0].ID, "app", added[0].CreatedAt
		if !reflect.DeepEqual(added[0], want) {
			t.Fatalf("added[0] = %+v\nwant %+v", added[0], want)
		}
		stored, err := s.Change(ctx, added[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(stored, want) {
			t.Fatalf("stored change = %+v\nwant %+v", stored, want)
		}

		// A retry of the same poll, and a later one that overlaps it, add
		// only what is new. The same revision on another branch is new.
		again, err := s.RecordPoll(ctx, "app", heads, first)
		if err != nil || len(again) != 0 {
			t.Fatalf("retry added %+v, %v; want nothing", again, err)
		}
		later := append(first, testChange("main", "r3"), testChange("dev", "r2"))
		added, err = s.RecordPoll(ctx, "app", heads, later)
		if err != nil {
			t.Fatal(err)
		}
		if got := revisions(added); !reflect.DeepEqual(got, []string{"main@r3", "dev@r2"}) {
			t.Fatalf("later poll added %v", got)
		}

		all, err := s.Changes(ctx, store.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := revisions(all); !reflect.DeepEqual(got, []string{"dev@r2", "main@r3", "main@r2", "main@r1"}) {
			t.Fatalf("changes newest first = %v", got)
		}
	})
}

func TestRecordPollConcurrentPollersRecordOnce(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		var changes []store.Change
		for i := range 20 {
			changes = append(changes, testChange("main", fmt.Sprintf("r%02d", i)))
		}
		heads := map[string]string{}
		for i := range 10 {
			heads[fmt.Sprintf("refs/heads/b%d", i)] = fmt.Sprintf("r%02d", i)
		}

		const pollers = 4
		var wg sync.WaitGroup
		counts := make([]int, pollers)
		errs := make([]error, pollers)
		for p := range pollers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				added, err := s.RecordPoll(ctx, "app", heads, changes)
				counts[p], errs[p] = len(added), err
			}()
		}
		wg.Wait()
		total := 0
		for p := range pollers {
			if errs[p] != nil {
				t.Fatalf("poller %d: %v", p, errs[p])
			}
			total += counts[p]
		}
		if total != len(changes) {
			t.Fatalf("pollers added %d changes in all, want %d", total, len(changes))
		}
		all, err := s.Changes(ctx, store.ListOptions{Limit: 1000})
		if err != nil || len(all) != len(changes) {
			t.Fatalf("stored %d changes (%v), want %d", len(all), err, len(changes))
		}
	})
}

func TestRecordPollRejectsInvalidChangeWritingNothing(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		bad := []store.Change{testChange("main", "r1"), testChange("main", "")}
		if _, err := s.RecordPoll(ctx, "app", map[string]string{"refs/heads/main": "r1"}, bad); err == nil {
			t.Fatal("RecordPoll accepted a change without revision")
		}
		heads, err := s.RepoHeads(ctx, "app")
		if err != nil || heads != nil {
			t.Fatalf("heads after a refused poll = %v, %v; want nil, nil", heads, err)
		}
		all, err := s.Changes(ctx, store.ListOptions{})
		if err != nil || len(all) != 0 {
			t.Fatalf("changes after a refused poll = %v, %v; want none", all, err)
		}
	})
}

func TestAddChangeIsIdempotent(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		c := testChange("main", "r1")
		c.Repository = "app"

		first, isNew, err := s.AddChange(ctx, c)
		if err != nil || !isNew || first.ID == 0 {
			t.Fatalf("first AddChange = %+v, %v, %v", first, isNew, err)
		}
		c.Comments = "a later delivery says something else"
		second, isNew, err := s.AddChange(ctx, c)
		if err != nil || isNew {
			t.Fatalf("second AddChange new = %v, err = %v; want false, nil", isNew, err)
		}
		if !reflect.DeepEqual(second, first) {
			t.Fatalf("second AddChange returned %+v, want the stored %+v", second, first)
		}

		c.Repository = ""
		if _, _, err := s.AddChange(ctx, c); err == nil {
			t.Fatal("AddChange accepted a change without repository")
		}
	})
}

// A change recorded without author, comments or files gets them from a
// later poll, delivery or AddChange of the same commit; details already
// recorded are never replaced, and no second change is made.
func TestKnownChangeGetsOnlyTheDetailsItLacks(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		bare := store.Change{Repository: "app", Branch: "main", Revision: "r1", Files: []string{},
			When: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)}
		first, isNew, err := s.AddChange(ctx, bare)
		if err != nil || !isNew {
			t.Fatalf("AddChange = %v, %v", isNew, err)
		}

		// A delivery says who made it, nothing else.
		withAuthor := bare
		withAuthor.Author = "Ada <ada@example.com>"
		added, dup, err := s.RecordDelivery(ctx, store.Delivery{Source: "generic", Repository: "app",
			Ref: "refs/heads/main", OldRevision: "r0", NewRevision: "r1"}, []store.Change{withAuthor})
		if err != nil || dup || len(added) != 0 {
			t.Fatalf("RecordDelivery = %v, %v, %v", added, dup, err)
		}
		// A poll knows everything, the author differently.
		polled := testChange("main", "r1")
		polled.Author = "Somebody Else <else@example.com>"
		added, err = s.RecordPoll(ctx, "app", map[string]string{"refs/heads/main": "r1"},
			[]store.Change{polled})
		if err != nil || len(added) != 0 {
			t.Fatalf("RecordPoll = %v, %v", added, err)
		}

		want := first
		want.Author, want.Comments, want.Files = withAuthor.Author, polled.Comments, polled.Files
		all, err := s.Changes(ctx, store.ListOptions{})
		if err != nil || len(all) != 1 || !reflect.DeepEqual(all[0], want) {
			t.Fatalf("changes = %+v, %v; want only %+v", all, err, want)
		}

		// AddChange answers the change as filled in, and replaces nothing.
		other := testChange("main", "r1")
		other.Repository, other.Comments = "app", "something else"
		got, isNew, err := s.AddChange(ctx, other)
		if err != nil || isNew || !reflect.DeepEqual(got, want) {
			t.Fatalf("AddChange of a known change = %+v, %v, %v; want %+v", got, isNew, err, want)
		}
	})
}

func TestChangesPagesNewestFirst(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		var ids []int64
		for i := range 5 {
			c := testChange("main", fmt.Sprintf("r%d", i))
			c.Repository = "app"
			c, _, err := s.AddChange(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, c.ID)
		}

		var got []int64
		opts := store.ListOptions{Limit: 2}
		for {
			page, err := s.Changes(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			for _, c := range page {
				got = append(got, c.ID)
			}
			opts.Before = page[len(page)-1].ID
		}
		want := []int64{ids[4], ids[3], ids[2], ids[1], ids[0]}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("paged ids = %v, want %v", got, want)
		}

		one, err := s.Changes(ctx, store.ListOptions{ID: ids[2]})
		if err != nil || len(one) != 1 || one[0].Revision != "r2" {
			t.Fatalf("Changes by id = %+v, %v", one, err)
		}
	})
}

func TestChangeNotFound(t *testing.T) {
	eachStore(t, func(t *testing.T, s *store.Store) {
		_, err := s.Change(context.Background(), 42)
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Change(42) error = %v, want ErrNotFound", err)
		}
	})
}

// revisions renders changes as branch@revision for comparison.
func revisions(cs []store.Change) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.Branch+"@"+c.Revision)
	}
	return out
}
