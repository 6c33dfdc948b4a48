// Package config turns a Regent configuration, written in Starlark, into a
// validated desired state, and compares desired states.
//
// # The language
//
// A configuration is a directory whose entry file is regent.star. It is
// Starlark, a small, deterministic dialect of Python, with these
// predeclared names (the user reference is docs/configuration.md):
//
//	git_repo(name, url, branches=["main"], poll_interval="1m", masters=[],
//	         tags=[], webhook_secret=None, credentials=None)
//	worker(name, password, max_builds=1, tags=[])
//	builder(name, workers, steps, env={}, properties={}, tags=[],
//	        description="", previous_names=[], retry_lost=False, locks=[],
//	        collapse_requests=False)
//	lock(name, max_holders=1)
//	secret(name)
//	step.git(repo, name=None, workdir="", timeout="20m", halt_on_failure=True)
//	step.shell(command, name=None, timeout="20m", no_output_timeout=None,
//	           env={}, workdir="", halt_on_failure=True, locks=[],
//	           set_property=None)
//	step.trigger(schedulers, wait=False, name=None, halt_on_failure=True)
//	scheduler.branch(name, repo, branch, builders, tree_stable_timer=None,
//	                 paths=[], authors=[], masters=[])
//	scheduler.any_branch(name, repo, builders, branch_pattern=None,
//	                     tree_stable_timer=None, paths=[], authors=[], masters=[])
//	scheduler.force(name, builders, parameters=[])
//	scheduler.cron(name, builders, cron, timezone="UTC", masters=[])
//	scheduler.periodic(name, builders, interval, masters=[])
//	scheduler.triggerable(name, builders)
//	scheduler.dependent(name, upstream, builders)
//	(every scheduler also takes properties={})
//	param.string(name, default="", label="", required=False)
//	param.int(name, default=0, label="", required=False)
//	param.bool(name, default=False, label="", required=False)
//	param.choice(name, choices, default=choices[0], label="", required=False)
//
// Each constructor of a named object registers it and returns a value that
// stands for it wherever its name is expected; the name as a string is
// accepted too. A builder's workers may also be selected by tag with
// "tag:NAME". Durations are strings in Go syntax ("90s", "1h30m"); cron
// expressions have five fields. load("lib/x.star", "sym") loads another
// file by its path relative to the configuration root.
//
// The dialect allows for and if statements at the top level of a file,
// and assigning a global twice; it forbids while loops and recursion.
//
// # Evaluation
//
// [Load] evaluates a configuration; [LoadFS] does the same from any
// [io/fs.FS]. Evaluation is hermetic: there is no access to files other
// than the .star files under the root (links leading outside it are not
// followed), nor to the network, the clock or randomness, so the same
// files and secrets always give the same [State].
//
// Evaluation is bounded, so that a hostile or mistaken configuration cannot
// hurt the master evaluating it: a step limit stops endless loops, a
// timeout stops everything else, and no single operation may build a
// string over 16 MiB or a collection of over 2^20 elements. The
// interpreter enforces none of the latter, so before a file is compiled
// its operators +, * and % and the methods join, format, replace, split,
// rsplit, splitlines and extend are rewritten into calls of guarded
// built-ins that check the size of the result first (see rewrite.go). As a
// last resort, an evaluation during which the heap of the process grows by
// more than Options.MaxHeapBytes is stopped. The state a configuration
// declares is bounded as well: objects, steps per builder, steps in all,
// workers selected by tags.
//
// Some built-ins still cannot be interrupted once called (hashing a tuple
// that shares its parts sixty levels deep takes forever), so [Load]
// evaluates in a child process, the running executable started again in
// evaluator mode by this package's init function, which is killed when
// it overruns. Secrets are resolved in the calling process and never
// reach the child. Options.InProcess and [LoadFS] evaluate in process.
//
// # Validation
//
// A configuration that fails to parse, fails to run or declares an invalid
// state is refused with [Errors]: every problem found, each with its file,
// line and column, the kind and name of the object it concerns, and what
// to do. Positions of objects are those of their constructor calls.
// Checks cover argument types, duplicate names, name syntax, references
// between objects (builder to worker, lock and repository; scheduler to
// builder and repository; trigger to triggerable scheduler), durations,
// cron expressions and time zones, builders without workers or steps,
// previous names that are in use, and cycles of builds starting each
// other through triggers and dependent schedulers.
//
// # Secrets
//
// secret("name") is resolved by the [SecretProvider] of [Options]:
// [DirSecrets], [EnvSecrets], [ChainSecrets] or [MapSecrets]. A worker's
// password given as a secret is resolved into [Worker.Password]; secrets
// in env stay references ([Step.SecretEnv], [Builder.SecretEnv]) resolved
// where the step runs, and a repository's webhook_secret and credentials
// stay names resolved by the master when it needs them. A missing secret
// is a positioned error. No error ever holds a secret's value.
//
// # Generations
//
// [ContentHash] digests the content of a state, positions excluded, plus a
// digest of each password; equal hashes mean that applying the state
// changes nothing. [Diff] compares two states per kind of object as
// additions, removals, renames (from a builder's previous_names) and
// changes with the fields changed, and renders them as a plan.
// [FetchSource] reads a configuration source, a directory or
// git+URL#REF:PATH, and names its content.
package config
