// Package worker is the worker process (`regent worker`): it keeps a
// session with the masters, long-polls them for builds, runs each build's
// steps and delivers their logs and results over the worker protocol of
// package workerapi.
//
// # Sessions and masters
//
// The worker logs in with its name and password and long-polls with the
// session token; the poll is also its heartbeat. It talks to one master
// at a time and moves to the next listed one when a request cannot be
// made, times out or gets a 5xx, with a jittered, capped exponential
// backoff. A session is valid on every master of the cluster, so moving
// does not log in again. A poll answered 401 means the session is over:
// the worker logs in again. A login refused with 401 means the
// credentials are not (or no longer) accepted: the worker keeps trying,
// slowly, and logs a warning each time. A poll answer with Stop ends the
// worker: its steps are killed, nothing more is reported (the master has
// ended those builds), and Err returns the master's reason.
//
// A poll sent while the worker is full is cut short when a build ends, so
// that the master hears of the free slot at once. A poll answered at once
// with nothing new (a master repeats a cancel order until the build ends,
// though it holds such polls) makes the next one wait, with backoff, until
// a build ends.
//
// # Builds
//
// Each build runs in its own goroutine, up to Config.MaxBuilds at once
// (when zero, the worker's max_builds that the master reports at login);
// builds of one builder share the directory Basedir/<builder>/build and
// so wait for each other. Steps run one after the other:
//
//   - git: clone or fetch the repository into the build directory, then
//     check out the property "revision", or the head of the property
//     "branch", or the remote's default branch, and clean the tree.
//   - shell: /bin/sh -c COMMAND in the build directory (joined with the
//     step's workdir), with the worker's environment plus REGENT_BUILDER,
//     REGENT_BUILD_ID, REGENT_BUILD_NUMBER, REGENT_WORKER, every build
//     property NAME as REGENT_PROP_NAME (upper case, other characters as
//     '_'), the build's env and the step's env, later ones winning;
//     the worker's own REGENT_SECRET_* variables are left out.
//   - trigger: ask a master to start the builds of the step's triggerable
//     schedulers; with wait, ask every second until they have ended and
//     take the worst of their results.
//
// As each step starts, its command and env values and the build's env
// values are interpolated (%(prop:NAME)s) with the build's properties,
// those set by earlier steps included. A shell step with set_property
// sets that property, for the steps after it and on the master, to its
// trimmed standard output when it succeeds.
//
// Secrets named in the builder's and the step's secret env are resolved
// through Config.Secrets as the step starts; one that cannot be resolved
// fails the step as an exception naming it. Their values are replaced
// by "***" in the step's output before it reaches the spool, also when a
// value is split over several reads, and in a property set from output.
//
// A step that names locks first asks a master for them, again every half
// second while a lock has no room (noting the wait in its log), and gives
// them back as soon as it ends; its timeouts start once it holds them.
//
// No process of a step outlives it. On Linux every command runs under a
// step keeper (keeper.go), this program started again, which adopts
// every orphan of the command's tree, daemons that left its session
// included. At the step's timeout (total time), after no_output_timeout
// of silence, on cancellation or when the worker stops, every process of
// the step gets SIGTERM and, once the command has exited or after
// Config.KillGrace, SIGKILL. A timeout is a failure whose reason says
// which limit was hit; a cancellation is "cancelled". When a command
// exits, whatever it left running is killed, and the step's result is
// the command's. When the worker dies, even by SIGKILL, the keeper kills
// the step's processes at once. Elsewhere, and in programs that do not
// call RunKeeperIfRequested, a command runs in a process group of its
// own, which those signals reach instead: processes that left the group
// escape them, and so does everything but the command itself (Linux) or
// everything (elsewhere) when the worker dies. A failing step
// with halt_on_failure, an exception or a cancellation ends the build:
// the remaining steps are not started and not reported (the master shows
// them as never run). The build's result is the worst of its steps'.
//
// # Logs and delivery
//
// A step's stdout and stderr are merged and written, byte for byte, to a
// spool file under Basedir/.spool, at most Config.SpoolLimit bytes, or the
// master's per-step limit if lower, with one marker line when the limit
// is hit (the step runs on). A reporter
// goroutine per build delivers, in order, each step's start, its log and
// its finish, then the build's result. The log goes in chunks of up to
// 64 KiB, soon after output comes and then at most every 200ms, to
// .../log?offset=N; the master answers how many bytes it holds, which is
// where the next chunk starts, so a resend after a lost answer neither
// duplicates nor drops bytes. Steps never wait for the reporter: while
// no master answers, the build runs on and its output waits on disk.
//
// Every write is retried until a master answers it. A 409 means the
// attempt is stale, except on a step finish, where it may also mean the
// master lacks log bytes; an empty log append at the full size tells the
// two apart and says where to resend from. A stale attempt, or a write
// refused for any other reason, abandons the build: its steps are
// killed and nothing more is sent.
package worker
