package web

import (
	"net/http"
	"strings"
	"testing"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// A forced build's properties are checked against the force scheduler's
// typed parameters: a wrong one is a 400 that says what is wrong.
func TestAPIForceChecksParameters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	st := baseState()
	st.Schedulers[0].Parameters = []config.ForceParameter{
		{Name: "shards", Kind: config.ParamInt, Default: "4"},
		{Name: "target", Kind: config.ParamChoice, Choices: []string{"staging", "production"}, Default: "staging"},
	}
	e.apply(st)
	m := e.expectJSON(e.do("POST", "/api/v1/builders/app/force", `{"properties": {"shards": "many"}}`, nil),
		"bad int", http.StatusBadRequest)
	if msg, _ := m["error"].(string); !strings.Contains(msg, `parameter "shards": "many" is not a whole number`) {
		t.Errorf("error = %q", msg)
	}
	e.expectJSON(e.do("POST", "/api/v1/builders/app/force", `{"properties": {"color": "red"}}`, nil),
		"unknown parameter", http.StatusBadRequest)
	bs := e.expectJSON(e.do("POST", "/api/v1/builders/app/force", `{"properties": {"shards": 8}}`, nil),
		"good", http.StatusCreated)
	props := bs["properties"].(map[string]any)
	if props["shards"] != "8" || props["target"] != "staging" || props["scheduler"] != "force" {
		t.Errorf("properties = %v", props)
	}
}

// The builder page shows the force scheduler's parameters as typed fields,
// and the form's fields become the forced build's properties.
func TestUIForceFormHasTypedFields(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	st := baseState()
	st.Schedulers[0].Parameters = []config.ForceParameter{
		{Name: "shards", Kind: config.ParamInt, Default: "4", Label: "Shards"},
		{Name: "clean", Kind: config.ParamBool, Default: "false"},
		{Name: "target", Kind: config.ParamChoice, Choices: []string{"staging", "production"}, Default: "staging"},
	}
	e.apply(st)
	page := string(e.do("GET", "/builders/app", "", nil).Body)
	for _, want := range []string{`name="param:shards" value="4"`, `type="number"`, `type="checkbox" name="param:clean"`,
		`<option selected>staging</option><option>production</option>`} {
		if !strings.Contains(page, want) {
			t.Fatalf("builder page lacks %q:\n%s", want, page)
		}
	}
	form := "reason=ui&param%3Ashards=8&param%3Aclean=false&param%3Aclean=true&param%3Atarget=production"
	r := e.do("POST", "/builders/app/force", form, map[string]string{
		"Content-Type": "application/x-www-form-urlencoded", "Origin": e.srv.URL})
	if r.Status != http.StatusSeeOther {
		t.Fatalf("force form: %d %s", r.Status, r.Body)
	}
	sets, err := e.store.Buildsets(e.ctx, store.ListOptions{Limit: 1})
	if err != nil || len(sets) != 1 {
		t.Fatal(sets, err)
	}
	if p := sets[0].Properties; p["shards"] != "8" || p["clean"] != "true" || p["target"] != "production" {
		t.Fatalf("properties = %v", p)
	}
	bad := "param%3Ashards=eight"
	r = e.do("POST", "/builders/app/force", bad, map[string]string{
		"Content-Type": "application/x-www-form-urlencoded", "Origin": e.srv.URL})
	if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "not a whole number") {
		t.Fatalf("bad form: %d %s", r.Status, r.Body)
	}
}
