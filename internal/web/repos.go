package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// staleIntervals is how many poll intervals a poller may go without a
// successful poll before it is flagged stale.
const staleIntervals = 5

// repoView is a repository of the active generation with how its change
// sources are doing: what its poller and the poller's clustered service
// last reported, and the last webhook delivery.
type repoView struct {
	Name     string   `json:"name"`
	URL      string   `json:"url"`
	Branches []string `json:"branches"`
	Tags     []string `json:"tags"`
	// PollInterval is null for a repository fed by webhooks alone.
	PollInterval *string `json:"poll_interval"`
	// Webhooks says whether the repository accepts webhook deliveries
	// (it names a webhook secret).
	Webhooks bool `json:"webhooks"`
	// Owner is the master running the poller.
	Owner        *string    `json:"owner"`
	LastPoll     *time.Time `json:"last_poll"`
	LastSuccess  *time.Time `json:"last_success"`
	LastError    string     `json:"last_error"`
	LastErrorAt  *time.Time `json:"last_error_at"`
	FailingSince *time.Time `json:"failing_since"`
	NextPoll     *time.Time `json:"next_poll"`
	LastWebhook  *time.Time `json:"last_webhook"`
	// Failing says whether the last poll failed; Stale whether the poller
	// has not succeeded for StaleAfter (staleIntervals poll intervals).
	Failing    bool    `json:"failing"`
	Stale      bool    `json:"stale"`
	StaleAfter *string `json:"stale_after"`
}

// repoViews returns the repositories of the active generation by name.
func (s *Server) repoViews(ctx context.Context) ([]repoView, error) {
	_, st, err := s.cfg.Store.ActiveState(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return []repoView{}, nil
	}
	if err != nil {
		return nil, err
	}
	health, err := s.cfg.Store.ReposHealth(ctx)
	if err != nil {
		return nil, err
	}
	services, err := s.cfg.Store.Services(ctx, false)
	if err != nil {
		return nil, err
	}
	byName := map[string]store.Service{}
	for _, sv := range services {
		byName[sv.Name] = sv
	}
	now := time.Now()
	out := make([]repoView, 0, len(st.Repos))
	for _, r := range st.Repos {
		sv, ok := byName["poller:"+r.Name]
		out = append(out, showRepo(r, health[r.Name], sv, ok, now))
	}
	return out, nil
}

// showRepo merges what the poller recorded (h) with what its clustered
// service recorded (sv, when hasService), which a master that does not
// record poller health still keeps.
func showRepo(r config.Repo, h store.RepoHealth, sv store.Service, hasService bool, now time.Time) repoView {
	v := repoView{Name: r.Name, URL: redactURL(r.URL), Branches: r.Branches, Tags: r.Tags,
		Webhooks: r.WebhookSecret != "", LastPoll: h.LastPoll, LastSuccess: h.LastSuccess,
		LastError: h.LastError, LastErrorAt: h.LastErrorAt, FailingSince: h.FailingSince,
		NextPoll: h.NextPoll, LastWebhook: h.LastWebhook}
	if v.Tags == nil {
		v.Tags = []string{}
	}
	if r.PollInterval <= 0 {
		return v
	}
	interval := r.PollInterval.D()
	iv := interval.String()
	v.PollInterval = &iv
	stale := staleIntervals * interval
	sa := stale.String()
	v.StaleAfter = &sa
	var since *time.Time
	if hasService {
		v.Owner = sv.Owner
		v.LastSuccess = later(v.LastSuccess, sv.LastSuccess)
		if later(v.LastErrorAt, sv.LastErrorAt) != v.LastErrorAt {
			v.LastError, v.LastErrorAt = sv.LastError, sv.LastErrorAt
		}
		since = sv.OwnedSince
	}
	v.Failing = v.LastErrorAt != nil && (v.LastSuccess == nil || v.LastErrorAt.After(*v.LastSuccess))
	if !v.Failing {
		v.FailingSince = nil
	} else if v.FailingSince == nil {
		v.FailingSince = v.LastErrorAt
	}
	if v.NextPoll == nil {
		if last := later(v.LastSuccess, v.LastErrorAt); last != nil {
			next := last.Add(interval)
			v.NextPoll = &next
		}
	}
	ref := v.LastSuccess
	if ref == nil {
		ref = later(since, v.FailingSince)
	}
	v.Stale = ref != nil && now.Sub(*ref) > stale
	return v
}

// later returns the later of two optional times.
func later(a, b *time.Time) *time.Time {
	switch {
	case a == nil:
		return b
	case b == nil || !b.After(*a):
		return a
	}
	return b
}

// redactURL hides a password written into a repository URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}

func (s *Server) listRepos(w http.ResponseWriter, r *http.Request) {
	repos, err := s.repoViews(r.Context())
	if err != nil {
		s.fail(w, r, "list repositories", err)
		return
	}
	writeJSON(w, http.StatusOK, whole(repos))
}

func (s *Server) getRepo(w http.ResponseWriter, r *http.Request) {
	repos, err := s.repoViews(r.Context())
	if err != nil {
		s.fail(w, r, "look up repository", err)
		return
	}
	for _, v := range repos {
		if v.Name == r.PathValue("name") {
			writeJSON(w, http.StatusOK, v)
			return
		}
	}
	writeError(w, http.StatusNotFound,
		fmt.Sprintf("repository %q is not in the active configuration", r.PathValue("name")))
}

func (s *Server) reposPage(w http.ResponseWriter, r *http.Request) {
	repos, err := s.repoViews(r.Context())
	if err != nil {
		s.uiFail(w, r, "list repositories", err)
		return
	}
	s.render(w, r, http.StatusOK, "repos", "Repositories", repos)
}
