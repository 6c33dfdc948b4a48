package changes

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/regent-ci/regent/internal/store"
)

// tagRefPrefix is the ref prefix of tags; changes name tags with it.
const tagRefPrefix = "refs/tags/"

// Properties that changes from pull and merge requests carry.
const (
	PropPRNumber       = "pr_number"
	PropPRURL          = "pr_url"
	PropBaseBranch     = "base_branch"
	PropHeadBranch     = "head_branch"
	PropHeadRepository = "head_repository"
)

// forgeCommit is a commit as GitHub, Gitea and GitLab describe it in a
// push payload.
type forgeCommit struct {
	ID        string `json:"id"`
	Message   string `json:"message"`
	Timestamp string `json:"timestamp"`
	Author    struct {
		Name  string `json:"name"`
		Email string `json:"email"`
	} `json:"author"`
	Added    []string `json:"added"`
	Removed  []string `json:"removed"`
	Modified []string `json:"modified"`
}

// forgeRepo holds the URLs a payload gives for a repository, under the
// names each forge uses.
type forgeRepo struct {
	CloneURL   string `json:"clone_url"`
	SSHURL     string `json:"ssh_url"`
	HTMLURL    string `json:"html_url"`
	GitURL     string `json:"git_url"`
	GitHTTPURL string `json:"git_http_url"`
	GitSSHURL  string `json:"git_ssh_url"`
	WebURL     string `json:"web_url"`
	Homepage   string `json:"homepage"`
	URL        string `json:"url"`
}

// urls returns the repository's URLs that are set.
func (r forgeRepo) urls() []string {
	var out []string
	for _, u := range []string{r.CloneURL, r.SSHURL, r.HTMLURL, r.GitURL, r.GitHTTPURL,
		r.GitSSHURL, r.WebURL, r.Homepage, r.URL} {
		if u != "" {
			out = append(out, u)
		}
	}
	return out
}

// pushPayload is a push as GitHub, Gitea and GitLab report it.
type pushPayload struct {
	ObjectKind string        `json:"object_kind"`
	Ref        string        `json:"ref"`
	Before     string        `json:"before"`
	After      string        `json:"after"`
	Commits    []forgeCommit `json:"commits"`
	HeadCommit *forgeCommit  `json:"head_commit"`
	Repository forgeRepo     `json:"repository"`
	Project    forgeRepo     `json:"project"`
	Pusher     struct {
		Name  string `json:"name"`
		Login string `json:"login"`
		Email string `json:"email"`
	} `json:"pusher"`
	UserName  string `json:"user_name"`
	UserEmail string `json:"user_email"`
}

// decode reads a JSON payload, saying which one it expected on failure.
func decode(body []byte, what string, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("the body is not a %s payload: %v", what, err)
	}
	return nil
}

// parseGitHub reads a GitHub delivery: push, pull_request or ping.
func parseGitHub(h http.Header, body []byte) (Event, error) {
	ev := Event{Delivery: h.Get("X-GitHub-Delivery"), Kind: h.Get("X-GitHub-Event")}
	switch ev.Kind {
	case "push":
		return pushEvent(ev, body, "GitHub push")
	case "pull_request":
		return pullRequestEvent(ev, body, "GitHub pull_request", map[string]bool{
			"opened": true, "reopened": true, "synchronize": true, "ready_for_review": true})
	case "ping":
		return ignoredEvent(ev, body, "a ping: the webhook works")
	}
	return ignoredEvent(ev, body, fmt.Sprintf("event %q is not one Regent acts on", ev.Kind))
}

// parseGitea reads a Gitea or Forgejo delivery: push or pull_request.
func parseGitea(h http.Header, body []byte) (Event, error) {
	ev := Event{Delivery: h.Get("X-Forgejo-Delivery"), Kind: h.Get("X-Forgejo-Event")}
	if ev.Delivery == "" {
		ev.Delivery = h.Get("X-Gitea-Delivery")
	}
	if ev.Kind == "" {
		ev.Kind = h.Get("X-Gitea-Event")
	}
	switch {
	case ev.Kind == "push":
		return pushEvent(ev, body, "Gitea push")
	case strings.HasPrefix(ev.Kind, "pull_request"):
		return pullRequestEvent(ev, body, "Gitea pull_request", map[string]bool{
			"opened": true, "reopened": true, "synchronized": true})
	}
	return ignoredEvent(ev, body, fmt.Sprintf("event %q is not one Regent acts on", ev.Kind))
}

// ignoredEvent is a well-formed delivery that records nothing; its
// repository is still read, so that its signature is checked.
func ignoredEvent(ev Event, body []byte, why string) (Event, error) {
	var p pushPayload
	if err := decode(body, "JSON", &p); err != nil {
		return Event{}, err
	}
	ev.RepoURLs = append(p.Repository.urls(), p.Project.urls()...)
	ev.Ignored = why
	return ev, nil
}

