package schedule

import (
	"testing"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// A dependent scheduler starts its builders once every upstream build of
// a buildset succeeded, on the same revision, once however many masters
// look; a failed upstream build starts nothing.
func TestDependentStartsAfterUpstreamSucceeds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &config.State{Schedulers: []config.Scheduler{
		{Name: "on-main", Kind: config.SchedulerBranch, Repo: "app", Branch: "main", Builders: []string{"unit", "lint"}},
		{Name: "after-tests", Kind: config.SchedulerDependent, Upstream: []string{"unit", "lint"},
			Builders: []string{"deploy"}, Properties: map[string]string{"target": "staging"}},
	}})
	s, other := e.service(false), e.service(false)
	e.runOnce(s)
	sess := e.session()

	good := e.record("main", nil)[0]
	e.runOnce(s)
	first := e.claimAll(sess)
	e.finish(first["unit"], build.Success)
	e.runOnce(s)
	if n := len(e.buildsets("after-tests")); n != 0 {
		t.Fatalf("dependent started with lint still running")
	}
	e.finish(first["lint"], build.Warnings)

	bad := e.record("main", nil)[0]
	e.runOnce(s)
	second := e.claimAll(sess)
	e.finish(second["unit"], build.Failure)
	e.finish(second["lint"], build.Success)

	e.runOnce(s)
	e.runOnce(other)
	sets := e.buildsets("after-tests")
	if len(sets) != 1 || sets[0].Properties["revision"] != good.Revision ||
		sets[0].Properties["target"] != "staging" || len(sets[0].Requests) != 1 ||
		sets[0].Requests[0].Builder != "deploy" {
		t.Fatalf("dependent buildsets = %+v, want one for %s only (not %s)", sets, good.Revision, bad.Revision)
	}
	pos, _, _ := e.store.SchedulerPosition(e.ctx, "after-tests", store.UpstreamItem)
	if newest, _ := e.store.NewestBuildset(e.ctx); pos != newest {
		t.Fatalf("position %d, want every buildset decided (%d)", pos, newest)
	}
}
