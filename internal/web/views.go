package web

import (
	"encoding/json"

	"github.com/regent-ci/regent/internal/config"
	"github.com/regent-ci/regent/internal/store"
)

// The API shows the store's types with a few fields adjusted: fields the
// interface contract names are always present (null or empty rather than
// left out), and lists are never null.

// apiBuild is a build as the API shows it.
type apiBuild struct {
	store.Build
	Reason string `json:"reason"`
}

func showBuild(b store.Build) apiBuild { return apiBuild{Build: b, Reason: b.Reason} }

// apiStep is a step as the API shows it.
type apiStep struct {
	store.Step
	Reason string `json:"reason"`
}

func showStep(s store.Step) apiStep { return apiStep{Step: s, Reason: s.Reason} }

// apiWorker is a worker as the API shows it.
type apiWorker struct {
	store.Worker
	Master string   `json:"master"`
	Tags   []string `json:"tags"`
}

func showWorker(w store.Worker) apiWorker {
	v := apiWorker{Worker: w, Master: w.Master, Tags: w.Tags}
	if v.Tags == nil {
		v.Tags = []string{}
	}
	return v
}

// mapSlice applies f to every element of in.
func mapSlice[T, U any](in []T, f func(T) U) []U {
	out := make([]U, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

// builderView is a builder as the API shows it: the stored builder, the
// workers it may run on, and its newest build.
type builderView struct {
	store.Builder
	Workers   []string  `json:"workers"`
	LastBuild *apiBuild `json:"last_build"`
}

func newBuilderView(b store.Builder, last *store.Build) builderView {
	v := builderView{Builder: b, Workers: []string{}}
	if last != nil {
		shown := showBuild(*last)
		v.LastBuild = &shown
	}
	var spec config.Builder
	if json.Unmarshal(b.Spec, &spec) == nil && spec.Workers != nil {
		v.Workers = spec.Workers
	}
	if v.Tags == nil {
		v.Tags = []string{}
	}
	return v
}
