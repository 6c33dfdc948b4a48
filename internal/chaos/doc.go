// Package chaos runs fault-injection campaigns against a real Regent
// cluster and checks DESIGN.md's invariants on what they recorded.
//
// # A campaign
//
// [Run] starts a PostgreSQL server of its own, three `regent master`
// processes each reaching it through a fault proxy, four to eight `regent
// worker` processes (each given all three masters, each master through a
// fault proxy of the worker's own) plus a spare worker that the
// configurations add and remove, and a git repository that the masters
// poll every second. A seed decides everything in advance (see
// [NewPlan]): a steady workload of forced builds, pushes (half of them
// also announced by signed webhook deliveries to one or two masters, which
// race the poller to record the change), cancellations and configuration
// applies (builders renamed with previous_names, added,
// removed, retry_lost flipped; the spare worker added or removed; through
// the CLI straight to the database or through a master's API), and a
// schedule of faults:
//
//	master-kill       SIGKILL a master, start it again a moment later
//	master-pause      SIGSTOP a master for up to its time-to-live + 3 s
//	master-term       SIGTERM a master (it drains, then stops), start it
//	                  again a moment after it ends
//	master-blackhole  the master's proxy to PostgreSQL forwards nothing
//	master-delay      ... forwards everything late
//	master-reset      ... resets every connection
//	worker-kill       SIGKILL a worker and its steps, as when its host dies
//	worker-pause      SIGSTOP a worker and its steps
//	worker-term       SIGTERM a worker, start it again a moment after it ends
//	worker-blackhole  the worker's proxies to one master, or to all of
//	                  them, forward nothing
//	worker-delay      ... forward everything late
//	worker-reset      ... reset every connection
//	postgres-restart  stop or crash PostgreSQL, start it again
//
// At most one master is under a fault at a time, so that two always work.
// A master fault hits a given master, the owner of a given service or the
// supervisor, whoever that is when it starts; a worker fault hits a
// worker that is running a build when there is one, and a fault on its
// links hits its path to a given master, to the master that handed it its
// newest build, or to every master.
// Once the campaign's time is up every fault is healed and the cluster is
// given time to finish its work; then the database is read with SQL.
//
// Every build's steps append a line to a marker file named by the build's
// id when they start and when they end (with the lock they hold, if any),
// which is how the checker knows what really ran.
//
// # The history and the checker
//
// The [History] holds what was requested and acknowledged, the faults and
// their times, the services and the builders and workers each master's
// API showed while the campaign ran, the lines of the masters' logs about
// clustered services, the markers, and the final database, including the
// history of every grant of a service's token and every row a service
// wrote with the fence it wrote it under. [Check] verifies on it:
//
//   - attempt-once: no step ran twice for one build attempt, nothing ran
//     for a build the database lacks, a successful build really ran, and
//     one request never ran as two builds unless the first was lost and
//     retried as a linked build;
//   - build-survives: a build is lost only when its worker was killed,
//     paused, stopped, cut off from every master, ended or configured
//     away while it ran; a master's fault, a fault on the worker's path
//     to one master, or a slow path to all of them lose nothing. A build
//     handed out in an answer that a fault on its path lost, and so never
//     started, may be retried as a new, linked build;
//   - no-lost-work: after settling, every request is complete through its
//     build or cancelled with a reason, every build finished, every lost
//     build marked retry has exactly one successor, and every force a
//     master acknowledged is in the database;
//   - change-once: every pushed commit is recorded exactly once, and no
//     change or due time gave one scheduler two buildsets;
//   - no-stale: once the propagation bound has passed after an apply,
//     every master lists exactly its builders and workers;
//   - one-owner: after settling every service has one live owner; while
//     the campaign ran, tokens never went back and no service lacked a
//     working owner past the failover bound, except around a PostgreSQL
//     restart;
//   - fencing: in the database, no change, buildset, scheduler state or
//     generation that a service wrote carries a token older than the
//     newest one granted for that service when it was written, or a token
//     never granted to a master (the grant's time and the write's are both
//     the database's, each read once the service's row lock is held, so
//     an accepted write that committed before a grant is dated before
//     it); and no master logged a write of a service after another had
//     started that service with a newer token;
//   - lock-limit: never more steps ran holding a lock than it allows (the
//     "locked" builders hold an exclusive lock for the whole build, the
//     "slow" builders' step a counting lock of two; the step of a build
//     lost with its paused or cut-off worker, which runs on until the
//     worker learns it, does not count), and no lock is held after
//     settling;
//   - campaign-sane: every fault was healed as planned: a master or
//     worker given SIGTERM stopped within 20 s, every process started
//     again.
//
// A failure is reported with the seed and the events around each
// violation ([Report]); the same seed replays the same plan.
//
// `make chaos SEED=N DURATION=10m` runs one campaign (TestCampaign), a
// fault every 5 s on average (REGENT_CHAOS_FAULT_GAP=2s for more); a
// failure keeps the history (history.json, which [LoadHistory] reads)
// and every process's log, as does a pass with REGENT_CHAOS_KEEP=1.
// `make test` runs TestCampaignBounded, two short campaigns of fixed
// seeds. Faults the campaigns found have regression tests named
// TestFault...; one not yet fixed is skipped unless REGENT_CHAOS_FAULTS=1.
package chaos
