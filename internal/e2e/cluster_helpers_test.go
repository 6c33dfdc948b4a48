package e2e

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/testutil/pgtest"
	"github.com/regent-ci/regent/internal/testutil/procs"
	"github.com/regent-ci/regent/internal/testutil/proxy"
)

// pgCluster is several real master processes on one PostgreSQL database.
type pgCluster struct {
	t       *testing.T
	db      string
	secrets string
	masters map[string]*pgMaster
}

// pgMaster is one master process of a pgCluster, restartable under the
// same name, address and data directory.
type pgMaster struct {
	c     *pgCluster
	name  string
	addr  string
	args  []string
	runs  int
	proc  *procs.Proc
	proxy *proxy.Proxy // between the master and the database, if any
}

// apiMaster and apiService are a master incarnation and a clustered
// service as the REST API shows them.
type apiMaster struct {
	ID         int64  `json:"id"`
	Name       string `json:"name"`
	State      string `json:"state"`
	Supervisor bool   `json:"supervisor"`
}

type apiService struct {
	Name        string  `json:"name"`
	Owner       *string `json:"owner"`
	Token       int64   `json:"token"`
	LastSuccess *string `json:"last_success"`
}

// newPGCluster makes a fresh database and applies star to it with the CLI.
func newPGCluster(t *testing.T, star string) *pgCluster {
	t.Helper()
	c := &pgCluster{t: t, db: pgtest.URL(t), secrets: t.TempDir(), masters: map[string]*pgMaster{}}
	writeFile(t, filepath.Join(c.secrets, "w1"), "secret-one\n")
	c.apply(star)
	return c
}

// apply applies star with `regent config apply`.
func (c *pgCluster) apply(star string) {
	c.t.Helper()
	dir := c.t.TempDir()
	writeFile(c.t, filepath.Join(dir, "regent.star"), star)
	p := procs.Start(c.t, procs.Spec{Name: "apply", Path: procs.Regent(c.t),
		Args: []string{"config", "apply", dir, "--db", c.db, "--secrets-dir", c.secrets}})
	if err := p.Wait(60 * time.Second); errors.Is(err, procs.ErrTimeout) {
		c.t.Fatal(err)
	}
	if p.ExitCode() != 0 {
		c.t.Fatalf("apply: exit %d\n%s%s", p.ExitCode(), p.Stdout(), p.Stderr())
	}
}

// start starts a master named name with extra flags; with viaProxy, its
// database connections go through a fault proxy of its own.
func (c *pgCluster) start(name string, viaProxy bool, extra ...string) *pgMaster {
	c.t.Helper()
	m := &pgMaster{c: c, name: name, addr: freeAddr(c.t)}
	db := c.db
	if viaProxy {
		u, err := url.Parse(c.db)
		if err != nil {
			c.t.Fatal(err)
		}
		m.proxy = proxy.Start(c.t, u.Host)
		u.Host = m.proxy.Addr()
		db = u.String()
	}
	m.args = append([]string{"master", "--db", db, "--name", name, "--listen", m.addr,
		"--data-dir", c.t.TempDir(), "--secrets-dir", c.secrets, "--log-level", "debug"}, extra...)
	c.masters[name] = m
	m.restart()
	return m
}

// restart starts the master's process again, as a new incarnation.
func (m *pgMaster) restart() {
	t := m.c.t
	t.Helper()
	m.runs++
	m.proc = procs.Start(t, procs.Spec{Name: fmt.Sprintf("%s-run%d", m.name, m.runs),
		Path: procs.Regent(t), Args: m.args})
	if _, err := m.proc.WaitForLine("master started", 30*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, m.proc.Stderr())
	}
}

func (m *pgMaster) base() string { return "http://" + m.addr }

// api returns a master that is running and not paused, to ask the API.
func (c *pgCluster) api(except ...string) *pgMaster {
	c.t.Helper()
	for _, name := range slices.Sorted(maps.Keys(c.masters)) {
		m := c.masters[name]
		if !slices.Contains(except, name) && !m.proc.Exited() {
			return m
		}
	}
	c.t.Fatal("no master left to ask")
	return nil
}

