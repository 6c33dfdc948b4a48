package worker

import (
	"strings"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/build"
	"github.com/regent-ci/regent/internal/config"
)

// Secrets of the builder and the step reach the step's env, a step's
// plain env beats a builder's secret of the same name, and every value is
// masked in the log and in a property set from the output.
func TestStepSecretsResolvedAndMasked(t *testing.T) {
	t.Parallel()
	c := newFakeCluster(t)
	cfg := testConfig(t, c.addMaster("m1").URL())
	cfg.Secrets = config.MapSecrets{"tok": "T0K-value", "btok": "B-value", "over": "hidden"}
	startWorker(t, cfg)

	st := shell(`echo "$TOK $BTOK $OVER"; printf 'T0K-'; sleep 0.2; echo value`)
	st.SecretEnv = map[string]string{"TOK": "tok"}
	st.Env = map[string]string{"OVER": "plain"}
	prop := shell(`echo " id-$TOK "`)
	prop.SecretEnv = map[string]string{"TOK": "tok"}
	prop.SetProperty = "ident"
	a := newBuild(st, prop)
	a.SecretEnv = map[string]string{"BTOK": "btok", "OVER": "over"}
	c.assign(a)

	b := c.waitFinished(a.BuildID, 20*time.Second)
	checkResult(t, b, build.Success, "")
	checkLog(t, b, 1, []byte("*** *** plain\n***\n"))
	if got := b.steps[2].props["ident"]; got != "id-***" {
		t.Errorf("property ident = %q, want id-***", got)
	}
}

// A secret the worker cannot resolve fails the step as an exception that
// names it, before the command runs.
func TestUnresolvableSecretIsAnException(t *testing.T) {
	t.Parallel()
	c := newFakeCluster(t)
	cfg := testConfig(t, c.addMaster("m1").URL())
	cfg.Secrets = config.MapSecrets{}
	startWorker(t, cfg)

	st := shell("echo ran")
	st.SecretEnv = map[string]string{"TOK": "no-such"}
	a := newBuild(st)
	c.assign(a)
	b := c.waitFinished(a.BuildID, 20*time.Second)
	if b.result != build.Exception || !strings.Contains(b.steps[1].reason, `"no-such"`) {
		t.Errorf("build ended %s, step reason %q; want exception naming the secret",
			b.result, b.steps[1].reason)
	}
	checkLog(t, b, 1, nil)
}

// Properties set by a step count for the commands and env of later
// steps, from the build's env too.
func TestSetPropertyFeedsLaterSteps(t *testing.T) {
	t.Parallel()
	c, _, _ := newCluster(t)
	set := shell("echo '  1.2.3  '; echo noise >&2")
	set.SetProperty = "version"
	use := shell(`echo "v=%(prop:version)s e=$E b=$B p=$REGENT_PROP_VERSION d=%(prop:x:-dflt)s"`)
	use.Env = map[string]string{"E": "e%(prop:version)s"}
	failing := shell("echo out; exit 1")
	failing.SetProperty = "never"
	failing.HaltOnFailure = false
	a := newBuild(set, use, failing)
	a.Env = map[string]string{"B": "b%(prop:version)s"}
	c.assign(a)

	b := c.waitFinished(a.BuildID, 20*time.Second)
	checkResult(t, b, build.Failure, `step "echo out; exit 1": exit status 1`)
	if got := b.steps[1].props["version"]; got != "1.2.3" {
		t.Errorf("property version = %q, want 1.2.3", got)
	}
	checkLog(t, b, 2, []byte("v=1.2.3 e=e1.2.3 b=b1.2.3 p=1.2.3 d=dflt\n"))
	if _, ok := b.steps[3].props["never"]; ok {
		t.Error("a failed step set its property")
	}
}
