package build

import (
	"reflect"
	"testing"

	"github.com/regent-ci/regent/internal/config"
)

func TestInterpolateString(t *testing.T) {
	t.Parallel()
	props := map[string]string{"branch": "main", "n": "4", "empty": ""}
	cases := []struct{ in, want string }{
		{"make -j%(prop:n)s", "make -j4"},
		{"echo %(prop:branch)s/%(prop:branch)s", "echo main/main"},
		{"echo %(prop:missing)s.", "echo ."},
		{"echo %(prop:missing:-dev)s %(prop:empty:-x)s %(prop:n:-9)s", "echo dev x 4"},
		{"printf '%%(prop:n)s' %(prop:n)s", "printf '%(prop:n)s' 4"},
		{"printf '%(name)s' %s %(prop:n", "printf '%(name)s' %s %(prop:n"},
		{"%(prop:)s %(prop:a b)s", "%(prop:)s %(prop:a b)s"},
		{"no references", "no references"},
	}
	for _, c := range cases {
		if got := InterpolateString(c.in, props); got != c.want {
			t.Errorf("InterpolateString(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestInterpolateLeavesInputsAlone(t *testing.T) {
	t.Parallel()
	steps := []config.Step{{Kind: config.StepShell, Command: "deploy %(prop:target)s",
		Env: map[string]string{"T": "%(prop:target)s"}, Workdir: "out/%(prop:target)s"}}
	env := map[string]string{"BRANCH": "%(prop:branch)s"}
	props := map[string]string{"target": "staging", "branch": "main"}
	gotSteps, gotEnv := Interpolate(steps, env, props)
	want := config.Step{Kind: config.StepShell, Command: "deploy staging",
		Env: map[string]string{"T": "staging"}, Workdir: "out/%(prop:target)s"}
	if !reflect.DeepEqual(gotSteps[0], want) || gotEnv["BRANCH"] != "main" {
		t.Fatalf("got %+v, %v", gotSteps[0], gotEnv)
	}
	if steps[0].Command != "deploy %(prop:target)s" || env["BRANCH"] != "%(prop:branch)s" ||
		steps[0].Env["T"] != "%(prop:target)s" {
		t.Fatal("Interpolate changed its inputs")
	}
}
