package changes

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// Sources of webhook deliveries, as named in their paths.
const (
	SourceGitHub  = "github"
	SourceGitLab  = "gitlab"
	SourceGitea   = "gitea"
	SourceGeneric = "generic"
)

// Sources lists the webhook sources a [Receiver] understands.
var Sources = []string{SourceGitHub, SourceGitLab, SourceGitea, SourceGeneric}

// Errors a [Receiver] refuses deliveries with; callers branch on them.
var (
	// ErrUnauthorized: the delivery's signature or token is missing or
	// matches the webhook secret of no configured repository.
	ErrUnauthorized = errors.New("webhook signature missing or wrong")
	// ErrUnknownRepository: the delivery is signed with a configured
	// secret but names no repository that uses that secret.
	ErrUnknownRepository = errors.New("no configured repository for this webhook")
	// ErrBadDelivery: the delivery is not a payload the source sends.
	ErrBadDelivery = errors.New("malformed webhook delivery")
)

// Event is what one webhook delivery reports, the same for every source.
type Event struct {
	Source string
	// Delivery is the sender's id of the delivery, "" when it sent none.
	Delivery string
	// Kind is the sender's name of the event, such as "push".
	Kind string
	// Ignored says why the delivery makes no change (a ping, a closed
	// pull request, a deleted branch); empty when it makes changes.
	Ignored string
	// RepoURLs are the URLs the payload gives for the repository;
	// RepoName a configured repository's name, for the generic format.
	RepoURLs []string
	RepoName string
	// Ref is the full ref that moved: refs/heads/NAME, refs/tags/NAME,
	// refs/pull/N/head or refs/merge-requests/N/head.
	Ref string
	// Old is the ref's previous revision, "" when it is new; New its
	// revision now.
	Old, New string
	// Changes are the commits the move brought, oldest first, with their
	// branch, category and properties set; the newest is New.
	Changes []store.Change
}

// verifier checks a delivery's signature or token against one secret.
type verifier func(h http.Header, body []byte, secret string) bool

// source is how one kind of sender is read.
type source struct {
	// signed reports whether the delivery carries a signature or token.
	signed func(h http.Header) bool
	verify verifier
	parse  func(h http.Header, body []byte) (Event, error)
}

var sources = map[string]source{
	SourceGitHub: {
		signed: func(h http.Header) bool { return h.Get("X-Hub-Signature-256") != "" },
		verify: func(h http.Header, body []byte, secret string) bool {
			return hmacOK(strings.TrimPrefix(h.Get("X-Hub-Signature-256"), "sha256="), body, secret)
		},
		parse: parseGitHub,
	},
	SourceGitLab: {
		signed: func(h http.Header) bool { return h.Get("X-Gitlab-Token") != "" },
		verify: func(h http.Header, _ []byte, secret string) bool {
			return tokenOK(h.Get("X-Gitlab-Token"), secret)
		},
		parse: parseGitLab,
	},
	SourceGitea: {
		signed: func(h http.Header) bool { return giteaSignature(h) != "" },
		verify: func(h http.Header, body []byte, secret string) bool {
			return hmacOK(giteaSignature(h), body, secret)
		},
		parse: parseGitea,
	},
	SourceGeneric: {
		signed: func(h http.Header) bool { return h.Get("X-Regent-Signature") != "" },
		verify: func(h http.Header, body []byte, secret string) bool {
			return hmacOK(strings.TrimPrefix(h.Get("X-Regent-Signature"), "sha256="), body, secret)
		},
		parse: parseGeneric,
	},
}

// giteaSignature returns the signature of a Gitea or Forgejo delivery.
func giteaSignature(h http.Header) string {
	if s := h.Get("X-Forgejo-Signature"); s != "" {
		return s
	}
	return h.Get("X-Gitea-Signature")
}

