package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/master"
	"github.com/regent-ci/regent/internal/quickstart"
	"github.com/regent-ci/regent/internal/store"
	"github.com/regent-ci/regent/internal/worker"
	"github.com/regent-ci/regent/internal/workerapi"
)

func runQuickstart(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("regent quickstart", flag.ContinueOnError)
	var o quickstart.Options
	fs.StringVar(&o.Repo, "repo", "", "git repository to build, a path or URL (default: the repository of the current directory)")
	fs.StringVar(&o.Command, "command", "", "shell command to run on each commit (default: chosen from the repository's files)")
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:8010", "loopback address for the web UI and APIs")
	fs.StringVar(&o.Data, "data", "", "directory for the database, worker and caches (default: the user cache directory)")
	fs.BoolVar(&o.Once, "once", false, "exit after the first build: 0 on success or warnings, 1 on failure, 2 otherwise")
	fs.DurationVar(&o.PollInterval, "poll-interval", 10*time.Second, "how often to look for new commits")
	level := fs.String("log-level", "warn", "log level: debug, info, warn, error")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if code, ok := noArgs(fs); !ok {
		return code
	}
	if code, ok := listenAddr(fs, o.Listen); !ok {
		return code
	}
	l, code, ok := logLevel(fs, *level)
	if !ok {
		return code
	}
	o.Logger = newLogger(l)
	code, err := quickstart.Run(ctx, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "regent quickstart: %v\n", err)
	}
	return code
}

func runMaster(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("regent master", flag.ContinueOnError)
	db := fs.String("db", "regent.db", "database: a SQLite file path or a postgres:// URL")
	source := fs.String("config", "", "configuration source to watch and apply: a directory or git+URL#REF:PATH")
	listen := fs.String("listen", "127.0.0.1:8010", "address for the web UI and APIs")
	name := fs.String("name", "", "master name, unique among live masters (default: the host name)")
	tokenFile := fs.String("admin-token-file", "", "file holding the bearer token required for actions")
	secretsDir := fs.String("secrets-dir", "", "directory of secret files for secret(\"name\") (also REGENT_SECRET_NAME variables)")
	dataDir := fs.String("data-dir", "", "directory for caches such as git mirrors (default: the user cache directory)")
	ttl := fs.Duration("worker-ttl", 30*time.Second, "how long a silent worker counts as alive (at least 1s)")
	maxStepLog := fs.Int64("max-step-log", workerapi.DefaultMaxStepLog, "most bytes of output stored per step; "+
		"output past it is dropped after a marker line while the step runs on")
	roles := fs.String("roles", "web,dispatch,services", "comma-separated roles: web (UI and REST API), dispatch (worker API), services (pollers, schedulers, configuration watcher, housekeeping)")
	tags := fs.String("tags", "", "comma-separated tags; the configuration pins services to masters with masters = [tags]")
	clusterTTL := fs.Duration("ttl", 10*time.Second, "time-to-live: a master silent that long is dead and its services move "+
		"(at least 1s; use the same value on every master)")
	drain := fs.Duration("drain-timeout", 10*time.Second, "on SIGTERM, how long to wait for the services of this master to move to others")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	// An empty --tags is no tags, as when it is left out.
	if code, ok := parse(fs, args, "tags"); !ok {
		return code
	}
	opts, code, ok := masterOptions(fs, masterFlags{name: *name, listen: *listen, roles: *roles,
		tags: *tags, level: *level, source: *source, secretsDir: *secretsDir, ttl: *clusterTTL,
		workerTTL: *ttl})
	if !ok {
		return code
	}
	log := newLogger(opts.level)
	var token string
	if *tokenFile != "" {
		t, err := readSecretFile(*tokenFile)
		if err != nil {
			return fail("read admin token: %v", err)
		}
		token = t
	} else {
		log.Warn("no --admin-token-file: actions (force, cancel, rebuild, config apply) are open to anyone who reaches the API")
	}
	st, err := store.Open(ctx, *db)
	if err != nil {
		return fail("%v", err)
	}
	defer st.Close()
	m, err := master.New(master.Config{Store: st, Name: *name, Listen: *listen,
		ConfigSource: *source, Secrets: secretProvider(*secretsDir), AdminToken: token,
		DataDir: *dataDir, WorkerTTL: *ttl, MaxStepLog: *maxStepLog, Version: version, Logger: log,
		Roles: opts.roles, Tags: opts.tags, TTL: *clusterTTL, DrainTimeout: *drain})
	if err != nil {
		return fail("%v", err)
	}
	if err := m.Start(ctx); err != nil {
		return fail("%v", err)
	}
	<-ctx.Done()
	m.Stop()
	return 0
}

