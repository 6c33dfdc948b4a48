package changes

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// A revision that is not a full object id, and a ref git would refuse or
// take for an option, are refused in every source's payload, signed or
// not, before anything is recorded.
func TestRevisionsAndRefsMustBeWhatGitAccepts(t *testing.T) {
	t.Parallel()
	const (
		before = "1111111111111111111111111111111111111111"
		commit = "2222222222222222222222222222222222222222"
		after  = "3333333333333333333333333333333333333333"
		prOld  = "4444444444444444444444444444444444444444"
		prHead = "5555555555555555555555555555555555555555"
		gtHead = "6666666666666666666666666666666666666666"
	)
	cases := []struct {
		source, event, file string
		from, to            string
	}{
		{SourceGeneric, "", "generic_push.json", after, "zz"},
		{SourceGeneric, "", "generic_push.json", after, "HEAD~1"},
		{SourceGeneric, "", "generic_push.json", after, "--output=/tmp/x"},
		{SourceGeneric, "", "generic_push.json", after, "3333333"},
		{SourceGeneric, "", "generic_push.json", before, "HEAD~1"},
		{SourceGeneric, "", "generic_push.json", commit, "--output=/tmp/x"},
		{SourceGeneric, "", "generic_push.json", `"branch": "main"`, `"branch": "-main"`},
		{SourceGeneric, "", "generic_push.json", `"branch": "main"`, `"branch": "a..b"`},
		{SourceGeneric, "", "generic_push.json", `"branch": "main"`, `"branch": "main.lock"`},
		{SourceGeneric, "", "generic_push.json", `"branch": "main"`, `"branch": "HEAD"`},
		{SourceGeneric, "", "generic_push.json", `"branch": "main"`, `"tag": "--v1"`},
		{SourceGitHub, "push", "github_push.json", after, "HEAD~1"},
		{SourceGitHub, "push", "github_push.json", before, "--upload-pack=touch /tmp/x"},
		{SourceGitHub, "push", "github_push.json", commit, "zz"},
		{SourceGitHub, "push", "github_push.json", "refs/heads/main", "refs/heads/-x"},
		{SourceGitHub, "push", "github_push.json", "refs/heads/main", "refs/heads/a b"},
		{SourceGitHub, "push", "github_push.json", "refs/heads/main", "refs/tags/--x"},
		{SourceGitHub, "push", "github_push.json", "refs/heads/main", "--output=/tmp/x"},
		{SourceGitHub, "pull_request", "github_pull_request.json", prHead, "zz"},
		{SourceGitHub, "pull_request", "github_pull_request.json", prOld, "HEAD"},
		{SourceGitHub, "pull_request", "github_pull_request.json", `"ref": "faster"`, `"ref": "-faster"`},
		{SourceGitLab, "Push Hook", "gitlab_push.json", after, "abc1234"},
		{SourceGitLab, "Push Hook", "gitlab_push.json", "refs/heads/main", "refs/heads/x:y"},
		{SourceGitLab, "Merge Request Hook", "gitlab_merge_request.json", prHead, "--upload-pack=x"},
		{SourceGitLab, "Merge Request Hook", "gitlab_merge_request.json", prOld, "zz"},
		{SourceGitLab, "Merge Request Hook", "gitlab_merge_request.json", `"source_branch": "faster"`,
			`"source_branch": "--faster"`},
		{SourceGitea, "push", "gitea_push.json", after, "HEAD"},
		{SourceGitea, "push", "gitea_push.json", "refs/heads/main", "refs/heads/.hidden"},
		{SourceGitea, "pull_request", "gitea_pull_request.json", gtHead, "x"},
		{SourceGitea, "pull_request", "gitea_pull_request.json", `"ref": "main"`, `"ref": "ma^in"`},
	}
	s := hookStore(t)
	r := newReceiver(t, s)
	ctx := context.Background()
	for _, tc := range cases {
		good := string(fixture(t, tc.file))
		if !strings.Contains(good, tc.from) {
			t.Fatalf("%s holds no %q", tc.file, tc.from)
		}
		body := []byte(strings.ReplaceAll(good, tc.from, tc.to))
		_, err := r.Receive(ctx, tc.source, signed(tc.source, tc.event, "", body, appSecret), body)
		if !errors.Is(err, ErrBadDelivery) {
			t.Errorf("%s with %q: err = %v, want ErrBadDelivery", tc.file, tc.to, err)
		}
	}
	if got := recorded(t, s); len(got) != 0 {
		t.Fatalf("refused deliveries recorded %v", got)
	}
	if ds, _ := s.WebhookDeliveries(ctx, "app", 10); len(ds) != 0 {
		t.Fatalf("refused deliveries were stored: %+v", ds)
	}
}

