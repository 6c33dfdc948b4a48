package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// baseStar is baseState written as a configuration, with w1's password
// given.
func baseStar(w1Password string) string {
	return fmt.Sprintf(`w1 = worker("w1", %q, max_builds = 20)
w2 = worker("w2", "pw2", max_builds = 20, tags = ["linux"])
builder("app", [w1], [step.shell("make test", name = "test")], description = "the application")
builder("docs", [w1, w2], [step.shell("make test", name = "test")])
scheduler.force("force", ["app", "docs"])
`, w1Password)
}

// postApply posts a configuration to POST /api/v1/config/apply.
func (e *testEnv) postApply(star string, dryRun bool) map[string]any {
	e.t.Helper()
	body, _ := json.Marshal(map[string]any{"files": map[string]string{"regent.star": star}, "dry_run": dryRun})
	return e.expectJSON(e.do("POST", "/api/v1/config/apply", string(body),
		map[string]string{"Content-Type": "application/json"}), "POST config/apply", http.StatusOK)
}

// A new worker password shows in the plan that an apply through the API
// answers, compared with the stored digest, and an unchanged one does not.
func TestAPIApplyPlanShowsAPasswordChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	same := e.postApply(baseStar("pw1"), true)
	if plan, _ := same["plan"].(string); strings.Contains(plan, "password") {
		t.Fatalf("plan with the same password:\n%s", plan)
	}
	for _, dryRun := range []bool{true, false} {
		out := e.postApply(baseStar("pw-new"), dryRun)
		plan, _ := out["plan"].(string)
		if !strings.Contains(plan, "~ worker w1: password\n") || strings.Contains(plan, "worker w2") ||
			out["changed"] != true {
			t.Fatalf("dry run %v: answer %v, want w1's password changed and w2 not", dryRun, out)
		}
		if strings.Contains(fmt.Sprint(out), "pw-new") {
			t.Fatalf("the answer shows the password: %v", out)
		}
	}
}

// The diff of a stored generation shows a password change although no
// generation holds a password, and the first generation's diff adds
// everything, as `regent config diff` on an empty database does.
func TestAPIGenerationDiffShowsPasswordsAndTheFirstGeneration(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := e.getJSON("/api/v1/config/generations/1/diff", http.StatusOK)
	const everything = "+ worker w1\n+ worker w2\n+ builder app\n+ builder docs\n+ scheduler force\n" +
		"Plan: 5 to add, 0 to change, 0 to rename, 0 to remove.\n"
	if first["plan"] != everything || fmt.Sprint(first["from"]) != "0" || fmt.Sprint(first["to"]) != "1" {
		t.Fatalf("diff of generation 1 = %v, want everything added:\n%s", first, everything)
	}
	if again := e.getJSON("/api/v1/config/generations/1/diff?from=0", http.StatusOK); again["plan"] != everything {
		t.Fatalf("diff of generation 1 from 0 = %v", again)
	}

	st := baseState()
	st.Workers[1].Password = "pw-new"
	g := e.apply(st)
	d := e.getJSON(fmt.Sprintf("/api/v1/config/generations/%d/diff", g.Number), http.StatusOK)
	const want = "~ worker w2: password\nPlan: 0 to add, 1 to change, 0 to rename, 0 to remove.\n"
	if d["plan"] != want {
		t.Fatalf("diff of generation %d = %v, want:\n%s", g.Number, d, want)
	}
	if page := e.page(fmt.Sprintf("/generations/%d", g.Number), http.StatusOK); !strings.Contains(page,
		"~ worker w2: password") {
		t.Fatalf("the generation's page does not show the password change")
	}
}