// hmacOK reports whether sig is the hex HMAC-SHA256 of body keyed with
// secret, comparing in constant time.
func hmacOK(sig string, body []byte, secret string) bool {
	got, err := hex.DecodeString(strings.TrimSpace(sig))
	if err != nil || len(got) != sha256.Size || secret == "" {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// tokenOK compares a presented token with secret in constant time,
// whatever their lengths.
func tokenOK(token, secret string) bool {
	a, b := sha256.Sum256([]byte(token)), sha256.Sum256([]byte(secret))
	return secret != "" && subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// Sign returns the hex HMAC-SHA256 of body keyed with secret: the value of
// GitHub's X-Hub-Signature-256 (after "sha256="), Gitea's
// X-Gitea-Signature and the generic format's X-Regent-Signature (after
// "sha256=").
func Sign(body []byte, secret string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// DeliveryStore is the storage a [Receiver] needs; [*store.Store] is one.
type DeliveryStore interface {
	ActiveState(ctx context.Context) (store.Generation, *config.State, error)
	RecordDelivery(ctx context.Context, d store.Delivery, changes []store.Change) ([]store.Change, bool, error)
	RememberDelivery(ctx context.Context, d store.Delivery) (bool, error)
}

// ReceiverConfig configures a [Receiver].
type ReceiverConfig struct {
	Store DeliveryStore
	// Secrets resolves the webhook secrets that repositories name.
	Secrets config.SecretProvider
	// MaxChanges caps the changes one delivery records, as
	// MaxChangesPerPoll does for a poll; DefaultMaxChangesPerPoll when
	// zero.
	MaxChanges int
	Logger     *slog.Logger
}

// Receiver turns webhook deliveries into changes, for the repositories of
// the active generation. It is safe for concurrent use.
type Receiver struct {
	cfg ReceiverConfig
	log *slog.Logger
}

// NewReceiver checks cfg and fills its defaults.
func NewReceiver(cfg ReceiverConfig) (*Receiver, error) {
	if cfg.Store == nil {
		return nil, errors.New("webhook receiver: no store")
	}
	if cfg.MaxChanges <= 0 {
		cfg.MaxChanges = DefaultMaxChangesPerPoll
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Receiver{cfg: cfg, log: cfg.Logger.With("component", "webhooks")}, nil
}

// Receipt is what a [Receiver] did with a delivery.
type Receipt struct {
	Source     string `json:"source"`
	Delivery   string `json:"delivery"`
	Event      string `json:"event"`
	Repository string `json:"repository"`
	// Duplicate is set when an earlier delivery was the same.
	Duplicate bool `json:"duplicate"`
	// Ignored says why the delivery made no change, if it made none for a
	// reason other than being a duplicate.
	Ignored string `json:"ignored,omitempty"`
	// Changes are the ids of the changes recorded.
	Changes []int64 `json:"changes"`
}

// Receive verifies a delivery from source (one of [Sources]) and records
// the changes it reports, once. The signature or token is checked before
// the body is read, against the webhook secrets of every repository that
// receives webhooks: a delivery that none of them signed fails with
// [ErrUnauthorized], whatever its body. Then the body must be a payload
// of the source whose revisions are full commit ids and whose refs are
// names git accepts ([ErrBadDelivery]), and name a repository whose secret
// signed it ([ErrUnknownRepository]).
func (r *Receiver) Receive(ctx context.Context, src string, h http.Header, body []byte) (Receipt, error) {
	s, ok := sources[src]
	if !ok {
		return Receipt{}, fmt.Errorf("%w: unknown source %q", ErrBadDelivery, src)
	}
	if !s.signed(h) {
		return Receipt{}, fmt.Errorf("%w: the delivery carries no signature or token", ErrUnauthorized)
	}
	signers, err := r.signers(ctx, s.verify, h, body)
	if err != nil {
		return Receipt{}, err
	}
	ev, err := s.parse(h, body)
	if err == nil {
		err = checkEvent(&ev)
	}
	if err != nil {
		return Receipt{}, fmt.Errorf("%w: %v", ErrBadDelivery, err)
	}
	ev.Source = src
	repo, err := repository(signers, ev)
	if err != nil {
		return Receipt{}, err
	}
	rc := Receipt{Source: src, Delivery: ev.Delivery, Event: ev.Kind, Repository: repo.Name,
		Changes: []int64{}}
	if ev.Ignored == "" {
		ev.Ignored = watches(repo, ev)
	}
	if ev.Ignored != "" {
		// Remembered all the same, so that the same delivery again is
		// a duplicate, as one that recorded changes would be.
		dup, err := r.cfg.Store.RememberDelivery(ctx, store.Delivery{Source: src, ID: ev.Delivery,
			Repository: repo.Name})
		if err != nil {
			return Receipt{}, err
		}
		if rc.Duplicate = dup; !dup {
			rc.Ignored = ev.Ignored
		}
		return rc, nil
	}

	changes := capChanges(ev.Changes, r.cfg.MaxChanges)
	added, dup, err := r.cfg.Store.RecordDelivery(ctx, store.Delivery{Source: src, ID: ev.Delivery,
		Repository: repo.Name, Ref: ev.Ref, OldRevision: ev.Old, NewRevision: ev.New}, changes)
	if err != nil {
		return Receipt{}, err
	}
	rc.Duplicate = dup
	for _, c := range added {
		rc.Changes = append(rc.Changes, c.ID)
	}
	if !dup && len(added) == 0 {
		rc.Ignored = fmt.Sprintf("every commit it reports is already recorded as a change "+
			"(%s at %s), by a poll or an earlier delivery", ev.Ref, short(ev.New))
	}
	r.log.Info("webhook delivery recorded", "source", src, "delivery", ev.Delivery, "event", ev.Kind,
		"repo", repo.Name, "ref", ev.Ref, "revision", ev.New, "changes", len(added), "duplicate", dup)
	return rc, nil
}

// signers returns the repositories of the active generation whose webhook
// secret signed the delivery, failing with [ErrUnauthorized] when there is
// none. Repositories sharing a secret are checked once for it.
func (r *Receiver) signers(ctx context.Context, verify verifier, h http.Header, body []byte) (
	[]config.Repo, error) {
	_, st, err := r.cfg.Store.ActiveState(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: no configuration is applied yet", ErrUnknownRepository)
	}
	if err != nil {
		return nil, err
	}
	signedBy := map[string]bool{}
	var out []config.Repo
	for _, repo := range st.Repos {
		name := repo.WebhookSecret
		if name == "" {
			continue
		}
		ok, seen := signedBy[name]
		if !seen {
			ok = r.signedWith(name, verify, h, body)
			signedBy[name] = ok
		}
		if ok {
			out = append(out, repo)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: it matches the webhook secret of no repository", ErrUnauthorized)
	}
	return out, nil
}

// repository picks, among the repositories whose secret signed a
// delivery, the one it names.
func repository(signers []config.Repo, ev Event) (config.Repo, error) {
	for _, repo := range signers {
		if names(repo, ev) {
			return repo, nil
		}
	}
	what := ev.RepoName
	if what == "" && len(ev.RepoURLs) > 0 {
		what = ev.RepoURLs[0]
	}
	return config.Repo{}, fmt.Errorf("%w: no repository receiving webhooks with this secret is %q",
		ErrUnknownRepository, what)
}

// signedWith reports whether the delivery is signed with the secret
// named secret.
func (r *Receiver) signedWith(secret string, verify verifier, h http.Header, body []byte) bool {
	if r.cfg.Secrets == nil {
		return false
	}
	value, err := r.cfg.Secrets.Secret(secret)
	if err != nil {
		r.log.Error("cannot resolve a webhook secret", "secret", secret, "err", err)
		return false
	}
	return verify(h, body, value)
}

// names reports whether the event names repo, by name or by URL.
func names(repo config.Repo, ev Event) bool {
	if ev.RepoName != "" {
		return ev.RepoName == repo.Name || sameRepoURL(ev.RepoName, repo.URL)
	}
	return slices.ContainsFunc(ev.RepoURLs, func(u string) bool { return sameRepoURL(u, repo.URL) })
}

// watches says why repo does not watch the ref an event moved, or ""
// when it does: a branch must match the repository's branches, a tag its
// tags; pull requests are always recorded.
func watches(repo config.Repo, ev Event) string {
	if b, ok := strings.CutPrefix(ev.Ref, branchPrefix); ok && !matchBranch(b, repo.Branches) {
		return fmt.Sprintf("branch %s is not watched by repository %s", b, repo.Name)
	}
	if t, ok := strings.CutPrefix(ev.Ref, tagRefPrefix); ok && (len(repo.Tags) == 0 || !matchBranch(t, repo.Tags)) {
		return fmt.Sprintf("tag %s is not watched by repository %s", t, repo.Name)
	}
	return ""
}

// capChanges keeps at most max changes: the oldest max-1 and one summary
// change for the newest commit standing for the rest, with the files of
// all of them, as a poll does.
func capChanges(cs []store.Change, max int) []store.Change {
	if len(cs) <= max {
		return cs
	}
	single, folded := cs[:max-1], cs[max-1:]
	summary := folded[len(folded)-1]
	var files []string
	for _, c := range folded {
		files = append(files, c.Files...)
	}
	slices.Sort(files)
	summary.Files = slices.Compact(files)
	summary.Comments += fmt.Sprintf("\n\n[Regent] This change stands for %d commits, %s..%s: "+
		"%d commits arrived on %s in one webhook delivery, more than the %d changes a delivery records.",
		len(folded), short(folded[0].Revision), short(summary.Revision), len(cs), summary.Branch, max)
	return append(slices.Clip(single), summary)
}

// sameRepoURL reports whether two repository URLs name the same
// repository: scheme, user, port, letter case, a trailing slash and a
// ".git" suffix do not count, and scp-like ssh addresses
// (git@host:owner/repo) match their URL forms.
func sameRepoURL(a, b string) bool {
	ka, kb := repoKey(a), repoKey(b)
	return ka != "" && ka == kb
}

// repoKey reduces a repository URL to host/path.
func repoKey(raw string) string {
	s := strings.ToLower(strings.TrimSpace(raw))
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	} else if colon := strings.Index(s, ":"); colon > 0 && !strings.Contains(s[:colon], "/") {
		s = s[:colon] + "/" + s[colon+1:] // scp-like git@host:path
	}
	host, path, _ := strings.Cut(s, "/")
	if at := strings.LastIndex(host, "@"); at >= 0 {
		host = host[at+1:]
	}
	if colon := strings.LastIndex(host, ":"); colon >= 0 {
		host = host[:colon]
	}
	path = strings.TrimSuffix(strings.TrimRight(path, "/"), ".git")
	path = strings.TrimRight(path, "/")
	if path == "" {
		return host
	}
	return host + "/" + path
}