// pushEvent reads a push of GitHub, Gitea or GitLab.
func pushEvent(ev Event, body []byte, what string) (Event, error) {
	var p pushPayload
	if err := decode(body, what, &p); err != nil {
		return Event{}, err
	}
	ev.RepoURLs = append(p.Repository.urls(), p.Project.urls()...)
	if len(ev.RepoURLs) == 0 || p.Ref == "" || p.After == "" {
		return Event{}, fmt.Errorf("the %s payload lacks its repository, ref or after revision", what)
	}
	ev.Ref, ev.Old, ev.New = p.Ref, p.Before, p.After
	if zero(ev.Old) {
		ev.Old = ""
	}
	if zero(ev.New) {
		ev.Ignored = fmt.Sprintf("%s was deleted", p.Ref)
		return ev, nil
	}
	branch, category, ok := refBranch(p.Ref)
	if !ok {
		ev.Ignored = fmt.Sprintf("ref %s is neither a branch nor a tag", p.Ref)
		return ev, nil
	}

	commits := orderCommits(p.Commits, p.After)
	if len(commits) == 0 || commits[len(commits)-1].ID != p.After {
		head := forgeCommit{ID: p.After}
		if p.HeadCommit != nil && p.HeadCommit.ID == p.After {
			head = *p.HeadCommit
		}
		if head.Author.Name == "" {
			head.Author.Name = firstOf(p.Pusher.Name, p.Pusher.Login, p.UserName)
			head.Author.Email = firstOf(p.Pusher.Email, p.UserEmail)
		}
		commits = append(commits, head)
	}
	for _, c := range commits {
		if c.ID == "" {
			return Event{}, fmt.Errorf("the %s payload holds a commit without id", what)
		}
		ev.Changes = append(ev.Changes, store.Change{Branch: branch, Revision: c.ID,
			Author: author(c.Author.Name, c.Author.Email), Comments: clean(c.Message),
			Files: commitFiles(c), When: when(c.Timestamp), Category: category})
	}
	return ev, nil
}

// orderCommits returns a push's commits oldest first, ending with after.
// GitHub, Gitea and GitLab list them oldest first; a list starting with
// the pushed head is taken as newest first.
func orderCommits(cs []forgeCommit, after string) []forgeCommit {
	if len(cs) > 1 && cs[0].ID == after {
		cs = slices.Clone(cs)
		slices.Reverse(cs)
	}
	return cs
}

// refBranch turns a pushed ref into the branch a change records and its
// category: a branch by its name, a tag by its full ref.
func refBranch(ref string) (branch, category string, ok bool) {
	if b, ok := strings.CutPrefix(ref, branchPrefix); ok && b != "" {
		return b, "", true
	}
	if strings.HasPrefix(ref, tagRefPrefix) && len(ref) > len(tagRefPrefix) {
		return ref, store.CategoryTag, true
	}
	return "", "", false
}

// prPayload is a pull request as GitHub and Gitea report it.
type prPayload struct {
	Action      string `json:"action"`
	Number      int    `json:"number"`
	Before      string `json:"before"`
	PullRequest struct {
		Number    int    `json:"number"`
		Title     string `json:"title"`
		HTMLURL   string `json:"html_url"`
		UpdatedAt string `json:"updated_at"`
		User      struct {
			Login string `json:"login"`
		} `json:"user"`
		Head struct {
			Ref  string    `json:"ref"`
			SHA  string    `json:"sha"`
			Repo forgeRepo `json:"repo"`
		} `json:"head"`
		Base struct {
			Ref string `json:"ref"`
		} `json:"base"`
	} `json:"pull_request"`
	Repository forgeRepo `json:"repository"`
}

// pullRequestEvent reads a pull request event of GitHub or Gitea; only
// the actions in build make a change.
func pullRequestEvent(ev Event, body []byte, what string, build map[string]bool) (Event, error) {
	var p prPayload
	if err := decode(body, what, &p); err != nil {
		return Event{}, err
	}
	pr := p.PullRequest
	n := firstNonZero(p.Number, pr.Number)
	ev.RepoURLs = p.Repository.urls()
	if len(ev.RepoURLs) == 0 || n == 0 || pr.Head.SHA == "" {
		return Event{}, fmt.Errorf("the %s payload lacks its repository, number or head revision", what)
	}
	ev.Kind += "." + p.Action
	ev.Ref = fmt.Sprintf("refs/pull/%d/head", n)
	ev.New = pr.Head.SHA
	if !zero(p.Before) {
		ev.Old = p.Before
	}
	if !build[p.Action] {
		ev.Ignored = fmt.Sprintf("pull request action %q builds nothing", p.Action)
		return ev, nil
	}
	props := map[string]string{PropPRNumber: strconv.Itoa(n), PropPRURL: pr.HTMLURL,
		PropBaseBranch: pr.Base.Ref, PropHeadBranch: pr.Head.Ref}
	if urls := pr.Head.Repo.urls(); len(urls) > 0 {
		props[PropHeadRepository] = urls[0]
	}
	ev.Changes = []store.Change{{Branch: ev.Ref, Revision: pr.Head.SHA, Author: clean(pr.User.Login),
		Comments: clean(pr.Title), Files: []string{}, When: when(pr.UpdatedAt),
		Category: store.CategoryPullRequest, Properties: props}}
	return ev, nil
}

