package master

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/regent-ci/regent/internal/cluster"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// TestMain checks that no service loop outlives the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "leaked goroutines: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// fakeOwner owns what a test says.
type fakeOwner struct {
	mu    sync.Mutex
	owned []store.Fence
	wake  *cluster.Wake
}

func (o *fakeOwner) Owned() []store.Fence {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.owned)
}

func (o *fakeOwner) OwnedChanged() <-chan struct{} { return o.wake.C() }

func (o *fakeOwner) set(fs ...store.Fence) {
	o.mu.Lock()
	o.owned = fs
	o.mu.Unlock()
	o.wake.Notify()
}

// events records the starts and stops of services.
type events struct {
	mu  sync.Mutex
	log []string
}

func (e *events) add(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.log = append(e.log, s)
}

func (e *events) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.log
	e.log = nil
	slices.Sort(out)
	return out
}

func TestServiceManagerFollowsOwnership(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "regent.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	state := &config.State{Repos: []config.Repo{{Name: "app", URL: "u", PollInterval: config.Duration(time.Minute)}}}
	if _, err := st.Apply(ctx, state, "test", "tester"); err != nil {
		t.Fatal(err)
	}
	var ev events
	spec := "v1"
	define := func(f store.Fence, st *config.State) (serviceDef, bool) {
		if kind, _ := cluster.ParseService(f.Service); kind == "unknown" || st == nil {
			return serviceDef{}, false
		}
		return serviceDef{spec: spec, start: func(context.Context) (func(), error) {
			ev.add("start " + f.String())
			return func() { ev.add("stop " + f.String()) }, nil
		}}, true
	}
	o := &fakeOwner{wake: cluster.NewWake()}
	sm := newServiceManager(o, &stateCache{store: st}, define, slog.New(slog.DiscardHandler))
	step := func(want ...string) {
		t.Helper()
		if err := sm.reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		if got := ev.take(); !slices.Equal(got, want) {
			t.Fatalf("events %q, want %q", got, want)
		}
	}

	o.set(store.Fence{Service: "poller:app", Token: 1}, store.Fence{Service: "unknown:x", Token: 1})
	step("start poller:app@1")
	step()                                              // nothing changed
	o.set(store.Fence{Service: "poller:app", Token: 2}) // lost and given back
	step("start poller:app@2", "stop poller:app@1")
	spec = "v2" // a new definition
	step("start poller:app@2", "stop poller:app@2")
	o.set(store.Fence{Service: "housekeeping", Token: 5})
	step("start housekeeping@5", "stop poller:app@2")
	if got := sm.runningFences(); len(got) != 1 || got[0].Service != "housekeeping" {
		t.Fatalf("running %v", got)
	}
	sm.stopAll()
	if got := ev.take(); !slices.Equal(got, []string{"stop housekeeping@5"}) {
		t.Fatalf("stopAll: %q", got)
	}

	// The loop reconciles as soon as ownership changes.
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sm.loop(lctx, cluster.NewWake())
	}()
	o.set(store.Fence{Service: "poller:app", Token: 3})
	deadline := time.Now().Add(5 * time.Second)
	for len(sm.runningFences()) == 0 || sm.runningFences()[0].Token != 3 {
		if time.Now().After(deadline) {
			t.Fatal("the loop did not start poller:app@3")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	sm.stopAll()
}
