package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
)

// ContentHash returns a digest of the content of a desired state, the same
// for equal content on any machine: the canonical JSON of the state plus,
// for each worker, passwordDigest(worker, password), so that a new
// password makes a new hash while the hash reveals nothing of it. A nil
// passwordDigest leaves passwords out.
//
// Positions are not content: moving a declaration to another line or
// adding a comment does not change the hash. Nor is the representation of
// empty values: a missing list and an empty one hash alike.
func ContentHash(s *State, passwordDigest func(worker, password string) string) string {
	h := sha256.New()
	h.Write([]byte("regent desired state v1\n"))
	h.Write(canonicalJSON(withoutPositions(s)))
	if passwordDigest != nil && s != nil {
		workers := slices.Clone(s.Workers)
		sortByName(workers, func(w Worker) string { return w.Name })
		for _, w := range workers {
			fmt.Fprintf(h, "\npassword %q %q", w.Name, passwordDigest(w.Name, w.Password))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// withoutPositions returns a copy of s with every position cleared.
func withoutPositions(s *State) *State {
	if s == nil {
		return &State{}
	}
	c := &State{
		Repos:      slices.Clone(s.Repos),
		Workers:    slices.Clone(s.Workers),
		Builders:   slices.Clone(s.Builders),
		Schedulers: slices.Clone(s.Schedulers),
		Locks:      slices.Clone(s.Locks),
	}
	for i := range c.Repos {
		c.Repos[i].Pos = Pos{}
	}
	for i := range c.Workers {
		c.Workers[i].Pos = Pos{}
	}
	for i := range c.Builders {
		b := &c.Builders[i]
		b.Pos = Pos{}
		b.Steps = slices.Clone(b.Steps)
		for j := range b.Steps {
			b.Steps[j].Pos = Pos{}
		}
	}
	for i := range c.Schedulers {
		c.Schedulers[i].Pos = Pos{}
	}
	for i := range c.Locks {
		c.Locks[i].Pos = Pos{}
	}
	return c
}

// canonicalJSON encodes v as JSON with object keys sorted and every empty
// value (null, false, 0, "", [] and {}) left out, so that equal content
// has one encoding whichever way its empty parts were written.
func canonicalJSON(v any) []byte {
	raw, err := json.Marshal(v)
	if err != nil {
		// The types of this package always encode; say what broke.
		panic(fmt.Sprintf("config: encode state: %v", err))
	}
	var generic any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&generic); err != nil {
		panic(fmt.Sprintf("config: decode state: %v", err))
	}
	out, _ := json.Marshal(prune(generic))
	return out
}

// prune drops empty values from decoded JSON; it returns nil when v itself
// is empty.
func prune(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if p := prune(x); p == nil {
				delete(v, k)
			} else {
				v[k] = p
			}
		}
		if len(v) == 0 {
			return nil
		}
	case []any:
		if len(v) == 0 {
			return nil
		}
		for i, x := range v {
			if p := prune(x); p != nil {
				v[i] = p
			} // else keep the element: its place in the list matters
		}
	case string:
		if v == "" {
			return nil
		}
	case bool:
		if !v {
			return nil
		}
	case json.Number:
		if v == "0" {
			return nil
		}
	}
	return v
}
