package gitref

import "testing"

func TestRevisionsAndNames(t *testing.T) {
	t.Parallel()
	full := "0123456789ABCDEF0123456789abcdef01234567"
	if id, ok := FullObjectID(full); !ok || id != "0123456789abcdef0123456789abcdef01234567" {
		t.Errorf("FullObjectID(%q) = %q, %v", full, id, ok)
	}
	for _, rev := range []string{"abc", full[:39], full + "0", "g123456789abcdef0123456789abcdef01234567"} {
		if _, ok := FullObjectID(rev); ok {
			t.Errorf("FullObjectID(%q) accepted it", rev)
		}
	}
	for rev, good := range map[string]bool{
		"abcd": true, full: true, "v1.0": true, "release/2.x": true, "refs/tags/v1": true,
		"abc": true, // too short for an id, but a fine tag name
		"":    false, "-x": false, "--upload-pack=x": false, "HEAD~1": false, "a^": false, "a:b": false,
		"a..b": false, "a b": false, "@": false, "x.lock": false, ".hidden": false, "a//b": false,
		"a@{1}": false, "trailing.": false, "x\x00": false,
	} {
		if why := RevisionProblem(rev); (why == "") != good {
			t.Errorf("RevisionProblem(%q) = %q, want good=%v", rev, why, good)
		}
	}
	if BranchProblem("HEAD") == "" || BranchProblem("main") != "" {
		t.Error("BranchProblem: HEAD must be refused and main accepted")
	}
}
