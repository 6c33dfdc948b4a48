// Package changes turns commits in git repositories into recorded
// changes. Its [Poller] watches one repository through the git command
// line; its [Receiver] takes webhook deliveries from GitHub, GitLab,
// Gitea or Forgejo, or in Regent's generic format.
//
// # A poll
//
// Each poll fetches every branch of the repository into a bare mirror
// kept in the poller's directory (new, moved and rewritten branches are
// taken as they are, deleted ones pruned), keeps the branches that the
// repository's patterns watch, and compares their heads with those the
// store recorded at the previous poll:
//
//   - The first poll of a repository, when the store has no record of it,
//     records the heads and makes no change: history is not replayed.
//   - A branch that moved forward makes one change per new commit
//     (git rev-list --reverse --topo-order NEW ^OLD), oldest first.
//   - A branch whose history was rewritten (the old head is not an
//     ancestor of the new one, as after a force-push) makes one change per
//     commit that no recorded head of the repository reaches, and at least
//     one for its new head.
//   - A branch the store did not know makes one change, for its head; so
//     does a branch that a new configuration starts to watch.
//   - A branch that is gone is forgotten, without error; if it comes back,
//     it is a new branch.
//   - A watched tag (the repository's tag patterns) that is new or moved
//     makes one change for the commit it tags, on branch refs/tags/NAME
//     with category tag; the first poll that watches tags records them
//     without changes.
//
// The new heads and the changes are recorded in one transaction, and a
// change is recorded once per repository, branch and revision, so that
// several pollers, a retried poll and a webhook reporting the same commit
// make one change between them; whichever reports it later fills in the
// author, comments or files that the recorded change lacks, and replaces
// none that it has.
//
// A repository behind credentials names a secret holding "USER:PASSWORD"
// or a token; each poll reads it from the secret provider and hands it to
// git as an HTTP Authorization header through git's environment, scoped to
// the repository's URL, so it never appears in a command line or a log.
//
// # Many commits at once
//
// A poll records at most MaxChangesPerPoll changes for a branch. When more
// commits arrived, the oldest MaxChangesPerPoll-1 get a change each and
// one summary change stands for all the others: it carries the newest
// revision (so building it builds the branch's head), that commit's
// author, time and message followed by a note saying how many commits it
// folds, and the files changed by all of them.
//
// # Cancellation
//
// Every git command runs in a process group of its own with a timeout.
// Stopping a poller, or cancelling the context of PollNow, kills the group
// (git and whatever it started, such as ssh) and the poll ends without
// recording anything. The next poll first removes the lock files that a
// killed git may leave in the mirror, under a lock on the directory that
// keeps a second poller from running git on it meanwhile.
//
// # Webhooks
//
// A [Receiver] checks a delivery's signature (or GitLab's token) against
// the webhook secrets of the repositories, resolved at that moment from the
// master's secret provider, before it reads the body; then it checks that
// every revision in the body is a full commit id and every ref a name git
// accepts, since they end up on git command lines, finds the repository
// the body names among those whose secret signed it, and records the
// commits it reports with the delivery, in one transaction. A delivery with the same id as an
// earlier one, or reporting the same ref moving from the same old revision
// to the same new one, is a duplicate and records nothing, whether the
// earlier one was recorded long ago or is being recorded at the same
// moment by another master. Branches and tags the repository does not
// watch, deleted refs, pings, pull request actions that bring no new
// commit and commits recorded already are accepted and ignored, with the
// reason in the answer. docs/webhooks.md describes the formats.
package changes
