package changes

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/regent-ci/regent/internal/gitref"
)

// A delivery's revisions and refs end up on git command lines: a build of
// a change checks its revision out on a worker, and scripts are given its
// branch. So every one of them is checked before anything is recorded: a
// revision must be a full object id, and a ref or branch a name git itself
// accepts that cannot be taken for an option.

// checkEvent checks the revisions and refs of a parsed delivery, and
// writes its revisions in lower case, the form git prints, so that the
// same commit is never recorded twice under two spellings.
func checkEvent(ev *Event) error {
	if ev.Ref != "" {
		if err := checkRef("ref", ev.Ref); err != nil {
			return err
		}
		if err := checkRequestNumber(ev.Ref); err != nil {
			return err
		}
	}
	var err error
	if ev.New != "" {
		if ev.New, err = objectID("revision", ev.New); err != nil {
			return err
		}
	}
	if ev.Old != "" {
		if ev.Old, err = objectID("old revision", ev.Old); err != nil {
			return err
		}
	}
	for i := range ev.Changes {
		c := &ev.Changes[i]
		if c.Revision, err = objectID(fmt.Sprintf("commit %d", i+1), c.Revision); err != nil {
			return err
		}
		for _, prop := range []string{PropBaseBranch, PropHeadBranch} {
			if b := c.Properties[prop]; b != "" {
				if err := checkBranchName(prop, b); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// checkRequestNumber refuses a pull or merge request ref whose number is
// not a positive decimal number, as every forge numbers them from 1.
func checkRequestNumber(ref string) error {
	for _, prefix := range []string{"refs/pull/", "refs/merge-requests/"} {
		rest, ok := strings.CutPrefix(ref, prefix)
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(rest, "/")
		if v, err := strconv.Atoi(n); err != nil || v <= 0 || strconv.Itoa(v) != n {
			return fmt.Errorf("%q is not a pull or merge request number (want a number from 1 up)", n)
		}
	}
	return nil
}

// objectID checks that rev is a full hexadecimal object id and returns
// it in lower case. An abbreviated id, a ref name or an expression such as
// HEAD~1 is refused: git would resolve it, or take it for an option, in
// the repository of whoever builds it.
func objectID(field, rev string) (string, error) {
	id, ok := gitref.FullObjectID(rev)
	if !ok {
		return "", fmt.Errorf("%s: %q is not a full commit id (40 hexadecimal digits, or 64 "+
			"for SHA-256 repositories)", field, rev)
	}
	return id, nil
}

// checkRef checks a full ref name, such as refs/heads/main, and for a
// branch or a tag the name under refs/heads/ or refs/tags/.
func checkRef(field, ref string) error {
	if why := gitref.NameProblem(ref); why != "" {
		return fmt.Errorf("%s: %q is not a valid ref name: %s", field, ref, why)
	}
	if b, ok := strings.CutPrefix(ref, branchPrefix); ok {
		return checkBranchName(field, b)
	}
	if t, ok := strings.CutPrefix(ref, tagRefPrefix); ok {
		return checkTagName(field, t)
	}
	return nil
}

// checkBranchName checks a branch name without refs/heads/, as git branch
// would.
func checkBranchName(field, name string) error {
	if why := gitref.BranchProblem(name); why != "" {
		return fmt.Errorf("%s: %q is not a valid branch name: %s", field, name, why)
	}
	return nil
}

// checkTagName checks a tag name without refs/tags/, as git tag would.
func checkTagName(field, name string) error {
	if why := gitref.NameProblem(name); why != "" {
		return fmt.Errorf("%s: %q is not a valid tag name: %s", field, name, why)
	}
	return nil
}
