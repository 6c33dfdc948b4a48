// Package schedule turns changes, timers, requests and finished builds into
// buildsets.
//
// # Kinds of scheduler
//
// Change-driven schedulers (branch and any-branch without a tree-stable
// timer), dependent schedulers and the clean-up of builds triggered by
// cancelled builds run in the [Service], on every master with the services
// role. They are driven by the database, not by callbacks: each keeps a
// durable cursor (the last change, or buildset, it considered), so work
// recorded just before a master dies is still done by whichever master
// runs next, and each buildset is unique in the database (per scheduler
// and change, per scheduler and upstream buildset), so however many
// masters see the same thing it is built once.
//
// Timed schedulers (cron, periodic, and branch or any-branch schedulers
// with a tree-stable timer) act on a clock and must have one owner: each
// is a [Timed] service that the master runs while it owns the clustered
// service "scheduler:NAME", under that service's fence. Every write it
// makes (arming or firing a timer, recording a run) is conditional on the
// fence in the same transaction, so an owner that was replaced writes
// nothing. Their state is durable:
//
//   - A tree-stable timer's deadline is the time its newest change was
//     recorded plus the timer, stored with the change it will build; a new
//     owner fires it at the same moment the old one would have.
//   - A cron or periodic scheduler stores its last run. A run that fell
//     due while nobody owned the scheduler is made once when an owner
//     comes back, however many were missed, and the next is computed from
//     that run.
//
// Every scheduler starts when the generation that adds it is applied, in
// the apply's transaction, whenever a master first runs it: its change
// cursor at the newest change, a timed scheduler's last run at the time
// of the apply (so it builds nothing before its first due time after it),
// a dependent scheduler's position at the newest buildset. A scheduler
// that is removed loses that state, so adding it back adds a new
// scheduler, which builds nothing of what happened while it was absent.
//
// Force and triggerable schedulers act on requests: [ForceProperties]
// checks a forced build's properties against the force scheduler's typed
// parameters, and [Trigger] starts the builds of a trigger step, whose
// outcome [TriggerOutcome] reports.
package schedule
