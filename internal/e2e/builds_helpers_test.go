package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/store"
	"github.com/regent-ci/regent/internal/testutil/pgtest"
	"github.com/regent-ci/regent/internal/testutil/procs"
)

// farm is one or more masters on one database, watching one configuration
// directory, and the workers a test starts against them. Every worker
// named in the options has the password file secrets/NAME, whose content
// the configuration reads with secret("NAME").
type farm struct {
	t       *testing.T
	db      string
	cfgDir  string
	secrets string
	args    []string
	masters []*farmMaster
	started []*procs.Proc // every worker process, in order
}

// farmMaster is one master of a farm; a restart keeps its name and
// address.
type farmMaster struct {
	name string
	addr string
	base string
	proc *procs.Proc
}

// farmOptions says what farm to start.
type farmOptions struct {
	// postgres puts the masters on a fresh PostgreSQL database; otherwise
	// they share a SQLite file (one master only).
	postgres bool
	// masters is how many masters to start, 1 if zero.
	masters int
	// workers are the worker names that get a password file.
	workers []string
	// args are added to every master's command line.
	args []string
}

// newFarm writes the configuration and starts the masters.
func newFarm(t *testing.T, star string, o farmOptions) *farm {
	t.Helper()
	f := &farm{t: t, cfgDir: t.TempDir(), secrets: t.TempDir(), args: o.args}
	if o.postgres {
		f.db = pgtest.URL(t)
	} else {
		f.db = filepath.Join(t.TempDir(), "regent.db")
	}
	writeFile(t, filepath.Join(f.cfgDir, "regent.star"), star)
	for _, w := range o.workers {
		writeFile(t, filepath.Join(f.secrets, w), "pw-"+w+"\n")
	}
	for i := range max(o.masters, 1) {
		addr := freeAddr(t)
		f.masters = append(f.masters, &farmMaster{name: fmt.Sprintf("m%d", i), addr: addr,
			base: "http://" + addr})
		f.start(i)
	}
	return f
}

// start starts master i, again if it ran before, and waits until it serves.
func (f *farm) start(i int) {
	f.t.Helper()
	m := f.masters[i]
	m.proc = procs.Start(f.t, procs.Spec{Name: m.name, Path: procs.Regent(f.t), Args: f.masterArgs(i)})
	if _, err := m.proc.WaitForLine("master started", 30*time.Second); err != nil {
		f.t.Fatalf("%v\n%s", err, m.proc.Stderr())
	}
}

// masterArgs is master i's command line.
func (f *farm) masterArgs(i int) []string {
	m := f.masters[i]
	return append([]string{"master", "--db", f.db, "--config", f.cfgDir, "--secrets-dir", f.secrets,
		"--listen", m.addr, "--data-dir", f.t.TempDir(), "--name", m.name}, f.args...)
}