// parseGitLab reads a GitLab delivery: push, tag push or merge request.
func parseGitLab(h http.Header, body []byte) (Event, error) {
	ev := Event{Delivery: h.Get("Idempotency-Key"), Kind: h.Get("X-Gitlab-Event")}
	if ev.Delivery == "" {
		ev.Delivery = h.Get("X-Gitlab-Event-UUID")
	}
	var kind struct {
		ObjectKind string `json:"object_kind"`
	}
	if err := decode(body, "GitLab", &kind); err != nil {
		return Event{}, err
	}
	switch kind.ObjectKind {
	case "push", "tag_push":
		return pushEvent(ev, body, "GitLab "+kind.ObjectKind)
	case "merge_request":
		return mergeRequestEvent(ev, body)
	}
	return ignoredEvent(ev, body, fmt.Sprintf("event %q is not one Regent acts on", kind.ObjectKind))
}

// mrPayload is a GitLab merge request event.
type mrPayload struct {
	User struct {
		Username string `json:"username"`
		Name     string `json:"name"`
		Email    string `json:"email"`
	} `json:"user"`
	Project    forgeRepo `json:"project"`
	Repository forgeRepo `json:"repository"`
	Attrs      struct {
		IID          int       `json:"iid"`
		Title        string    `json:"title"`
		Action       string    `json:"action"`
		OldRev       string    `json:"oldrev"`
		SourceBranch string    `json:"source_branch"`
		TargetBranch string    `json:"target_branch"`
		URL          string    `json:"url"`
		Source       forgeRepo `json:"source"`
		LastCommit   struct {
			forgeCommit
		} `json:"last_commit"`
	} `json:"object_attributes"`
}

// mergeRequestEvent reads a GitLab merge request event. Opening and
// reopening a merge request make a change; so does an update that brought
// new commits (it carries the old revision); other actions do not.
func mergeRequestEvent(ev Event, body []byte) (Event, error) {
	var p mrPayload
	if err := decode(body, "GitLab merge_request", &p); err != nil {
		return Event{}, err
	}
	a := p.Attrs
	ev.RepoURLs = append(p.Project.urls(), p.Repository.urls()...)
	if len(ev.RepoURLs) == 0 || a.IID == 0 || a.LastCommit.ID == "" {
		return Event{}, fmt.Errorf("the GitLab merge_request payload lacks its project, iid or last commit")
	}
	ev.Kind = "merge_request." + a.Action
	ev.Ref = fmt.Sprintf("refs/merge-requests/%d/head", a.IID)
	ev.New = a.LastCommit.ID
	if !zero(a.OldRev) {
		ev.Old = a.OldRev
	}
	switch {
	case a.Action == "open" || a.Action == "reopen":
	case a.Action == "update" && ev.Old != "":
	default:
		ev.Ignored = fmt.Sprintf("merge request action %q builds nothing", a.Action)
		return ev, nil
	}
	props := map[string]string{PropPRNumber: strconv.Itoa(a.IID), PropPRURL: a.URL,
		PropBaseBranch: a.TargetBranch, PropHeadBranch: a.SourceBranch}
	if urls := a.Source.urls(); len(urls) > 0 {
		props[PropHeadRepository] = urls[0]
	}
	c := a.LastCommit.forgeCommit
	ev.Changes = []store.Change{{Branch: ev.Ref, Revision: c.ID,
		Author: author(c.Author.Name, c.Author.Email), Comments: clean(c.Message), Files: []string{},
		When: when(c.Timestamp), Category: store.CategoryPullRequest, Properties: props}}
	return ev, nil
}

// zero reports whether rev is empty or the all-zero revision that forges
// send for a ref that did not exist or no longer does.
func zero(rev string) bool { return strings.Trim(rev, "0") == "" }

// author formats a commit author as git does.
func author(name, email string) string {
	switch {
	case email == "":
		return clean(name)
	case name == "":
		return clean("<" + email + ">")
	}
	return clean(name + " <" + email + ">")
}

// commitFiles lists the paths a pushed commit touched, sorted, each once.
func commitFiles(c forgeCommit) []string {
	files := slices.Concat(c.Added, c.Removed, c.Modified)
	for i := range files {
		files[i] = clean(files[i])
	}
	slices.Sort(files)
	return slices.Compact(append([]string{}, files...))
}

// when parses a payload's time, or is the present when it has none.
func when(s string) time.Time {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC()
	}
	return time.Now().UTC()
}

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func firstNonZero(vals ...int) int {
	for _, v := range vals {
		if v != 0 {
			return v
		}
	}
	return 0
}
