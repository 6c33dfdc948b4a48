package schedule

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/regent-ci/regent/internal/config"
)

func TestForceProperties(t *testing.T) {
	t.Parallel()
	st := &config.State{Schedulers: []config.Scheduler{
		{Name: "free", Kind: config.SchedulerForce, Builders: []string{"docs"}},
		{Name: "release", Kind: config.SchedulerForce, Builders: []string{"app"}, Parameters: []config.ForceParameter{
			{Name: "reason", Kind: config.ParamString, Required: true},
			{Name: "shards", Kind: config.ParamInt, Default: "4"},
			{Name: "clean", Kind: config.ParamBool, Default: "false"},
			{Name: "target", Kind: config.ParamChoice, Choices: []string{"staging", "production"}, Default: "staging"},
		}},
	}}
	ok := []struct {
		builder string
		given   map[string]string
		want    map[string]string
	}{
		{"app", map[string]string{"reason": "r"},
			map[string]string{"reason": "r", "shards": "4", "clean": "false", "target": "staging", "scheduler": "release"}},
		{"app", map[string]string{"reason": "r", "shards": " 08", "clean": "true", "target": "production"},
			map[string]string{"reason": "r", "shards": "8", "clean": "true", "target": "production", "scheduler": "release"}},
		{"docs", map[string]string{"anything": "goes"}, map[string]string{"anything": "goes", "scheduler": "free"}},
		{"unlisted", map[string]string{"anything": "goes"}, map[string]string{"anything": "goes"}},
	}
	for _, c := range ok {
		got, err := ForceProperties(st, c.builder, c.given)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ForceProperties(%s, %v) = %v, %v; want %v", c.builder, c.given, got, err, c.want)
		}
	}
	bad := []struct {
		given map[string]string
		want  string
	}{
		{map[string]string{}, `parameter "reason" is required`},
		{map[string]string{"reason": "r", "shards": "4.5"}, `"4.5" is not a whole number`},
		{map[string]string{"reason": "r", "clean": "maybe"}, `"maybe" is not true or false`},
		{map[string]string{"reason": "r", "target": "moon"}, `"moon" is not one of staging, production`},
		{map[string]string{"reason": "r", "shard": "4"}, `no parameter "shard"; it takes reason, shards, clean, target`},
	}
	for _, c := range bad {
		_, err := ForceProperties(st, "app", c.given)
		if !errors.Is(err, ErrInvalidForce) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ForceProperties(%v) = %v, want ErrInvalidForce mentioning %q", c.given, err, c.want)
		}
	}
}

// A forced build's revision and branch reach git on a worker: values git
// could take for an option or an expression are refused, whichever
// scheduler speaks for the builder; ids, short ids, tags and branch names
// pass.
func TestForcedRevisionsAndBranchesAreChecked(t *testing.T) {
	t.Parallel()
	st := &config.State{Schedulers: []config.Scheduler{
		{Name: "free", Kind: config.SchedulerForce, Builders: []string{"docs"}},
	}}
	for _, builder := range []string{"docs", "unlisted"} {
		for _, given := range []map[string]string{
			{"revision": "--upload-pack=touch /tmp/x"},
			{"revision": "HEAD~1"},
			{"revision": "a b"},
			{"branch": "-f"},
			{"branch": "refs/heads/a..b"},
			{"branch": "HEAD"},
		} {
			_, err := ForceProperties(st, builder, given)
			if !errors.Is(err, ErrInvalidForce) {
				t.Errorf("ForceProperties(%s, %v) = %v, want ErrInvalidForce", builder, given, err)
			}
		}
		for _, given := range []map[string]string{
			{"revision": "0123456789abcdef0123456789abcdef01234567"},
			{"revision": "abc1234"},
			{"revision": "v1.2.3"},
			{"branch": "feature/x", "revision": "release-1"},
			{"branch": "refs/heads/main"},
		} {
			if _, err := ForceProperties(st, builder, given); err != nil {
				t.Errorf("ForceProperties(%s, %v) = %v, want accepted", builder, given, err)
			}
		}
	}
}