// restart starts master i again after it died. A master killed without
// leaving the cluster holds its name until its time-to-live has passed on
// SQLite, where no database session tells that it died; until then the
// new process exits saying so, and is started again.
func (f *farm) restart(i int) {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := f.masters[i]
		m.proc = procs.Start(f.t, procs.Spec{Name: m.name, Path: procs.Regent(f.t), Args: f.masterArgs(i)})
		_, err := m.proc.WaitForLine("master started", 30*time.Second)
		if err == nil {
			return
		}
		if !strings.Contains(m.proc.Stderr(), "master name in use") || time.Now().After(deadline) {
			f.t.Fatalf("%v\n%s", err, m.proc.Stderr())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kill kills master i with SIGKILL.
func (f *farm) kill(i int) {
	f.t.Helper()
	if err := f.masters[i].proc.Kill(); err != nil {
		f.t.Fatal(err)
	}
}

// url returns master i's base URL.
func (f *farm) url(i int) string { return f.masters[i].base }

// worker starts the named worker against the given masters (all of them
// when none is given), with basedir as its base directory.
func (f *farm) worker(name, basedir string, masters ...int) *procs.Proc {
	f.t.Helper()
	if len(masters) == 0 {
		for i := range f.masters {
			masters = append(masters, i)
		}
	}
	var urls []string
	for _, i := range masters {
		urls = append(urls, f.url(i))
	}
	return f.workerVia(name, basedir, urls...)
}

// workerVia starts the named worker against the given master URLs.
func (f *farm) workerVia(name, basedir string, urls ...string) *procs.Proc {
	f.t.Helper()
	p := procs.Start(f.t, procs.Spec{Name: "worker-" + name, Path: procs.Regent(f.t), Args: []string{
		"worker", "--master", strings.Join(urls, ","), "--name", name,
		"--password-file", filepath.Join(f.secrets, name), "--basedir", basedir}})
	f.started = append(f.started, p)
	return p
}

// forceOn forces a build of builder through master i and returns the
// buildset's first request id.
func (f *farm) forceOn(i int, builder string) int64 {
	f.t.Helper()
	var bs buildset
	code := postJSON(f.t, f.url(i)+"/api/v1/builders/"+builder+"/force", `{"reason": "test"}`, &bs)
	if code != http.StatusCreated || len(bs.Requests) != 1 {
		f.t.Fatalf("force %s through %s: status %d, %+v", builder, f.masters[i].name, code, bs)
	}
	return bs.Requests[0].ID
}

// buildOf waits until a request was claimed and returns its build id.
func (f *farm) buildOf(request int64, timeout time.Duration) int64 {
	f.t.Helper()
	var id int64
	eventually(f.t, timeout, func() error {
		var r struct {
			State string `json:"state"`
			Build *int64 `json:"build"`
		}
		getJSON(f.t, fmt.Sprintf("%s/api/v1/requests/%d", f.anyURL(), request), &r)
		if r.Build == nil {
			return fmt.Errorf("request %d is %s, not claimed", request, r.State)
		}
		id = *r.Build
		return nil
	})
	return id
}

// anyURL returns the URL of a master that is running.
func (f *farm) anyURL() string {
	for _, m := range f.masters {
		if m.proc != nil && !m.proc.Exited() {
			return m.base
		}
	}
	f.t.Fatal("no master is running")
	return ""
}

// build returns a build as the API shows it.
func (f *farm) build(id int64) apiBuild {
	f.t.Helper()
	var b apiBuild
	if code := getJSON(f.t, fmt.Sprintf("%s/api/v1/builds/%d", f.anyURL(), id), &b); code != http.StatusOK {
		f.t.Fatalf("GET build %d: status %d", id, code)
	}
	return b
}

// waitFinished waits for a build to finish.
func (f *farm) waitFinished(id int64, timeout time.Duration) apiBuild {
	f.t.Helper()
	var b apiBuild
	eventually(f.t, timeout, func() error {
		b = f.build(id)
		if b.State != "finished" {
			return fmt.Errorf("build %d is %s", id, b.State)
		}
		return nil
	})
	return b
}

// stepLog returns a step's raw log.
func (f *farm) stepLog(id int64, step int) string {
	return getText(f.t, fmt.Sprintf("%s/api/v1/builds/%d/steps/%d/log", f.anyURL(), id, step))
}

// waitLog waits until a step's log holds want.
func (f *farm) waitLog(id int64, step int, want string, timeout time.Duration) {
	f.t.Helper()
	eventually(f.t, timeout, func() error {
		if log := f.stepLog(id, step); !strings.Contains(log, want) {
			return fmt.Errorf("build %d step %d log so far %q, waiting for %q", id, step, log, want)
		}
		return nil
	})
}

// workers returns the workers list: each name and state.
func (f *farm) workers() []apiWorker {
	f.t.Helper()
	var l struct {
		Items []apiWorker `json:"items"`
	}
	getJSON(f.t, f.anyURL()+"/api/v1/workers", &l)
	return l.Items
}

type apiWorker struct {
	Name  string `json:"name"`
	State string `json:"state"`
}

// workerState waits until the named worker shows state.
func (f *farm) waitWorker(name, state string, timeout time.Duration) {
	f.t.Helper()
	eventually(f.t, timeout, func() error {
		for _, w := range f.workers() {
			if w.Name == name {
				if w.State != state {
					return fmt.Errorf("worker %s is %s, want %s", name, w.State, state)
				}
				return nil
			}
		}
		return fmt.Errorf("worker %s is not listed", name)
	})
}

// apply replaces the configuration and waits until a master applied it as
// a new generation.
func (f *farm) apply(star string) {
	f.t.Helper()
	gen := f.generation()
	writeFile(f.t, filepath.Join(f.cfgDir, "regent.star"), star)
	eventually(f.t, 30*time.Second, func() error {
		if g := f.generation(); g == gen {
			return fmt.Errorf("still on generation %d", g)
		}
		return nil
	})
}

func (f *farm) generation() int64 {
	f.t.Helper()
	var l struct {
		Items []struct {
			Number int64 `json:"number"`
		} `json:"items"`
	}
	getJSON(f.t, f.anyURL()+"/api/v1/config/generations", &l)
	if len(l.Items) == 0 {
		return 0
	}
	return l.Items[0].Number
}

// openStore opens the farm's database directly, for checks the API does
// not offer.
func (f *farm) openStore() *store.Store {
	f.t.Helper()
	s, err := store.Open(context.Background(), f.db)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { s.Close() })
	return s
}

// pidFile returns a path where a step writes its shell's pid, and kills
// that process group when the test ends, should anything of the step be
// left: a safety net, so a regression in how workers end their steps'
// processes fails its own test instead of leaving processes behind.
func pidFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "step.pid")
	t.Cleanup(func() {
		b, err := os.ReadFile(path)
		if err != nil {
			return
		}
		for _, line := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(line); err == nil && pid > 1 {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
			}
		}
	})
	return path
}

// memory returns a process's resident set size and its peak, in bytes,
// from /proc.
func memory(t *testing.T, pid int) (rss, hwm int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			t.Fatalf("parse %s %q: %v", k, v, err)
		}
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	return rss, hwm
}