// services returns the clustered services by name, as master m shows them.
func (c *pgCluster) services(m *pgMaster) map[string]apiService {
	c.t.Helper()
	var l struct{ Items []apiService }
	if code := getJSON(c.t, m.base()+"/api/v1/services", &l); code != http.StatusOK {
		c.t.Fatalf("GET services: %d", code)
	}
	out := map[string]apiService{}
	for _, s := range l.Items {
		out[s.Name] = s
	}
	return out
}

// live returns the live incarnations by name, as master m shows them.
func (c *pgCluster) live(m *pgMaster) map[string]apiMaster {
	c.t.Helper()
	var l struct{ Items []apiMaster }
	if code := getJSON(c.t, m.base()+"/api/v1/masters", &l); code != http.StatusOK {
		c.t.Fatalf("GET masters: %d", code)
	}
	out := map[string]apiMaster{}
	for _, x := range l.Items {
		out[x.Name] = x
	}
	return out
}

// owner waits until service has an owner other than those in not, as the
// first master not in not shows it, and returns the owner's name.
func (c *pgCluster) owner(service string, timeout time.Duration, not ...string) string {
	c.t.Helper()
	var owner string
	eventually(c.t, timeout, func() error {
		s := c.services(c.api(not...))[service]
		if s.Owner == nil || slices.Contains(not, *s.Owner) {
			return fmt.Errorf("%s owned by %v", service, s.Owner)
		}
		owner = *s.Owner
		return nil
	})
	return owner
}

// waitPolled waits until the poller service has polled once: only then
// does it record the next commit as a change, since a repository's first
// poll records its heads alone.
func (c *pgCluster) waitPolled(service string) {
	c.t.Helper()
	eventually(c.t, 10*time.Second, func() error {
		if c.services(c.api())[service].LastSuccess == nil {
			return fmt.Errorf("%s has not polled yet", service)
		}
		return nil
	})
}

// changesOf counts the recorded changes of revision rev, as m shows them.
func (c *pgCluster) changesOf(m *pgMaster, rev string) int {
	c.t.Helper()
	var l struct {
		Items []struct {
			Revision string `json:"revision"`
		} `json:"items"`
	}
	getJSON(c.t, m.base()+"/api/v1/changes", &l)
	n := 0
	for _, ch := range l.Items {
		if ch.Revision == rev {
			n++
		}
	}
	return n
}

// waitRecorded waits until some live master shows revision rev recorded.
func (c *pgCluster) waitRecorded(rev string, timeout time.Duration, not ...string) {
	c.t.Helper()
	eventually(c.t, timeout, func() error {
		if n := c.changesOf(c.api(not...), rev); n != 1 {
			return fmt.Errorf("revision %s recorded %d times", rev, n)
		}
		return nil
	})
}

// checkFencedAfterResume checks the output that master m printed from
// offset on, taken before it was paused or cut off, once it is resumed or
// reconnected: it stopped its services on its own, and it recorded
// nothing before it had joined again as a new incarnation.
func checkFencedAfterResume(t *testing.T, m *pgMaster, offset int) {
	t.Helper()
	var out string
	eventually(t, 20*time.Second, func() error {
		out = m.proc.Stderr()[offset:]
		if !strings.Contains(out, "fencing: stopping every clustered service") {
			return errors.New("the master did not fence itself")
		}
		if !strings.Contains(out, "joined the cluster") {
			return errors.New("the master did not join again")
		}
		return nil
	})
	before, _, _ := strings.Cut(out, "joined the cluster")
	for _, line := range strings.Split(before, "\n") {
		if strings.Contains(line, "recorded branch heads") || strings.Contains(line, "first poll recorded") {
			t.Errorf("%s recorded a poll before rejoining, with a lost fence:\n%s", m.name, line)
		}
	}
}

// distribution formats durations as min / median / max.
func distribution(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("min %s, median %s, max %s over %d", r(s[0]), r(s[len(s)/2]), r(s[len(s)-1]), len(s))
}
