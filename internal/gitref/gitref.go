// Package gitref checks the revisions and ref names that reach git
// command lines from outside: webhook deliveries, forced builds'
// properties, and the worker that checks them out. A value that git would
// refuse, resolve in a surprising way, or take for an option never gets
// that far.
package gitref

import (
	"fmt"
	"strings"
)

// maxRefName bounds a ref name; git has no limit of its own, but no forge
// makes names anywhere near as long.
const maxRefName = 255

// FullObjectID reports whether rev is a full hexadecimal object id, 40
// digits (SHA-1) or 64 (SHA-256), and returns it in lower case, the form
// git prints.
func FullObjectID(rev string) (string, bool) {
	if (len(rev) != 40 && len(rev) != 64) || !isHex(rev) {
		return "", false
	}
	return strings.ToLower(rev), true
}

func isHex(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool {
		return (r < '0' || r > '9') && (r < 'a' || r > 'f') && (r < 'A' || r > 'F')
	})
}

// RevisionProblem says why rev cannot be checked out as given, or is
// empty when it can: a revision is an object id, whole or abbreviated to
// at least 4 digits, or a ref name such as a tag. Expressions such as
// HEAD~1 and anything git could take for an option are refused.
func RevisionProblem(rev string) string {
	if len(rev) >= 4 && len(rev) <= 64 && isHex(rev) {
		return ""
	}
	if why := NameProblem(rev); why != "" {
		return "it is neither a commit id nor a ref name: " + why
	}
	return ""
}

// BranchProblem says why name is not a branch name (without refs/heads/)
// git branch would accept, or is empty for a good one.
func BranchProblem(name string) string {
	if why := NameProblem(name); why != "" {
		return why
	}
	if name == "HEAD" {
		return "HEAD is not a branch"
	}
	return ""
}

// NameProblem says why git would refuse name as a ref (the rules of git
// check-ref-format), or why it could be taken for a command-line option;
// it is empty for a good name.
func NameProblem(name string) string {
	switch {
	case name == "":
		return "it is empty"
	case len(name) > maxRefName:
		return fmt.Sprintf("it is longer than %d bytes", maxRefName)
	case strings.HasPrefix(name, "-"):
		return "it starts with '-'"
	case name == "@":
		return "'@' alone is not a name"
	case strings.HasPrefix(name, "/"), strings.HasSuffix(name, "/"), strings.Contains(name, "//"):
		return "it has an empty path component"
	case strings.HasSuffix(name, "."):
		return "it ends with '.'"
	case strings.Contains(name, ".."):
		return "it contains '..'"
	case strings.Contains(name, "@{"):
		return "it contains '@{'"
	}
	if i := strings.IndexFunc(name, func(r rune) bool {
		return r < ' ' || r == 0x7f || strings.ContainsRune(" ~^:?*[\\", r)
	}); i >= 0 {
		return fmt.Sprintf("it contains %q", name[i])
	}
	for _, part := range strings.Split(name, "/") {
		if strings.HasPrefix(part, ".") || strings.HasSuffix(part, ".lock") {
			return fmt.Sprintf("its component %q starts with '.' or ends with '.lock'", part)
		}
	}
	return ""
}