// Full object ids of either hash are accepted, and recorded in lower
// case, so that two spellings of one commit make one change.
func TestFullObjectIDsAreAcceptedInLowerCase(t *testing.T) {
	t.Parallel()
	s := hookStore(t)
	r := newReceiver(t, s)
	sha256 := strings.Repeat("ab", 32)
	for i, body := range []string{
		`{"repository": "app", "branch": "main", "revision": "` + strings.ToUpper(sha256) + `"}`,
		`{"repository": "app", "branch": "main", "old_revision": "` + strings.Repeat("cd", 32) +
			`", "revision": "` + sha256 + `"}`,
		`{"repository": "app", "branch": "feature/x-1", "revision": "` + strings.Repeat("ef", 20) + `"}`,
	} {
		if _, err := deliverGeneric(r, body); err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
	}
	if got := recorded(t, s); !reflect.DeepEqual(got, []string{"main@abab/"}) {
		t.Fatalf("recorded %v, want one change on main (feature/x-1 is not watched)", got)
	}
}

// The signature or token is checked before the body is read: an
// unsigned or badly signed body that is not even a payload is refused as
// unauthorized, for every source.
func TestSignatureIsCheckedBeforeTheBodyIsRead(t *testing.T) {
	t.Parallel()
	s := hookStore(t)
	r := newReceiver(t, s)
	ctx := context.Background()
	for _, src := range Sources {
		for _, body := range []string{`{}`, `not json`, `{"ref": "refs/heads/main", "after": "HEAD~1"}`} {
			b := []byte(body)
			unsigned := signed(src, "push", "", b, appSecret)
			for _, k := range []string{"X-Hub-Signature-256", "X-Gitlab-Token", "X-Gitea-Signature",
				"X-Regent-Signature"} {
				unsigned.Del(k)
			}
			for name, h := range map[string]http.Header{
				"unsigned":     unsigned,
				"badly signed": signed(src, "push", "", b, "not-the-secret"),
			} {
				if _, err := r.Receive(ctx, src, h, b); !errors.Is(err, ErrUnauthorized) {
					t.Errorf("%s %s %s: err = %v, want ErrUnauthorized", src, name, body, err)
				}
			}
			// Signed, it is read: refused as malformed, or (GitLab's, which
			// is an event without object_kind) as naming no repository.
			_, err := r.Receive(ctx, src, signed(src, "push", "", b, appSecret), b)
			if !errors.Is(err, ErrBadDelivery) && !errors.Is(err, ErrUnknownRepository) {
				t.Errorf("%s signed %s: err = %v, want it read and refused", src, body, err)
			}
		}
	}
}

// A delivery that is new but reports only commits already recorded (by a
// poll, or by a delivery with another identity) says why it recorded
// nothing.
func TestKnownCommitsAreIgnoredWithAReason(t *testing.T) {
	t.Parallel()
	r := newReceiver(t, hookStore(t))
	rev, old := strings.Repeat("de", 20), strings.Repeat("9f", 20)
	first := `{"repository": "app", "branch": "main", "old_revision": "` + old + `", "revision": "` + rev + `"}`
	again := `{"repository": "app", "branch": "main", "revision": "` + rev + `"}`

	rc, err := deliverGeneric(r, first)
	if err != nil || len(rc.Changes) != 1 || rc.Ignored != "" {
		t.Fatalf("first delivery: %+v, %v", rc, err)
	}
	rc, err = deliverGeneric(r, again)
	if err != nil || rc.Duplicate || len(rc.Changes) != 0 {
		t.Fatalf("repeated commit: %+v, %v; want accepted, not a duplicate, no change", rc, err)
	}
	if !strings.Contains(rc.Ignored, "already recorded") || !strings.Contains(rc.Ignored, rev[:12]) {
		t.Fatalf("repeated commit: ignored = %q, want it to say the commit is already recorded", rc.Ignored)
	}
	rc, err = deliverGeneric(r, again)
	if err != nil || !rc.Duplicate || rc.Ignored != "" {
		t.Fatalf("same delivery again: %+v, %v; want a duplicate", rc, err)
	}
}

// deliverGeneric hands r a generic delivery without id, signed with app's
// secret.
func deliverGeneric(r *Receiver, body string) (Receipt, error) {
	return r.Receive(context.Background(), SourceGeneric,
		signed(SourceGeneric, "", "", []byte(body), appSecret), []byte(body))
}
