package store

// migrations are applied in order, each once, in its own transaction. They
// are written in the SQL that SQLite and PostgreSQL share; the few words
// that differ are placeholders that the dialect fills in:
//
//	{{id}}   an auto-numbered 64-bit primary key
//	{{blob}} a byte string
//
// Times are stored as microseconds since the Unix epoch (BIGINT) so that
// both databases compare and return them the same way. A released
// migration is never edited; add a new one.
var migrations = []string{
	// 1: the walking skeleton.
	`
CREATE TABLE instance (
	id INTEGER PRIMARY KEY,
	digest_key {{blob}} NOT NULL,
	created_at BIGINT NOT NULL
);

CREATE TABLE generations (
	number BIGINT PRIMARY KEY,
	content_hash TEXT NOT NULL,
	source TEXT NOT NULL,
	applied_by TEXT NOT NULL,
	applied_at BIGINT NOT NULL,
	state TEXT NOT NULL
);

CREATE TABLE builders (
	id {{id}},
	name TEXT NOT NULL,
	description TEXT NOT NULL DEFAULT '',
	tags TEXT NOT NULL DEFAULT '[]',
	spec TEXT NOT NULL,
	next_number BIGINT NOT NULL DEFAULT 1,
	created_generation BIGINT NOT NULL,
	updated_generation BIGINT NOT NULL,
	retired_generation BIGINT
);
CREATE UNIQUE INDEX builders_active_name ON builders (name) WHERE retired_generation IS NULL;

CREATE TABLE workers (
	id {{id}},
	name TEXT NOT NULL,
	password_hash TEXT NOT NULL,
	password_digest TEXT NOT NULL,
	max_builds INTEGER NOT NULL,
	tags TEXT NOT NULL DEFAULT '[]',
	created_generation BIGINT NOT NULL,
	updated_generation BIGINT NOT NULL,
	retired_generation BIGINT
);
CREATE UNIQUE INDEX workers_active_name ON workers (name) WHERE retired_generation IS NULL;

CREATE TABLE worker_sessions (
	id {{id}},
	worker_id BIGINT NOT NULL REFERENCES workers (id),
	token_hash TEXT NOT NULL,
	master TEXT NOT NULL,
	host TEXT NOT NULL DEFAULT '',
	state TEXT NOT NULL,
	reason TEXT NOT NULL DEFAULT '',
	started_at BIGINT NOT NULL,
	last_seen BIGINT NOT NULL,
	ended_at BIGINT
);
CREATE UNIQUE INDEX worker_sessions_token ON worker_sessions (token_hash);
CREATE INDEX worker_sessions_worker ON worker_sessions (worker_id, state);

CREATE TABLE repos (
	id {{id}},
	name TEXT NOT NULL,
	url TEXT NOT NULL,
	spec TEXT NOT NULL,
	created_generation BIGINT NOT NULL,
	updated_generation BIGINT NOT NULL,
	retired_generation BIGINT
);
CREATE UNIQUE INDEX repos_active_name ON repos (name) WHERE retired_generation IS NULL;

CREATE TABLE schedulers (
	id {{id}},
	name TEXT NOT NULL,
	kind TEXT NOT NULL,
	spec TEXT NOT NULL,
	created_generation BIGINT NOT NULL,
	updated_generation BIGINT NOT NULL,
	retired_generation BIGINT
);
CREATE UNIQUE INDEX schedulers_active_name ON schedulers (name) WHERE retired_generation IS NULL;

CREATE TABLE scheduler_cursors (
	scheduler TEXT PRIMARY KEY,
	last_change BIGINT NOT NULL
);

CREATE TABLE repo_heads (
	repository TEXT NOT NULL,
	ref TEXT NOT NULL,
	revision TEXT NOT NULL,
	updated_at BIGINT NOT NULL,
	PRIMARY KEY (repository, ref)
);

CREATE TABLE changes (
	id {{id}},
	repository TEXT NOT NULL,
	branch TEXT NOT NULL,
	revision TEXT NOT NULL,
	author TEXT NOT NULL DEFAULT '',
	comments TEXT NOT NULL DEFAULT '',
	files TEXT NOT NULL DEFAULT '[]',
	when_at BIGINT NOT NULL,
	created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX changes_once ON changes (repository, branch, revision);

CREATE TABLE buildsets (
	id {{id}},
	reason TEXT NOT NULL,
	scheduler TEXT NOT NULL DEFAULT '',
	change_id BIGINT REFERENCES changes (id),
	properties TEXT NOT NULL DEFAULT '{}',
	generation BIGINT NOT NULL,
	created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX buildsets_change_once ON buildsets (scheduler, change_id);

CREATE TABLE build_requests (
	id {{id}},
	buildset_id BIGINT NOT NULL REFERENCES buildsets (id),
	builder_id BIGINT NOT NULL REFERENCES builders (id),
	state TEXT NOT NULL,
	reason TEXT NOT NULL DEFAULT '',
	submitted_at BIGINT NOT NULL,
	claimed_at BIGINT,
	completed_at BIGINT,
	build_id BIGINT,
	retry_of BIGINT
);
CREATE INDEX build_requests_pending ON build_requests (state, builder_id, id);

CREATE TABLE builds (
	id {{id}},
	builder_id BIGINT NOT NULL REFERENCES builders (id),
	number BIGINT NOT NULL,
	request_id BIGINT NOT NULL REFERENCES build_requests (id),
	worker_id BIGINT REFERENCES workers (id),
	session_id BIGINT REFERENCES worker_sessions (id),
	attempt_token TEXT NOT NULL,
	state TEXT NOT NULL,
	result TEXT,
	reason TEXT NOT NULL DEFAULT '',
	properties TEXT NOT NULL DEFAULT '{}',
	steps_spec TEXT NOT NULL,
	retry_of BIGINT REFERENCES builds (id),
	cancel_requested INTEGER NOT NULL DEFAULT 0,
	master TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL,
	started_at BIGINT,
	finished_at BIGINT
);
CREATE UNIQUE INDEX builds_number ON builds (builder_id, number);
CREATE INDEX builds_state ON builds (state);
CREATE INDEX builds_session ON builds (session_id, state);

CREATE TABLE steps (
	build_id BIGINT NOT NULL REFERENCES builds (id),
	number INTEGER NOT NULL,
	name TEXT NOT NULL,
	state TEXT NOT NULL,
	result TEXT,
	reason TEXT NOT NULL DEFAULT '',
	log_size BIGINT NOT NULL DEFAULT 0,
	started_at BIGINT,
	finished_at BIGINT,
	PRIMARY KEY (build_id, number)
);

CREATE TABLE log_chunks (
	build_id BIGINT NOT NULL,
	step INTEGER NOT NULL,
	start_offset BIGINT NOT NULL,
	raw_size INTEGER NOT NULL,
	data {{blob}} NOT NULL,
	PRIMARY KEY (build_id, step, start_offset)
);
`,
	// 2: the cluster: master incarnations, leases and clustered services.
	`
CREATE TABLE masters (
	id {{id}},
	name TEXT NOT NULL,
	host TEXT NOT NULL DEFAULT '',
	roles TEXT NOT NULL DEFAULT '[]',
	tags TEXT NOT NULL DEFAULT '[]',
	version TEXT NOT NULL DEFAULT '',
	config_source TEXT NOT NULL DEFAULT '',
	state TEXT NOT NULL,
	reason TEXT NOT NULL DEFAULT '',
	started_at BIGINT NOT NULL,
	last_seen BIGINT NOT NULL,
	ended_at BIGINT
);
CREATE UNIQUE INDEX masters_live_name ON masters (name) WHERE state IN ('alive', 'draining');
CREATE INDEX masters_state ON masters (state);

CREATE TABLE leases (
	name TEXT PRIMARY KEY,
	holder BIGINT,
	token BIGINT NOT NULL DEFAULT 0,
	acquired_at BIGINT,
	expires_at BIGINT NOT NULL DEFAULT 0
);
INSERT INTO leases (name) VALUES ('supervisor');

CREATE TABLE services (
	name TEXT PRIMARY KEY,
	kind TEXT NOT NULL,
	master_tags TEXT NOT NULL DEFAULT '[]',
	state TEXT NOT NULL,
	owner BIGINT,
	token BIGINT NOT NULL DEFAULT 0,
	owned_since BIGINT,
	last_success BIGINT,
	last_error TEXT NOT NULL DEFAULT '',
	last_error_at BIGINT,
	created_at BIGINT NOT NULL,
	retired_at BIGINT
);
CREATE INDEX services_owner ON services (owner);
`,
	// 3: schedulers and change sources: webhook deliveries, durable
	// scheduler state (timers, last runs, cursors), poller health, what a
	// change came from, triggered and dependent buildsets, merged requests.
	`
CREATE TABLE webhook_deliveries (
	id {{id}},
	source TEXT NOT NULL,
	delivery TEXT NOT NULL,
	repository TEXT NOT NULL,
	ref TEXT NOT NULL,
	old_revision TEXT NOT NULL,
	new_revision TEXT NOT NULL,
	changes INTEGER NOT NULL,
	received_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX webhook_deliveries_id ON webhook_deliveries (source, delivery) WHERE delivery <> '';
CREATE UNIQUE INDEX webhook_deliveries_move ON webhook_deliveries (repository, ref, old_revision, new_revision);

CREATE TABLE scheduler_state (
	scheduler TEXT NOT NULL,
	item TEXT NOT NULL,
	last_run BIGINT,
	next_run BIGINT,
	change_id BIGINT,
	position BIGINT NOT NULL DEFAULT 0,
	updated_at BIGINT NOT NULL,
	PRIMARY KEY (scheduler, item)
);

CREATE TABLE repo_health (
	repository TEXT PRIMARY KEY,
	master TEXT NOT NULL DEFAULT '',
	last_poll BIGINT,
	last_success BIGINT,
	last_error TEXT NOT NULL DEFAULT '',
	last_error_at BIGINT,
	failing_since BIGINT,
	next_poll BIGINT,
	last_webhook BIGINT
);

ALTER TABLE changes ADD COLUMN category TEXT NOT NULL DEFAULT '';
ALTER TABLE changes ADD COLUMN properties TEXT NOT NULL DEFAULT '{}';

ALTER TABLE buildsets ADD COLUMN parent_build BIGINT;
ALTER TABLE buildsets ADD COLUMN parent_step INTEGER;
ALTER TABLE buildsets ADD COLUMN upstream_buildset BIGINT;
CREATE UNIQUE INDEX buildsets_trigger_once ON buildsets (scheduler, parent_build, parent_step);
CREATE UNIQUE INDEX buildsets_upstream_once ON buildsets (scheduler, upstream_buildset);
CREATE INDEX buildsets_parent ON buildsets (parent_build);

ALTER TABLE build_requests ADD COLUMN merged_into BIGINT;
`,
	// 4: cluster-wide locks: their holders, the requests waiting for them
	// (first come, first served), and one row per lock that PostgreSQL
	// transactions lock to decide about it one at a time.
	`
CREATE TABLE locks (
	name TEXT PRIMARY KEY
);

CREATE TABLE lock_holders (
	lock_name TEXT NOT NULL,
	build_id BIGINT NOT NULL REFERENCES builds (id),
	step INTEGER NOT NULL,
	acquired_at BIGINT NOT NULL,
	PRIMARY KEY (lock_name, build_id, step)
);
CREATE INDEX lock_holders_build ON lock_holders (build_id, step);

CREATE TABLE lock_waiters (
	lock_name TEXT NOT NULL,
	request_id BIGINT NOT NULL,
	step INTEGER NOT NULL,
	since BIGINT NOT NULL,
	last_wanted BIGINT NOT NULL,
	PRIMARY KEY (lock_name, request_id, step)
);
CREATE INDEX lock_waiters_request ON lock_waiters (request_id, step);
`,
	// 5: fencing evidence kept in the database: every grant of a clustered
	// service's token (to a master, or to nobody when it is released or
	// retired), and beside each row a service writes the fence it was
	// written under, with the database clock once the fence was checked.
	// Rows written outside any service leave the three columns NULL.
	`
CREATE TABLE service_grants (
	service TEXT NOT NULL,
	token BIGINT NOT NULL,
	master BIGINT,
	granted_at BIGINT NOT NULL,
	PRIMARY KEY (service, token)
);

ALTER TABLE changes ADD COLUMN fence_service TEXT;
ALTER TABLE changes ADD COLUMN fence_token BIGINT;
ALTER TABLE changes ADD COLUMN fenced_at BIGINT;

ALTER TABLE buildsets ADD COLUMN fence_service TEXT;
ALTER TABLE buildsets ADD COLUMN fence_token BIGINT;
ALTER TABLE buildsets ADD COLUMN fenced_at BIGINT;

ALTER TABLE scheduler_state ADD COLUMN fence_service TEXT;
ALTER TABLE scheduler_state ADD COLUMN fence_token BIGINT;
ALTER TABLE scheduler_state ADD COLUMN fenced_at BIGINT;

ALTER TABLE generations ADD COLUMN fence_service TEXT;
ALTER TABLE generations ADD COLUMN fence_token BIGINT;
ALTER TABLE generations ADD COLUMN fenced_at BIGINT;
`,
	// 6: what a generation's plan needs besides the desired states, which
	// hold no passwords and name no retired builder: the workers whose
	// password the apply stored, and the builders that took over a retired
	// builder's history (JSON; NULL for generations applied before).
	`
ALTER TABLE generations ADD COLUMN lineage TEXT;
`,
	// 7: a lost build shows the build that retried it, found by retry_of.
	`
CREATE INDEX builds_retry_of ON builds (retry_of);
`,
	// 8: a delivery that records no change (a ping, an unwatched branch) is
	// remembered by its id alone, with an empty ref: only deliveries that
	// moved a ref are unique by that move.
	`
DROP INDEX webhook_deliveries_move;
CREATE UNIQUE INDEX webhook_deliveries_move ON webhook_deliveries (repository, ref, old_revision, new_revision)
	WHERE ref <> '';
`,
}
