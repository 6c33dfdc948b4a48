package cluster_test

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/regent-ci/regent/internal/cluster"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
	"github.com/regent-ci/regent/internal/testutil/pgtest"
)

// TestMain checks, once every test and its clean-ups are done, that no
// goroutine of a member, supervisor or session was left running.
func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// node is one master's cluster membership, in process: its own store (its
// own connections, as a separate process would have), member and
// supervisor.
type node struct {
	t      testing.TB
	name   string
	st     *store.Store
	member *cluster.Member
	sup    *cluster.Supervisor

	mu     sync.Mutex
	fences []time.Time // when the member fenced itself
}

// nodeOptions vary a node from the defaults.
type nodeOptions struct {
	tags []string
	ttl  time.Duration
}

// startNode opens a store on dsn and starts a member and a supervisor
// named name; both stop when the test ends.
func startNode(t testing.TB, dsn, name string, o nodeOptions) *node {
	t.Helper()
	n, err := tryStartNode(t, dsn, name, o)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	return n
}

func tryStartNode(t testing.TB, dsn, name string, o nodeOptions) (*node, error) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	n := &node{t: t, name: name, st: st}
	if o.ttl == 0 {
		o.ttl = 5 * time.Second
	}
	n.member, err = cluster.NewMember(cluster.MemberConfig{Store: st, Name: name, Host: "test",
		Tags: o.tags, TTL: o.ttl, Logger: testLogger(t, name),
		OnFence: func(string) {
			n.mu.Lock()
			n.fences = append(n.fences, time.Now())
			n.mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.member.Start(ctx); err != nil {
		return nil, err
	}
	n.sup, err = cluster.NewSupervisor(cluster.SupervisorConfig{Member: n.member, Logger: testLogger(t, name)})
	if err != nil {
		t.Fatal(err)
	}
	n.sup.Start(ctx)
	t.Cleanup(n.stop)
	return n, nil
}

// stop stops the node's supervisor and member, as a clean shutdown does.
func (n *node) stop() {
	n.sup.Stop()
	n.member.Stop()
}

// fenced returns the times the member fenced itself.
func (n *node) fenced() []time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]time.Time(nil), n.fences...)
}

// supervising reports whether the node's supervisor holds the lease.
func (n *node) supervising() bool {
	_, ok := n.sup.Lease()
	return ok
}

// applyRepos applies a generation with a polled repository per name, each
// pinned to the masters carrying tags.
func applyRepos(t testing.TB, st *store.Store, tags []string, names ...string) {
	t.Helper()
	pins := map[string][]string{}
	for _, name := range names {
		pins[name] = tags
	}
	applyTagged(t, st, pins)
}

// applyTagged applies a generation with a polled repository per key of
// pins, pinned to the masters carrying its tags.
func applyTagged(t testing.TB, st *store.Store, pins map[string][]string) {
	t.Helper()
	var state config.State
	for _, name := range slices.Sorted(maps.Keys(pins)) {
		state.Repos = append(state.Repos, config.Repo{Name: name, URL: "https://example.invalid/" + name,
			PollInterval: config.Duration(time.Minute), Masters: pins[name]})
	}
	if _, err := st.Apply(context.Background(), &state, "test", "tester"); err != nil {
		t.Fatal(err)
	}
}

// owners returns the owner of each service by name, "" for none.
func owners(t testing.TB, st *store.Store) map[string]string {
	t.Helper()
	svs, err := st.Services(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, sv := range svs {
		out[sv.Name] = ""
		if sv.Owner != nil {
			out[sv.Name] = *sv.Owner
		}
	}
	return out
}

// waitFor polls cond until it holds, failing t after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dbHost returns the host:port of the database of dsn.
func dbHost(t testing.TB, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// viaProxy returns dsn with its host replaced by addr.
func viaProxy(t testing.TB, dsn, addr string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = addr
	return u.String()
}