// masterFlags are the flags of regent master whose values need more
// than checkFlags looks at.
type masterFlags struct {
	name, listen, roles, tags, level string
	source, secretsDir               string
	ttl, workerTTL                   time.Duration
}

// Least time-to-live values of a master. A master heartbeats every second
// (a third of its time-to-live when that is shorter) and must join within
// one time-to-live; a worker is heard from at every poll. Below a second
// a busy database or machine makes masters and workers look dead.
const (
	leastTTL       = time.Second
	leastWorkerTTL = time.Second
)

// masterSettings are those flags' values, checked and read.
type masterSettings struct {
	roles, tags []string
	level       slog.Level
}

// masterOptions checks and reads the flags of regent master that
// checkFlags cannot judge alone.
func masterOptions(fs *flag.FlagSet, f masterFlags) (masterSettings, int, bool) {
	var o masterSettings
	if code, ok := noArgs(fs); !ok {
		return o, code, false
	}
	// The name defaults to the host name when left out.
	if f.name != "" {
		if code, ok := checkName(fs, "name", f.name); !ok {
			return o, code, false
		}
	}
	if code, ok := listenAddr(fs, f.listen); !ok {
		return o, code, false
	}
	var code int
	var ok bool
	if o.roles, code, ok = roleList(fs, f.roles); !ok {
		return o, code, false
	}
	if o.tags, code, ok = nameList(fs, "tags", f.tags); !ok {
		return o, code, false
	}
	if code, ok := atLeast(fs, "ttl", f.ttl, leastTTL); !ok {
		return o, code, false
	}
	if code, ok := atLeast(fs, "worker-ttl", f.workerTTL, leastWorkerTTL); !ok {
		return o, code, false
	}
	// Both are read before the database is opened, or created.
	if code, ok := configSource(fs, f.source); !ok {
		return o, code, false
	}
	if code, ok := existingDir(fs, "secrets-dir", f.secretsDir); !ok {
		return o, code, false
	}
	o.level, code, ok = logLevel(fs, f.level)
	return o, code, ok
}

func secretProvider(dir string) config.SecretProvider {
	env := config.EnvSecrets("REGENT_SECRET_")
	if dir == "" {
		return env
	}
	return config.ChainSecrets(config.DirSecrets(dir), env)
}

func runWorker(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("regent worker", flag.ContinueOnError)
	masters := fs.String("master", "", "comma-separated master URLs, e.g. http://127.0.0.1:8010")
	name := fs.String("name", "", "worker name, as in the configuration")
	pwFile := fs.String("password-file", "", "file holding the worker's password")
	basedir := fs.String("basedir", "", "directory for builds and spooled logs")
	maxBuilds := fs.Int("max-builds", 0, "builds to run at once (default: the worker's "+
		"max_builds in the configuration)")
	secretsDir := fs.String("secrets-dir", "", "directory of secret files for steps' secret env; "+
		"REGENT_SECRET_<NAME> variables are read too")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if code, ok := noArgs(fs); !ok {
		return code
	}
	if *masters == "" || *name == "" || *pwFile == "" || *basedir == "" {
		code, _ := usageError(fs, "--master, --name, --password-file and --basedir are required")
		return code
	}
	masterURLs, code, ok := urlList(fs, "master", *masters)
	if !ok {
		return code
	}
	if code, ok := checkName(fs, "name", *name); !ok {
		return code
	}
	if code, ok := existingDir(fs, "secrets-dir", *secretsDir); !ok {
		return code
	}
	l, code, ok := logLevel(fs, *level)
	if !ok {
		return code
	}
	pw, err := readSecretFile(*pwFile)
	if err != nil {
		return fail("read worker password: %v", err)
	}
	secrets := config.EnvSecrets("")
	if *secretsDir != "" {
		secrets = config.ChainSecrets(config.DirSecrets(*secretsDir), secrets)
	}
	w, err := worker.New(worker.Config{Masters: masterURLs, Name: *name,
		Password: pw, Basedir: *basedir, MaxBuilds: *maxBuilds, Secrets: secrets,
		Logger: newLogger(l)})
	if err != nil {
		return fail("%v", err)
	}
	if err := w.Start(ctx); err != nil {
		return fail("%v", err)
	}
	select {
	case <-ctx.Done():
		w.Stop()
		return 0
	case <-w.Done():
		if err := w.Err(); err != nil {
			return fail("worker stopped: %v", err)
		}
		return 0
	}
}
