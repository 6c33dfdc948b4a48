package config

import (
	"errors"
	"fmt"
)

// outcome is what an evaluation found, before secrets are resolved. It
// crosses a process boundary when the evaluation is isolated, so it is
// encoded whole.
type outcome struct {
	// State is the desired state, when no problem was found.
	State *State `json:"state,omitempty"`
	// Passwords are the literal worker passwords, which the JSON of a
	// State leaves out.
	Passwords map[string]string `json:"passwords,omitempty"`
	// Secrets are the secret() references to resolve.
	Secrets []secretUse `json:"secrets,omitempty"`
	// Errors are the problems found, up to maxErrors; Dropped counts the
	// others.
	Errors  Errors `json:"errors,omitempty"`
	Dropped int    `json:"dropped,omitempty"`
	// Prints is the output of print() calls.
	Prints []printed `json:"prints,omitempty"`
}

// secretUse is one secret() reference of a configuration.
type secretUse struct {
	Name string `json:"name"`
	Pos  Pos    `json:"pos"`
	// Worker is the worker whose password the secret is, if any.
	Worker string `json:"worker,omitempty"`
}

// printed is one line of print() output.
type printed struct {
	Pos Pos    `json:"pos"`
	Msg string `json:"msg"`
}

// finish resolves the secrets an evaluation uses and returns its state, or
// every problem found: those of the evaluation and the secrets that cannot
// be resolved. Worker passwords are resolved into the state; other
// secrets are only checked to exist.
func (o outcome) finish(provider SecretProvider) (*State, error) {
	errs, dropped := o.Errors, o.Dropped
	report := func(u secretUse, format string, args ...any) {
		if len(errs) >= maxErrors {
			dropped++
			return
		}
		errs.add(u.Pos, kindSecret, u.Name, format, args...)
	}
	values := map[string]string{}
	passwords := map[string]string{}
	for _, u := range o.Secrets {
		v, ok := values[u.Name]
		if !ok {
			v, ok = lookupSecret(provider, u, report)
		}
		if !ok {
			continue
		}
		values[u.Name] = v
		if u.Worker != "" {
			if v == "" {
				report(u, "is empty; a worker password cannot be empty")
			}
			passwords[u.Worker] = v
		}
	}
	if len(errs) > 0 {
		errs = errs.sort()
		if dropped > 0 {
			errs = append(errs, &Error{Pos: Pos{File: EntryFile},
				Msg: fmt.Sprintf("and %d more problems, not shown", dropped)})
		}
		return nil, errs
	}
	st := o.State
	for i := range st.Workers {
		if p, ok := passwords[st.Workers[i].Name]; ok {
			st.Workers[i].Password = p
		}
	}
	return st, nil
}

// lookupSecret asks provider for the secret of u, reporting why it cannot.
// No message holds a secret's value.
func lookupSecret(provider SecretProvider, u secretUse, report func(secretUse, string, ...any)) (string, bool) {
	if provider == nil {
		report(u, "no secret provider is configured "+
			"(give the master a secrets directory or REGENT_SECRET_* variables)")
		return "", false
	}
	v, err := provider.Secret(u.Name)
	switch {
	case errors.Is(err, ErrSecretNotFound):
		report(u, "not found by the secret provider")
		return "", false
	case err != nil:
		report(u, "cannot be read: %v", err)
		return "", false
	}
	return v, true
}
