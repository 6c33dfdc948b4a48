package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/testutil/procs"
)

// configCLI writes star into a new directory and runs `regent config CMD
// DIR ARGS...`, returning the exit status and output.
func configCLI(t *testing.T, star, cmd string, args ...string) (int, string) {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "regent.star"), star)
	p := procs.Start(t, procs.Spec{Name: "config-" + cmd, Path: procs.Regent(t),
		Args: append([]string{"config", cmd, dir}, args...)})
	if err := p.Wait(60 * time.Second); errors.Is(err, procs.ErrTimeout) {
		t.Fatal(err)
	}
	return p.ExitCode(), p.Stdout() + p.Stderr()
}

// generationPlan answers GET config/generations/{n}/diff's plan.
func generationPlan(t *testing.T, base string, n int64) string {
	t.Helper()
	var d struct {
		Plan string `json:"plan"`
	}
	if code := getJSON(t, fmt.Sprintf("%s/api/v1/config/generations/%d/diff", base, n), &d); code != http.StatusOK {
		t.Fatalf("diff of generation %d: status %d", n, code)
	}
	return d.Plan
}

// A worker's new password shows in every plan: `regent config diff` and
// `apply` with --db and with --api (the master resolving the secret), and
// the diff of the generation it made; and no plan shows the password.
// The first generation's diff adds everything.
func TestPlansShowAPasswordChange(t *testing.T) {
	t.Parallel()
	star := unitStar("unit", "", "0") // w1's password is secret("w1"), "secret-one"
	c := startCluster(t, star, "")
	literal := func(pw string) string { return strings.Replace(star, `secret("w1")`, fmt.Sprintf("%q", pw), 1) }
	const changed = "~ worker w1: password\n"

	for _, via := range [][]string{{"--db", c.db}, {"--api", c.base}} {
		if code, out := configCLI(t, literal("secret-one"), "diff", via...); code != 0 || out != "No changes.\n" {
			t.Errorf("diff %s of the same password: %d\n%s", via[0], code, out)
		}
		code, out := configCLI(t, literal("secret-two"), "diff", via...)
		if code != 0 || !strings.HasPrefix(out, changed) || strings.Contains(out, "secret-two") {
			t.Errorf("diff %s of a new password: %d\n%s", via[0], code, out)
		}
	}
	if code, out := configCLI(t, star, "diff", "--api", c.base); code != 0 || out != "No changes.\n" {
		t.Errorf("diff --api of the secret the master resolves: %d\n%s", code, out)
	}

	code, out := configCLI(t, literal("secret-two"), "apply", "--db", c.db)
	if code != 0 || !strings.HasPrefix(out, changed) || !strings.Contains(out, "applied generation 2") {
		t.Fatalf("apply of a new password: %d\n%s", code, out)
	}
	if plan := generationPlan(t, c.base, 2); !strings.HasPrefix(plan, changed) {
		t.Errorf("diff of generation 2:\n%s", plan)
	}
	const first = "+ worker w1\n+ builder deploy\n+ builder unit\n+ scheduler force\n" +
		"Plan: 4 to add, 0 to change, 0 to rename, 0 to remove.\n"
	if plan := generationPlan(t, c.base, 1); plan != first {
		t.Errorf("diff of generation 1:\n%swant:\n%s", plan, first)
	}
}
