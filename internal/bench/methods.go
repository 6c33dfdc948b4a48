package bench

// GroupMethods says how the figures of each group are measured, by the
// beginning of the group's heading; the Markdown report prints it under
// the group's table.
var GroupMethods = map[string]string{
	"Dispatch": "A master on SQLite, local workers (one process each, one build at a time) " +
		"and builders of one `true` step, every builder on every worker. A burst forces its " +
		"builds from 8 concurrent clients through the REST API, spread round-robin over as many " +
		"builders as builds when there are 1,000; throughput is the builds over the time from " +
		"the first force request sent to the last build finished. Latency is from sending a " +
		"build's force request to its step starting, as the master recorded it (Regent: the " +
		"step's started_at; Buildbot: the shell step's started event, which follows Buildbot's " +
		"own worker_preparation step). The idle series forces one build at a time, 100 ms after " +
		"the one before finished. Each run is one burst and one idle series, after a warm-up.",
	"REST API": "Requests in a row from one client on a kept-alive connection, after 10 " +
		"untimed ones, timed until the whole answer is read, on the master of the 1,000-builder " +
		"dispatch workload, after it (so builders have builds).",
	"Apply": "`regent config apply` of the configuration of BenchmarkApply in internal/store " +
		"written in Starlark: 1,000 builders, 200 workers (each with its own password, hashed " +
		"with Argon2id) and 300 force schedulers. First with --db into an empty database (the " +
		"command's wall time: " +
		"process start, evaluation, hashing, the transaction); then the change of ten of each " +
		"kind (builders renamed with previous_names, removed and added; workers and schedulers " +
		"removed and added) and back, alternately, with --api through a running master, timed " +
		"to the command's end and until the master's API shows the renamed builder active. The " +
		"store.Apply rows are BenchmarkApply's, from bench.txt (n is the number of result lines); " +
		"BenchmarkHashPasswords, among the Go benchmarks, times hashing the 200 passwords alone, " +
		"the bulk of a first apply.",
	"Log ingestion": "A master on SQLite and one worker, both started afresh for each run; one " +
		"build whose step pipes `yes` (text) or `base64 /dev/urandom` (random) into `head -c`. " +
		"Regent stores at most 512 MiB of one step's log (the master's default limit, which no " +
		"flag changes yet) and truncates the rest, so a larger log is printed by several steps " +
		"of at most 512 MiB, one after the other. The rate is the log's size over the time from " +
		"the first step's start to the last one's finish, as the master recorded them; a step " +
		"finishes only once the master holds every byte of its log, and the harness checks the " +
		"stored size. Peak memory is VmHWM from /proc/PID/status after the build. LOG_MB sets " +
		"the size (1024 MiB by default, about 20 s per run here; 32 MiB with QUICK=1).",
	"Failover": "Three masters on one PostgreSQL database and one git repository polled every " +
		"second. Each trial waits until the poller has recorded a freshly pushed commit, then " +
		"SIGKILLs (crash) or SIGSTOPs (hang) the master that owns it, pushes a commit at once, " +
		"and asks another master's API (every 20 ms for Regent, every second for Buildbot) until " +
		"another master owns the poller and the commit is recorded. A killed master is " +
		"restarted and a paused one resumed, and waited for to rejoin, before the next trial. " +
		"Regent's time-to-live is the default, 10 s.",
	"Reconfiguration": "A master with 1,000 builders and 4 connected workers; ten builders " +
		"renamed, ten removed and ten added, then back, alternately. Regent: `regent config " +
		"apply --api` until the master's API shows the renamed builder active (the rename is " +
		"declared with previous_names). Buildbot: master.cfg rewritten and SIGHUP (what " +
		"`buildbot reconfig` sends) until the master logs \"configuration update complete\"; " +
		"Buildbot has no renames, so it adds the new names and keeps the old builders in its " +
		"database.",
	"Master memory": "VmHWM of the master process from /proc/PID/status: its peak resident " +
		"memory over its whole life, read after the workloads above ran on it. For Regent it " +
		"includes the workers' logins at start, all at once: each verifies the worker's password " +
		"hash with Argon2id, which uses 8 MiB, so the peak grows with the number of workers " +
		"logging in together.",
	"Go benchmarks": "`go test -run='^$' -bench=. ./...`, as `make bench` always ran it, " +
		"with BENCHTIME as -benchtime; its output is in bench.txt. One value per result line, " +
		"so n is -count.",
}
