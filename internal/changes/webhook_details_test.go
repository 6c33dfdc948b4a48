package changes

import (
	"context"
	"reflect"
	"testing"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
	"github.com/regent-ci/regent/internal/testutil/pgtest"
)

// A commit first reported by a webhook that described nothing of it gets
// its author, message and files when the poller later fetches it: the
// same change, filled in, on SQLite and PostgreSQL.
func TestPollFillsInWhatAWebhookDidNotSay(t *testing.T) {
	t.Parallel()
	for name, dsn := range map[string]func(t *testing.T) string{
		"sqlite":   func(*testing.T) string { return "" },
		"postgres": func(t *testing.T) string { return pgtest.URL(t) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := &harness{t: t, remote: newTestRemote(t), store: openStore(t, dsn(t))}
			h.poller = h.newPoller(h.store, nil)
			ctx := context.Background()
			st := &config.State{Repos: []config.Repo{{Name: "app", URL: h.remote.URL(),
				Branches: []string{"main"}, WebhookSecret: "app-hook"}}}
			if _, err := h.store.Apply(ctx, st, "test", "tester"); err != nil {
				t.Fatal(err)
			}
			r := newReceiver(t, h.store)
			h.poll()

			message := "Parse the new header\n\nThe old one is kept for a release."
			rev := h.remote.commit(message, map[string]string{"parse/header.go": "package parse\n"})
			h.remote.push()
			rc, err := deliverGeneric(r, `{"repository": "app", "branch": "main", "revision": "`+rev+`"}`)
			if err != nil || len(rc.Changes) != 1 {
				t.Fatalf("delivery: %+v, %v", rc, err)
			}
			if c := h.stored()[0]; c.Author != "" || c.Comments != "" || len(c.Files) != 0 {
				t.Fatalf("the delivery described the commit: %+v", c)
			}

			h.poll()
			if got := h.taken(); len(got) != 0 {
				t.Fatalf("the poll recorded %v again", refsOf(got))
			}
			stored := h.stored()
			want := store.Change{ID: rc.Changes[0], Repository: "app", Branch: "main", Revision: rev,
				Author: "Ada Lovelace <ada@example.com>", Comments: message,
				Files: []string{"parse/header.go"}, When: stored[0].When, CreatedAt: stored[0].CreatedAt}
			if len(stored) != 1 || !reflect.DeepEqual(stored[0], want) {
				t.Fatalf("stored changes = %+v, want one, filled in: %+v", stored, want)
			}

			// A later delivery describing it otherwise replaces nothing.
			rc, err = deliverGeneric(r, `{"repository": "app", "branch": "main", "old_revision": "`+
				rev+`", "revision": "`+rev+`", "author": "Mallory", "comments": "other", "files": ["x"]}`)
			if err != nil || len(rc.Changes) != 0 {
				t.Fatalf("second delivery: %+v, %v", rc, err)
			}
			if got := h.stored(); len(got) != 1 || !reflect.DeepEqual(got[0], want) {
				t.Fatalf("after a second delivery: %+v, want %+v", got, want)
			}
		})
	}
}
