package web

import (
	"net/http"
	"strings"
	"testing"

	"github.com/regent-ci/regent/internal/config"
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
