package changes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/regent-ci/regent/internal/store"
)

// genericPayload is Regent's own webhook format, documented in
// docs/webhooks.md: a ref of a configured repository moved to a revision,
// optionally listing the commits it brought.
type genericPayload struct {
	Repository  string            `json:"repository"`
	Branch      string            `json:"branch"`
	Tag         string            `json:"tag"`
	OldRevision string            `json:"old_revision"`
	Revision    string            `json:"revision"`
	Author      string            `json:"author"`
	Comments    string            `json:"comments"`
	Files       []string          `json:"files"`
	When        *time.Time        `json:"when"`
	Properties  map[string]string `json:"properties"`
	Commits     []genericCommit   `json:"commits"`
}

// genericCommit is one commit of a generic delivery.
type genericCommit struct {
	Revision string     `json:"revision"`
	Author   string     `json:"author"`
	Comments string     `json:"comments"`
	Files    []string   `json:"files"`
	When     *time.Time `json:"when"`
}

// parseGeneric reads a delivery in the generic format.
func parseGeneric(h http.Header, body []byte) (Event, error) {
	ev := Event{Delivery: h.Get("X-Regent-Delivery"), Kind: "push"}
	var p genericPayload
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Event{}, fmt.Errorf("the body is not a generic webhook payload (see docs/webhooks.md): %v", err)
	}
	switch {
	case p.Repository == "":
		return Event{}, fmt.Errorf("repository: name a configured repository, or give its URL")
	case (p.Branch == "") == (p.Tag == ""):
		return Event{}, fmt.Errorf("branch, tag: give exactly one of them")
	case p.Revision == "":
		return Event{}, fmt.Errorf("revision: give the revision the branch or tag is at now")
	case zero(p.Revision):
		return Event{}, fmt.Errorf("revision: %q names no commit", p.Revision)
	case strings.HasPrefix(p.Branch+p.Tag, "refs/"):
		return Event{}, fmt.Errorf("branch, tag: give the name without refs/, not %q", p.Branch+p.Tag)
	}
	nameErr := checkBranchName("branch", p.Branch)
	if p.Tag != "" {
		nameErr = checkTagName("tag", p.Tag)
	}
	if nameErr != nil {
		return Event{}, nameErr
	}
	ev.RepoName = p.Repository
	ev.Old, ev.New = p.OldRevision, p.Revision
	if zero(ev.Old) {
		ev.Old = ""
	}
	branch, category := p.Branch, ""
	ev.Ref = branchPrefix + p.Branch
	if p.Tag != "" {
		ev.Ref = tagRefPrefix + p.Tag
		branch, category = ev.Ref, store.CategoryTag
	}
	commits := p.Commits
	if len(commits) == 0 || commits[len(commits)-1].Revision != p.Revision {
		commits = append(commits, genericCommit{Revision: p.Revision, Author: p.Author,
			Comments: p.Comments, Files: p.Files, When: p.When})
	}
	for i, c := range commits {
		if c.Revision == "" {
			return Event{}, fmt.Errorf("commits[%d].revision: every commit needs its revision", i)
		}
		at := time.Now().UTC()
		if c.When != nil {
			at = c.When.UTC()
		}
		files := c.Files
		if files == nil {
			files = []string{}
		}
		ev.Changes = append(ev.Changes, store.Change{Branch: branch, Revision: c.Revision,
			Author: clean(c.Author), Comments: clean(c.Comments), Files: files, When: at,
			Category: category, Properties: p.Properties})
	}
	return ev, nil
}
