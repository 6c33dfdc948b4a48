package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
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
	if code, ok := positive(fs, "poll-interval", o.PollInterval); !ok {
		return code
	}
	o.Logger = newLogger(*level)
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
	ttl := fs.Duration("worker-ttl", 30*time.Second, "how long a silent worker counts as alive")
	maxStepLog := fs.Int64("max-step-log", workerapi.DefaultMaxStepLog, "most bytes of output stored per step; "+
		"output past it is dropped after a marker line while the step runs on")
	roles := fs.String("roles", "web,dispatch,services", "comma-separated roles: web (UI and REST API), dispatch (worker API), services (pollers, schedulers, configuration watcher, housekeeping)")
	tags := fs.String("tags", "", "comma-separated tags; the configuration pins services to masters with masters = [tags]")
	clusterTTL := fs.Duration("ttl", 10*time.Second, "time-to-live: a master silent that long is dead and its services move (use the same value on every master)")
	drain := fs.Duration("drain-timeout", 10*time.Second, "on SIGTERM, how long to wait for the services of this master to move to others")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if code, ok := noArgs(fs); !ok {
		return code
	}
	if code, ok := positive(fs, "worker-ttl", *ttl); !ok {
		return code
	}
	if code, ok := positive(fs, "ttl", *clusterTTL); !ok {
		return code
	}
	log := newLogger(*level)
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
		Roles: splitList(*roles), Tags: splitList(*tags), TTL: *clusterTTL, DrainTimeout: *drain})
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

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
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
		fmt.Fprintln(os.Stderr, "regent worker: --master, --name, --password-file and --basedir are required")
		fs.Usage()
		return 2
	}
	pw, err := readSecretFile(*pwFile)
	if err != nil {
		return fail("read worker password: %v", err)
	}
	secrets := config.EnvSecrets("")
	if *secretsDir != "" {
		secrets = config.ChainSecrets(config.DirSecrets(*secretsDir), secrets)
	}
	w, err := worker.New(worker.Config{Masters: strings.Split(*masters, ","), Name: *name,
		Password: pw, Basedir: *basedir, MaxBuilds: *maxBuilds, Secrets: secrets,
		Logger: newLogger(*level)})
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
